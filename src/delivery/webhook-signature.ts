import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): the signed content is
 * `${webhook-id}.${webhook-timestamp}.${body}`, signed with HMAC-SHA256 under the secret
 * (`whsec_` + base64 key), sent as `webhook-signature: v1,<base64>` (space-separated when several
 * secrets sign during a rotation).
 */
const SECRET_PREFIX = 'whsec_';

/** Decodes a `whsec_…` secret into its key bytes; throws for anything else. */
export function decodeWebhookSecret(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error('a webhook secret starts with "whsec_" followed by base64');
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  if (key.length < 16) throw new Error('a webhook secret must hold at least 16 bytes (24 base64 characters)');
  return key;
}

function sign(key: Buffer, id: string, timestamp: number, body: string): string {
  return createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
}

/** The three headers of a signed webhook, signed with every given secret. */
export function signWebhook(
  secrets: string[],
  id: string,
  timestamp: number,
  body: string,
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  const signatures = secrets.map((secret) => `v1,${sign(decodeWebhookSecret(secret), id, timestamp, body)}`);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signatures.join(' ') };
}

/** Why a webhook was refused by verifyWebhook. */
export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
  }
}

export interface VerifyOptions {
  /** Seconds a timestamp may differ from now (default 300). */
  toleranceSeconds?: number;
  /** Now, in seconds since the epoch (for tests). */
  now?: number;
}

type HeaderBag = Record<string, string | string[] | undefined> | Headers;

function header(headers: HeaderBag, name: string): string | undefined {
  const value = headers instanceof Headers ? headers.get(name) : (headers[name] ?? headers[name.toLowerCase()]);
  return Array.isArray(value) ? value[0] : (value ?? undefined);
}

/**
 * For webhook receivers: checks a delivery's signature against one or more secrets (constant-time)
 * and its timestamp against a tolerance, and returns the parsed payload. Pass the raw body text
 * exactly as received. Throws WebhookVerificationError when the delivery is not authentic.
 */
export function verifyWebhook<Payload = unknown>(secrets: string | string[], headers: HeaderBag, body: string, options: VerifyOptions = {}): Payload {
  const id = header(headers, 'webhook-id');
  const timestampText = header(headers, 'webhook-timestamp');
  const signatureHeader = header(headers, 'webhook-signature');
  if (!id || !timestampText || !signatureHeader) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature header');
  const timestamp = Number(timestampText);
  if (!Number.isInteger(timestamp)) throw new WebhookVerificationError('webhook-timestamp is not an integer');
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? 300;
  if (Math.abs(now - timestamp) > tolerance) throw new WebhookVerificationError(`webhook-timestamp is more than ${tolerance} s from now`);

  const offered = signatureHeader
    .split(' ')
    .filter((entry) => entry.startsWith('v1,'))
    .map((entry) => Buffer.from(entry.slice(3), 'base64'));
  for (const secret of Array.isArray(secrets) ? secrets : [secrets]) {
    const expected = Buffer.from(sign(decodeWebhookSecret(secret), id, timestamp, body), 'base64');
    if (offered.some((signature) => signature.length === expected.length && timingSafeEqual(signature, expected))) {
      return JSON.parse(body) as Payload;
    }
  }
  throw new WebhookVerificationError('no webhook-signature matches');
}
