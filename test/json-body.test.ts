import type { LightMyRequestResponse } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import type { OpenApiDocument } from '../src/contract/load.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import type { Store } from '../src/store/store.js';
import { ALICE, allJobs, countStored, startDemo, tempDir } from './helpers.js';
import { openConnection } from './raw-connection.js';

/** Asserts an application/problem+json answer of this status and slug; returns its body. */
function expectProblem(response: LightMyRequestResponse, status: number, slug: string) {
  expect(response.statusCode).toBe(status);
  expect(response.headers['content-type']).toBe('application/problem+json; charset=utf-8');
  const body = response.json();
  expect(body).toMatchObject({ type: `${PROBLEM_TYPE_BASE}${slug}`, status, title: expect.any(String), detail: expect.any(String) });
  return body as { detail: string; errors?: Array<{ in: string; pointer: string; message: string }> };
}

/** `{"title":"<bytes>","rows":1}` with the title's bytes given as they are, valid UTF-8 or not. */
function reportWithTitleBytes(...title: number[]): Buffer {
  return Buffer.concat([Buffer.from('{"title":"'), Buffer.from(title), Buffer.from('","rows":1}')]);
}

/** The titles of the stored jobs' inputs, oldest job first. */
async function storedTitles(store: Store): Promise<string[]> {
  return (await allJobs(store, { withInput: true })).map((job) => (JSON.parse(job.input as string) as { body: { title: string } }).body.title);
}

describe('JSON bodies are UTF-8 (demo, POST /reports)', () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  beforeAll(async () => {
    demo = await startDemo({ workerConcurrency: 0 });
  });
  afterAll(() => demo.close());

  const post = (payload: Buffer | string, key: string, contentType = 'application/json') =>
    demo.app.server.inject({ method: 'POST', url: '/reports', headers: { 'content-type': contentType, 'idempotency-key': key, ...ALICE }, payload });

  it('refuses bytes that are not UTF-8 with 400 malformed-body, so two different broken bodies under one key are not a replay', async () => {
    const latin1 = expectProblem(await post(reportWithTitleBytes(0x63, 0x61, 0x66, 0xe9), 'broken-body'), 400, 'malformed-body');
    expect(latin1.detail).toMatch(/UTF-8/);
    // Decoded leniently, both of these were "\uFFFD" and the second replayed the first's job.
    expectProblem(await post(reportWithTitleBytes(0xff), 'broken-body'), 400, 'malformed-body');
    expectProblem(await post(reportWithTitleBytes(0xfe), 'broken-body'), 400, 'malformed-body');
    expect(await countStored(demo.app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('refuses overlong encodings, encoded surrogates and a sequence cut short', async () => {
    for (const [index, bytes] of [
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xf4, 0x90, 0x80, 0x80],
    ].entries()) {
      expectProblem(await post(reportWithTitleBytes(...bytes), `bad-sequence-${index}`), 400, 'malformed-body');
    }
    expect(await countStored(demo.app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('accepts UTF-8 text, including a U+FFFD the client meant, and stores it as sent', async () => {
    const titles = ['café — ünïcödé', '\u{1F4C8} emoji', 'replacement \uFFFD character'];
    for (const [index, title] of titles.entries()) {
      const response = await post(Buffer.from(JSON.stringify({ title, rows: 1 })), `utf8-${index}`);
      expect(response.statusCode).toBe(202);
    }
    expect(await storedTitles(demo.app.store)).toEqual(titles);
    const replay = await post(Buffer.from(JSON.stringify({ title: titles[0], rows: 1 })), 'utf8-0');
    expect(replay.statusCode).toBe(202);
    expect(replay.headers['idempotent-replayed']).toBe('true');
  });

  it('refuses a declared charset other than UTF-8 with 415 before reading the body', async () => {
    const before = await countStored(demo.app.store);
    const body = JSON.stringify({ title: 'T', rows: 1 });
    for (const [index, contentType] of [
      'application/json; charset=latin1',
      'application/json;charset=ISO-8859-1',
      'application/json; charset="UTF-16"',
      'application/json; charset=utf-16le; foo=bar',
      'application/json; foo="a;b"; Charset=windows-1252',
    ].entries()) {
      const problem = expectProblem(await post(body, `charset-${index}`, contentType), 415, 'unsupported-media-type');
      expect(problem.detail).toMatch(/UTF-8; got charset=/);
    }
    expect(await countStored(demo.app.store)).toEqual(before);
  });

  it('accepts charset=utf-8 in any case, quoted or not', async () => {
    for (const [index, contentType] of ['application/json; charset=utf-8', 'application/json;charset=UTF-8', 'application/json; charset="Utf-8"'].entries()) {
      expect((await post(JSON.stringify({ title: `charset ok ${index}`, rows: 1 }), `charset-ok-${index}`, contentType)).statusCode).toBe(202);
    }
  });

  it('keeps refusing __proto__ and constructor.prototype members with 400 malformed-body', async () => {
    const before = await countStored(demo.app.store);
    expectProblem(await post('{"title":"T","rows":1,"__proto__":{"polluted":true}}', 'proto'), 400, 'malformed-body');
    expectProblem(await post('{"title":"T","rows":1,"constructor":{"prototype":{"polluted":true}}}', 'constructor'), 400, 'malformed-body');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(await countStored(demo.app.store)).toEqual(before);
  });

  it('answers a charset other than UTF-8 over a socket without waiting for the body', async () => {
    const address = await demo.app.server.listen({ port: 0, host: '127.0.0.1' });
    const connection = openConnection(
      Number(new URL(address).port),
      'POST /reports HTTP/1.1\r\nHost: localhost\r\nX-API-Key: key-a\r\nIdempotency-Key: charset-socket\r\n' +
        'Content-Type: application/json; charset=latin1\r\nContent-Length: 1000\r\n\r\n{"title":',
    );
    await expect.poll(() => connection.responses().length, { timeout: 2000 }).toBe(1);
    const [response] = connection.responses();
    expect(response?.status).toBe(415);
    expect(response?.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(JSON.parse(response?.body ?? '{}').type).toBe(`${PROBLEM_TYPE_BASE}unsupported-media-type`);
    connection.socket.destroy();
  });
});

/** A contract whose one asynchronous operation takes any JSON body, in two JSON media types. */
const FREE_FORM: OpenApiDocument = {
  openapi: '3.1.0',
  info: { title: 'free-form', version: '1.0.0' },
  paths: {
    '/documents': {
      post: {
        operationId: 'storeDocument',
        requestBody: { required: true, content: { 'application/json': { schema: {} }, 'application/merge-patch+json': { schema: {} } } },
        responses: { '200': { description: 'stored', content: { 'application/json': { schema: { type: 'object' } } } }, '202': { description: 'accepted' } },
      },
    },
  },
};

describe('free-form JSON bodies (application/json and application/merge-patch+json)', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function start(config: Partial<AsyncFirstConfig> = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createAsyncFirst({
      contract: FREE_FORM,
      handlers: { storeDocument: () => ({ stored: true }) },
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', workerConcurrency: 0, ...config },
    });
    apps.push(app);
    let key = 0;
    const post = (payload: string | Buffer, contentType = 'application/json') =>
      app.server.inject({ method: 'POST', url: '/documents', headers: { 'content-type': contentType, 'idempotency-key': `document-${++key}` }, payload });
    return { app, post };
  }

  it('refuses 5,000 levels of arrays with 400 validation-failed pointing at the body, and stores nothing', async () => {
    const { app, post } = await start();
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    for (const contentType of ['application/json', 'application/merge-patch+json']) {
      const problem = expectProblem(await post(deep, contentType), 400, 'validation-failed');
      expect(problem.errors).toEqual([{ in: 'body', pointer: '', message: 'nests arrays and objects deeper than 64 levels (BODY_MAX_DEPTH)' }]);
    }
    const objects = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    expectProblem(await post(objects), 400, 'validation-failed');
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('accepts 64 levels of nesting and refuses 65 (the default BODY_MAX_DEPTH)', async () => {
    const { app, post } = await start();
    expect((await post(`${'['.repeat(64)}${']'.repeat(64)}`)).statusCode).toBe(202);
    expect((await post(`{"a":${'[{"b":'.repeat(31)}1${'}]'.repeat(31)}}`)).statusCode).toBe(202);
    expectProblem(await post(`${'['.repeat(65)}${']'.repeat(65)}`), 400, 'validation-failed');
    expectProblem(await post(`{"a":${'[{"b":'.repeat(32)}1${'}]'.repeat(32)}}`), 400, 'validation-failed');
    expect(await countStored(app.store)).toEqual({ jobs: 2, keys: 2 });
  });

  it('takes its nesting limit from BODY_MAX_DEPTH', async () => {
    const { app, post } = await start({ bodyMaxDepth: 3 });
    expect((await post('{"a":[{"b":1}]}')).statusCode).toBe(202);
    const problem = expectProblem(await post('{"a":[{"b":[]}]}'), 400, 'validation-failed');
    expect(problem.errors?.[0]?.message).toMatch(/deeper than 3 levels/);
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });

  it('reads application/merge-patch+json as UTF-8 JSON with the same checks as application/json', async () => {
    const { app, post } = await start();
    expect((await post('{"name":"naïve"}', 'application/merge-patch+json')).statusCode).toBe(202);
    expectProblem(await post(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 'application/merge-patch+json'), 400, 'malformed-body');
    expectProblem(await post('{"__proto__":{"polluted":true}}', 'application/merge-patch+json'), 400, 'malformed-body');
    expectProblem(await post('{"a":', 'application/merge-patch+json'), 400, 'malformed-body');
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });

  it('still answers a body over BODY_LIMIT with 413, in either media type', async () => {
    const { app, post } = await start({ bodyLimit: 64 });
    for (const contentType of ['application/json', 'application/merge-patch+json']) {
      expectProblem(await post(JSON.stringify({ padding: 'x'.repeat(100) }), contentType), 413, 'payload-too-large');
    }
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });
});
