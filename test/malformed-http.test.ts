import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { createDemo } from '../src/demo/service.js';
import { API_KEYS, countStored, tempDir } from './helpers.js';
import { openConnection } from './raw-connection.js';

/*
 * Requests node:http cannot parse never reach Fastify's routes; the server still answers them with
 * problem details (a whole raw response) and closes the connection. Each goes over its own socket.
 */

const CREDENTIALS = 'X-API-Key: key-a\r\n';

const MALFORMED: Array<{ name: string; request: string; status: number; slug: string; detail: RegExp }> = [
  {
    name: 'a 64 KB header',
    request: `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: big-header\r\nX-Padding: ${'a'.repeat(64 * 1024)}\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n{"title":"T","rows":1}   `,
    status: 431,
    slug: 'headers-too-large',
    detail: /larger than \d+ bytes/,
  },
  {
    name: 'a Content-Length that is not a number',
    request: `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: bad-length\r\nContent-Type: application/json\r\nContent-Length: 2x\r\n\r\n{}`,
    status: 400,
    slug: 'bad-request',
    detail: /Content-Length/,
  },
  {
    name: 'two different Content-Length headers',
    request: `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: two-lengths\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 22\r\n\r\n{"title":"T","rows":1}`,
    status: 400,
    slug: 'bad-request',
    detail: /not valid HTTP\/1\.1/,
  },
  {
    name: 'a control character in a header value',
    request: `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: ctl\x01key\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{"title":"T","rows":1}`,
    status: 400,
    slug: 'bad-request',
    detail: /header value char/,
  },
  {
    name: 'Content-Length together with Transfer-Encoding',
    request: `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: smuggled\r\nContent-Type: application/json\r\nContent-Length: 22\r\nTransfer-Encoding: chunked\r\n\r\n16\r\n{"title":"T","rows":1}\r\n0\r\n\r\n`,
    status: 400,
    slug: 'bad-request',
    detail: /Transfer-Encoding/,
  },
  {
    name: 'a chunk size that is not hexadecimal',
    request: `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: bad-chunk\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{"title":"T","rows":1}\r\n0\r\n\r\n`,
    status: 400,
    slug: 'bad-request',
    detail: /not valid HTTP\/1\.1/,
  },
  {
    name: 'an HTTP/1.1 request without a Host header',
    request: `POST /reports HTTP/1.1\r\n${CREDENTIALS}Idempotency-Key: no-host\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{"title":"T","rows":1}`,
    status: 400,
    slug: 'bad-request',
    detail: /Host header/,
  },
  {
    name: 'a request line that is not HTTP',
    request: 'HELLO THERE\r\n\r\n',
    status: 400,
    slug: 'bad-request',
    detail: /not valid HTTP\/1\.1/,
  },
];

describe('requests below HTTP parsing, over a real socket', () => {
  let app: AsyncFirstApp;
  let port: number;
  const tmp = tempDir();
  beforeAll(async () => {
    app = await createDemo({ apiKeys: API_KEYS, config: { databaseUrl: tmp.dbPath, logLevel: 'silent', port: 0, host: '127.0.0.1', workerConcurrency: 0 } });
    port = Number(new URL(await app.listen()).port);
  });
  afterAll(async () => {
    await app.close();
    tmp.cleanup();
  });

  for (const { name, request, status, slug, detail } of MALFORMED) {
    it(`answers ${name} with ${status} ${slug} as problem+json and closes the connection`, async () => {
      const connection = openConnection(port, request);
      await connection.closedWithin(3000);
      const responses = connection.responses();
      expect(responses).toHaveLength(1);
      const [response] = responses;
      expect(response?.status).toBe(status);
      expect(response?.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(response?.headers.connection).toBe('close');
      expect(Number(response?.headers['content-length'])).toBe(Buffer.byteLength(response?.body ?? ''));
      const body = JSON.parse(response?.body ?? '{}');
      expect(body).toEqual({ type: `${PROBLEM_TYPE_BASE}${slug}`, title: expect.any(String), status, detail: expect.stringMatching(detail) });
      expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
    });
  }

  it('answers an Expect other than 100-continue with 417 expectation-failed as problem+json', async () => {
    const connection = openConnection(port, `GET /healthz HTTP/1.1\r\nHost: localhost\r\nExpect: 200-ok\r\n\r\n`);
    await connection.closedWithin(3000);
    const [response] = connection.responses();
    expect(response?.status).toBe(417);
    expect(response?.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(JSON.parse(response?.body ?? '{}')).toMatchObject({ type: `${PROBLEM_TYPE_BASE}expectation-failed`, status: 417 });
  });

  it('answers CONNECT with 405 method-not-allowed as problem+json instead of closing the socket unanswered', async () => {
    const connection = openConnection(port, `CONNECT /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}\r\n`);
    await connection.closedWithin(3000);
    const [response, ...more] = connection.responses();
    expect(more).toHaveLength(0);
    expect(response?.status).toBe(405);
    expect(response?.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(JSON.parse(response?.body ?? '{}')).toMatchObject({ type: `${PROBLEM_TYPE_BASE}method-not-allowed`, status: 405 });
  });

  it('answers a valid submission with its 202 first when unparseable bytes are pipelined behind it, then the 400', async () => {
    const before = await countStored(app.store);
    const body = '{"title":"T","rows":1}';
    const connection = openConnection(
      port,
      `POST /reports HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}Idempotency-Key: pipelined-garbage\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}GARBAGE\r\n\r\n`,
    );
    await connection.closedWithin(3000);
    const responses = connection.responses();
    expect(responses.map((response) => response.status)).toEqual([202, 400]);
    const jobId = JSON.parse(responses[0]?.body ?? '{}').job_id;
    expect(typeof jobId).toBe('string');
    expect(JSON.parse(responses[1]?.body ?? '{}')).toMatchObject({ type: `${PROBLEM_TYPE_BASE}bad-request` });
    expect(await countStored(app.store)).toEqual({ jobs: before.jobs + 1, keys: before.keys + 1 });
  });

  it('only closes the connection, writing nothing more, when a response has already begun on it', async () => {
    const accepted = await fetch(`http://127.0.0.1:${port}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'key-a', 'idempotency-key': 'streamed' },
      body: JSON.stringify({ title: 'T', rows: 1 }),
    });
    expect(accepted.status).toBe(202);
    const { job_id } = (await accepted.json()) as { job_id: string };
    const connection = openConnection(port, `GET /jobs/${job_id}/events HTTP/1.1\r\nHost: localhost\r\n${CREDENTIALS}\r\n`);
    await expect.poll(() => connection.received().toString('latin1')).toMatch(/^HTTP\/1\.1 200 [\s\S]*\r\n\r\n[\s\S]*data:/);

    // A malformed request pipelined behind the event stream, whose response is under way.
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Bad: a\x01b\r\n\r\n');
    await connection.closedWithin(3000);
    const received = connection.received().toString('latin1');
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received).not.toMatch(/HTTP\/1\.1 400/);
    expect(received).not.toContain('problem+json');
  });
});
