import { connect } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { ProblemError } from '../src/core/problems.js';
import { MAX_KEY_LENGTH, parseIdempotencyKey } from '../src/idempotency/key.js';
import type { Store } from '../src/store/store.js';
import { ALICE, countStored, startDemo, submitReport } from './helpers.js';

const MISSING = 'urn:asyncfirst:problem:idempotency-key-missing';
const INVALID = 'urn:asyncfirst:problem:idempotency-key-invalid';
const BODY = { title: 'Q3', rows: 5 };

/** The problem type parseIdempotencyKey throws for these header lines, or the key it returns. */
function parse(lines: string[] | undefined): { key: string } | { type: string; status: number } {
  try {
    return { key: parseIdempotencyKey(lines) };
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    return { type: error.problem.type, status: error.problem.status };
  }
}

/** An HTTP/1.1 exchange written byte for byte on a TCP socket, so repeated header lines reach the server as sent. */
function rawExchange(port: number, head: string[], body: string): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const [statusLine = '', ...headerLines] = text.slice(0, split).split('\r\n');
      const headers = new Map<string, string>();
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(split + 4) });
    });
    const payload = Buffer.from(body);
    const request = [
      'POST /reports HTTP/1.1',
      'Host: 127.0.0.1',
      'Content-Type: application/json',
      `X-API-Key: ${ALICE['x-api-key']}`,
      `Content-Length: ${payload.length}`,
      'Connection: close',
      ...head,
      '',
      '',
    ].join('\r\n');
    socket.write(Buffer.concat([Buffer.from(request, 'latin1'), payload]));
  });
}

/** How many idempotency records the store holds, and which of these keys (alice's, for createReport) it holds. */
async function storedKeys(store: Store, keys: string[]): Promise<{ records: number; keys: string[] }> {
  const held = await Promise.all(keys.map(async (key) => ((await store.getIdempotencyRecord('alice', 'createReport', key)) ? [key] : [])));
  return { records: await store.countIdempotencyRecords(), keys: held.flat() };
}

describe('the Idempotency-Key header over HTTP', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  const open = async (config: { port?: number } = {}) => {
    demo = await startDemo({ workerConcurrency: 0, ...config });
    return demo;
  };
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
  });

  const expectProblem = (response: { statusCode: number; headers: Record<string, unknown>; json: <T>() => T }, type: string) => {
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json<{ type: string; status: number; detail: string }>()).toMatchObject({ type, status: 400 });
  };

  it('answers a submission without Idempotency-Key 400 idempotency-key-missing and stores nothing', async () => {
    const { app } = await open();
    const response = await submitReport(app, BODY);
    expectProblem(response, MISSING);
    expect(response.json<{ detail: string }>().detail).toMatch(/Idempotency-Key/);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('answers an empty key 400 idempotency-key-invalid', async () => {
    const { app } = await open();
    expectProblem(await submitReport(app, BODY, { 'idempotency-key': '' }), INVALID);
    expectProblem(await submitReport(app, BODY, { 'idempotency-key': '""' }), INVALID);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('accepts a key of 255 characters and refuses one of 256', async () => {
    const { app } = await open();
    const longest = 'k'.repeat(MAX_KEY_LENGTH);
    expect(MAX_KEY_LENGTH).toBe(255);
    const accepted = await submitReport(app, BODY, { 'idempotency-key': longest });
    expect(accepted.statusCode).toBe(202);
    expectProblem(await submitReport(app, BODY, { 'idempotency-key': `${longest}k` }), INVALID);
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });

    expect(await storedKeys(app.store, [longest])).toEqual({ records: 1, keys: [longest] });
  });

  it.each([
    ['a control character', 'abc\u0001def'],
    ['DEL', 'abc\u007fdef'],
    ['a tab', 'abc\tdef'],
    ['a Latin-1 letter', 'café'],
    ['a non-Latin letter', 'ключ'],
  ])('answers a key with %s 400 idempotency-key-invalid', async (_name, key) => {
    const { app } = await open();
    expectProblem(await submitReport(app, BODY, { 'idempotency-key': key }), INVALID);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it.each([
    ['an unterminated quoted string', '"abc'],
    ['text after the closing quote', '"abc"def'],
    ['an escape other than \\" or \\\\', '"ab\\nc"'],
    ['a lone quote', '"'],
  ])('answers %s 400 idempotency-key-invalid', async (_name, key) => {
    const { app } = await open();
    const response = await submitReport(app, BODY, { 'idempotency-key': key });
    expectProblem(response, INVALID);
    expect(response.json<{ detail: string }>().detail).toMatch(/quoted string/);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('treats the quoted form "abc" as the same key as abc', async () => {
    const { app } = await open();
    const quoted = await submitReport(app, BODY, { 'idempotency-key': '"abc"' });
    const bare = await submitReport(app, BODY, { 'idempotency-key': 'abc' });
    const escaped = await submitReport(app, BODY, { 'idempotency-key': '"a\\"b\\\\c"' });
    const escapedBare = await submitReport(app, BODY, { 'idempotency-key': 'a"b\\c' });
    expect(quoted.statusCode).toBe(202);
    expect(quoted.headers['idempotent-replayed']).toBeUndefined();
    expect(bare.statusCode).toBe(202);
    expect(bare.headers['idempotent-replayed']).toBe('true');
    expect(bare.json<{ job_id: string }>().job_id).toBe(quoted.json<{ job_id: string }>().job_id);
    expect(escaped.statusCode).toBe(202);
    expect(escapedBare.headers['idempotent-replayed']).toBe('true');
    expect(escapedBare.json<{ job_id: string }>().job_id).toBe(escaped.json<{ job_id: string }>().job_id);
    expect(escaped.json<{ job_id: string }>().job_id).not.toBe(quoted.json<{ job_id: string }>().job_id);

    expect(await storedKeys(app.store, ['a"b\\c', 'abc'])).toEqual({ records: 2, keys: ['a"b\\c', 'abc'] });
  });

  it('answers Idempotency-Key sent on two header lines 400 over a real socket, even with equal values', async () => {
    const { app } = await open({ port: 0 });
    const port = Number(new URL(await app.listen()).port);
    const payload = JSON.stringify(BODY);

    for (const lines of [
      ['Idempotency-Key: a', 'Idempotency-Key: b'],
      ['Idempotency-Key: same', 'idempotency-key: same'],
    ]) {
      const response = await rawExchange(port, lines, payload);
      expect(response.status).toBe(400);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = JSON.parse(response.body) as { type: string; detail: string };
      expect(problem.type).toBe(INVALID);
      expect(problem.detail).toMatch(/more than one header line/);
    }
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });

    // One line whose value has a comma is one key (what Node would have joined two lines into).
    const single = await rawExchange(port, ['Idempotency-Key: a, b'], payload);
    expect(single.status).toBe(202);
    expect(await storedKeys(app.store, ['a, b'])).toEqual({ records: 1, keys: ['a, b'] });
  });

  it('answers a key with non-ASCII bytes sent on a real socket 400 idempotency-key-invalid, even at its ends', async () => {
    const { app } = await open({ port: 0 });
    const port = Number(new URL(await app.listen()).port);
    const accepted = await rawExchange(port, ['Idempotency-Key: abc'], JSON.stringify(BODY));
    expect(accepted.status).toBe(202);
    // UTF-8 "é" inside the key; a Latin-1 no-break space (0xA0) after or before it, which must not be trimmed into "abc".
    for (const value of [Buffer.from('clé-1', 'utf8').toString('latin1'), 'abc\u00a0', '\u00a0abc']) {
      const response = await rawExchange(port, [`Idempotency-Key: ${value}`], JSON.stringify(BODY));
      expect(response.status).toBe(400);
      expect(response.headers.get('idempotent-replayed')).toBeUndefined();
      expect((JSON.parse(response.body) as { type: string }).type).toBe(INVALID);
    }
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });
});

describe('parseIdempotencyKey', () => {
  it('refuses no header line as idempotency-key-missing', () => {
    expect(parse(undefined)).toEqual({ type: MISSING, status: 400 });
    expect(parse([])).toEqual({ type: MISSING, status: 400 });
  });

  it('refuses more than one header line, whatever their values', () => {
    expect(parse(['a', 'b'])).toEqual({ type: INVALID, status: 400 });
    expect(parse(['a', 'a'])).toEqual({ type: INVALID, status: 400 });
    expect(parse(['a', ''])).toEqual({ type: INVALID, status: 400 });
  });

  it('refuses an empty key, bare or quoted', () => {
    for (const line of ['', '   ', '""', ' "" ']) expect(parse([line])).toEqual({ type: INVALID, status: 400 });
  });

  it('returns a printable ASCII key as is, up to 255 characters', () => {
    expect(parse(['abc'])).toEqual({ key: 'abc' });
    expect(parse(['a'])).toEqual({ key: 'a' });
    expect(parse(['k'.repeat(255)])).toEqual({ key: 'k'.repeat(255) });
    expect(parse(['k'.repeat(256)])).toEqual({ type: INVALID, status: 400 });
    const everyPrintable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('');
    expect(parse([everyPrintable])).toEqual({ key: everyPrintable });
    expect(parse(['a b'])).toEqual({ key: 'a b' });
  });

  it('drops surrounding whitespace, as HTTP does around a field value', () => {
    expect(parse(['  abc \t'])).toEqual({ key: 'abc' });
  });

  it('drops only HTTP whitespace (SP, HTAB): other leading or trailing characters make the key invalid', () => {
    for (const line of ['abc\u00a0', '\u00a0abc', 'abc\n', '\rabc', '\u000babc', 'abc\ufeff', 'abc\u3000']) {
      expect(parse([line])).toEqual({ type: INVALID, status: 400 });
    }
  });

  it('refuses characters outside 0x20-0x7E', () => {
    for (const line of ['a\u0000b', 'a\u001fb', 'a\u007fb', 'a\u0080b', 'café', 'a\tb', 'a\nb', '🔑']) {
      expect(parse([line])).toEqual({ type: INVALID, status: 400 });
    }
  });

  it('unquotes the sf-string form, with \\" and \\\\ escapes', () => {
    expect(parse(['"abc"'])).toEqual({ key: 'abc' });
    expect(parse(['"a\\"b"'])).toEqual({ key: 'a"b' });
    expect(parse(['"a\\\\b"'])).toEqual({ key: 'a\\b' });
    expect(parse(['" a "'])).toEqual({ key: ' a ' });
    // A quote not at the start is an ordinary character.
    expect(parse(['a"b'])).toEqual({ key: 'a"b' });
  });

  it('refuses malformed quoted strings', () => {
    for (const line of ['"', '"abc', '"ab"c"', '"abc"def', '"a"b"', '"a\\b"', '"abc\\"', '"abc\\', '"a\u0001"']) {
      expect(parse([line])).toEqual({ type: INVALID, status: 400 });
    }
  });

  it('applies the 255-character limit to the unquoted key', () => {
    expect(parse([`"${'k'.repeat(255)}"`])).toEqual({ key: 'k'.repeat(255) });
    expect(parse([`"${'k'.repeat(256)}"`])).toEqual({ type: INVALID, status: 400 });
  });

  const printableKey = fc
    .array(fc.integer({ min: 0x20, max: 0x7e }), { minLength: 1, maxLength: MAX_KEY_LENGTH })
    .map((codes) => String.fromCharCode(...codes));

  it('property: a printable key without surrounding spaces or a leading quote is returned unchanged', () => {
    fc.assert(
      fc.property(
        printableKey.filter((key) => key.trim() === key && !key.startsWith('"')),
        (key) => {
          expect(parse([key])).toEqual({ key });
        },
      ),
    );
  });

  it('property: every printable key survives sf-string quoting', () => {
    fc.assert(
      fc.property(printableKey, (key) => {
        const quoted = `"${key.replace(/[\\"]/g, (char) => `\\${char}`)}"`;
        expect(parse([quoted])).toEqual({ key });
      }),
    );
  });
});
