import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeWebhookSecret, signWebhook, verifyWebhook, WebhookVerificationError } from '../src/delivery/webhook-signature.js';

/*
 * Standard Webhooks signatures: HMAC-SHA256 over `${id}.${timestamp}.${body}` under the base64
 * key of a `whsec_` secret, sent as `v1,<base64>` (space-separated when several secrets sign).
 */

const secretOf = (bytes: Buffer) => `whsec_${bytes.toString('base64')}`;
const SECRET = secretOf(Buffer.from('0123456789abcdef0123456789abcdef'));
const OTHER_SECRET = secretOf(Buffer.from('fedcba9876543210fedcba9876543210'));
const ID = 'msg_01J0000000000000000000000';
const NOW = 1_700_000_000;
const BODY = '{"type":"job.succeeded","timestamp":"2023-11-14T22:13:20.000Z","data":{"id":"01J","status":"succeeded"}}';

/** The signature computed here with node:crypto, independently of the module under test. */
function independentSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

function rejection(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

describe('webhook signatures (Standard Webhooks)', () => {
  it('reproduces the published Standard Webhooks test vector, and verifies it', () => {
    // The vector of the Standard Webhooks reference libraries (e.g. the Svix PHP library's
    // testSignFunctionWorks, and the spec's "verifying signatures" guide).
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
    const timestamp = 1614265330;
    const body = '{"test": 2432232314}';
    const expected = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

    const headers = signWebhook([secret], id, timestamp, body);
    expect(headers).toEqual({ 'webhook-id': id, 'webhook-timestamp': '1614265330', 'webhook-signature': expected });
    expect(independentSignature(secret, id, timestamp, body)).toBe(expected);
    expect(verifyWebhook(secret, { 'webhook-id': id, 'webhook-timestamp': '1614265330', 'webhook-signature': expected }, body, { now: timestamp })).toEqual({
      test: 2432232314,
    });
  });

  it('signs with HMAC-SHA256 over id.timestamp.body, matching an independent node:crypto computation', () => {
    const headers = signWebhook([SECRET], ID, NOW, BODY);
    expect(headers['webhook-id']).toBe(ID);
    expect(headers['webhook-timestamp']).toBe(String(NOW));
    expect(headers['webhook-signature']).toBe(independentSignature(SECRET, ID, NOW, BODY));
  });

  it('accepts a valid signature and returns the parsed payload', () => {
    const headers = signWebhook([SECRET], ID, NOW, BODY);
    const payload = verifyWebhook<{ type: string; data: { id: string } }>(SECRET, headers, BODY, { now: NOW });
    expect(payload.type).toBe('job.succeeded');
    expect(payload.data.id).toBe('01J');
  });

  it('accepts headers given as a fetch Headers object (a Request in a fetch-style receiver)', () => {
    const headers = new Headers(signWebhook([SECRET], ID, NOW, BODY));
    expect(verifyWebhook(SECRET, headers, BODY, { now: NOW })).toMatchObject({ type: 'job.succeeded' });
  });

  it('rejects a signature made with another secret', () => {
    const headers = signWebhook([OTHER_SECRET], ID, NOW, BODY);
    const error = rejection(() => verifyWebhook(SECRET, headers, BODY, { now: NOW }));
    expect(error).toBeInstanceOf(WebhookVerificationError);
    expect((error as Error).message).toMatch(/no webhook-signature matches/);
  });

  it('rejects a tampered body, even one that differs only in whitespace', () => {
    const headers = signWebhook([SECRET], ID, NOW, BODY);
    expect(rejection(() => verifyWebhook(SECRET, headers, BODY.replace('succeeded', 'failed'), { now: NOW }))).toBeInstanceOf(WebhookVerificationError);
    expect(rejection(() => verifyWebhook(SECRET, headers, `${BODY} `, { now: NOW }))).toBeInstanceOf(WebhookVerificationError);
  });

  it('rejects a tampered webhook-id and a tampered (still recent) webhook-timestamp: both are signed', () => {
    const headers = signWebhook([SECRET], ID, NOW, BODY);
    expect(rejection(() => verifyWebhook(SECRET, { ...headers, 'webhook-id': 'msg_other' }, BODY, { now: NOW }))).toBeInstanceOf(WebhookVerificationError);
    expect(rejection(() => verifyWebhook(SECRET, { ...headers, 'webhook-timestamp': String(NOW + 1) }, BODY, { now: NOW }))).toBeInstanceOf(
      WebhookVerificationError,
    );
  });

  it('rejects a timestamp outside the tolerance in either direction, and accepts one at its edge', () => {
    const headers = signWebhook([SECRET], ID, NOW, BODY);
    // Default tolerance: 300 s.
    expect(verifyWebhook(SECRET, headers, BODY, { now: NOW + 300 })).toBeTruthy();
    expect(verifyWebhook(SECRET, headers, BODY, { now: NOW - 300 })).toBeTruthy();
    const tooOld = rejection(() => verifyWebhook(SECRET, headers, BODY, { now: NOW + 301 }));
    expect(tooOld).toBeInstanceOf(WebhookVerificationError);
    expect((tooOld as Error).message).toMatch(/webhook-timestamp/);
    expect(rejection(() => verifyWebhook(SECRET, headers, BODY, { now: NOW - 301 }))).toBeInstanceOf(WebhookVerificationError);
    // A custom tolerance.
    expect(verifyWebhook(SECRET, headers, BODY, { now: NOW + 10, toleranceSeconds: 10 })).toBeTruthy();
    expect(rejection(() => verifyWebhook(SECRET, headers, BODY, { now: NOW + 11, toleranceSeconds: 10 }))).toBeInstanceOf(WebhookVerificationError);
    expect(rejection(() => verifyWebhook(SECRET, headers, BODY, { now: NOW - 11, toleranceSeconds: 10 }))).toBeInstanceOf(WebhookVerificationError);
  });

  it('checks the timestamp against the real clock when no `now` is given', () => {
    const current = Math.floor(Date.now() / 1000);
    expect(verifyWebhook(SECRET, signWebhook([SECRET], ID, current, BODY), BODY)).toBeTruthy();
    expect(rejection(() => verifyWebhook(SECRET, signWebhook([SECRET], ID, current - 3600, BODY), BODY))).toBeInstanceOf(WebhookVerificationError);
  });

  it('rejects a delivery missing any of the three headers, or with a non-integer timestamp', () => {
    const headers = signWebhook([SECRET], ID, NOW, BODY);
    for (const missing of ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const) {
      const partial: Record<string, string> = { ...headers };
      delete partial[missing];
      const error = rejection(() => verifyWebhook(SECRET, partial, BODY, { now: NOW }));
      expect(error, missing).toBeInstanceOf(WebhookVerificationError);
      expect((error as Error).message, missing).toMatch(/missing/);
    }
    expect(rejection(() => verifyWebhook(SECRET, { ...headers, 'webhook-timestamp': `${NOW}.5` }, BODY, { now: NOW }))).toBeInstanceOf(
      WebhookVerificationError,
    );
    // A signature without the v1, prefix is not a v1 signature.
    const bare = headers['webhook-signature'].slice('v1,'.length);
    expect(rejection(() => verifyWebhook(SECRET, { ...headers, 'webhook-signature': bare }, BODY, { now: NOW }))).toBeInstanceOf(WebhookVerificationError);
  });

  it('accepts when any of several secrets matches (a receiver during a rotation)', () => {
    const signedWithNew = signWebhook([OTHER_SECRET], ID, NOW, BODY);
    expect(verifyWebhook([SECRET, OTHER_SECRET], signedWithNew, BODY, { now: NOW })).toBeTruthy();
    expect(verifyWebhook([OTHER_SECRET, SECRET], signedWithNew, BODY, { now: NOW })).toBeTruthy();
    const third = secretOf(randomBytes(32));
    expect(rejection(() => verifyWebhook([SECRET, third], signedWithNew, BODY, { now: NOW }))).toBeInstanceOf(WebhookVerificationError);
  });

  it('accepts a header holding several signatures when one of them matches', () => {
    const valid = independentSignature(SECRET, ID, NOW, BODY);
    const bogus = `v1,${Buffer.alloc(32, 7).toString('base64')}`;
    const headers = { 'webhook-id': ID, 'webhook-timestamp': String(NOW), 'webhook-signature': `${bogus} v1a,abcd ${valid}` };
    expect(verifyWebhook(SECRET, headers, BODY, { now: NOW })).toBeTruthy();
    expect(rejection(() => verifyWebhook(SECRET, { ...headers, 'webhook-signature': `${bogus} v1a,abcd` }, BODY, { now: NOW }))).toBeInstanceOf(
      WebhookVerificationError,
    );
  });

  it('signs with every secret given: two secrets yield two space-separated v1 signatures, each verifying alone', () => {
    const headers = signWebhook([SECRET, OTHER_SECRET], ID, NOW, BODY);
    const parts = headers['webhook-signature'].split(' ');
    expect(parts).toEqual([independentSignature(SECRET, ID, NOW, BODY), independentSignature(OTHER_SECRET, ID, NOW, BODY)]);
    for (const part of parts) expect(part).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(verifyWebhook(SECRET, headers, BODY, { now: NOW })).toBeTruthy();
    expect(verifyWebhook(OTHER_SECRET, headers, BODY, { now: NOW })).toBeTruthy();
  });

  it('decodes whsec_ secrets of at least 16 bytes, and rejects other secrets', () => {
    const key = randomBytes(16);
    expect(decodeWebhookSecret(secretOf(key)).equals(key)).toBe(true);
    expect(() => decodeWebhookSecret(key.toString('base64'))).toThrow(/whsec_/);
    expect(() => decodeWebhookSecret('sk_live_0123456789abcdef0123456789')).toThrow(/whsec_/);
    expect(() => decodeWebhookSecret(secretOf(randomBytes(15)))).toThrow(/16 bytes/);
    expect(() => decodeWebhookSecret('whsec_')).toThrow(/16 bytes/);
    // signWebhook refuses such a secret too, rather than signing with a weak key.
    expect(() => signWebhook([secretOf(randomBytes(8))], ID, NOW, BODY)).toThrow(/16 bytes/);
  });
});
