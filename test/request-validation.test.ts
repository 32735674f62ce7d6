import type { LightMyRequestResponse } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAsyncFirst } from '../src/app.js';
import { readContractFile } from '../src/contract/load.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { demoSecurity, parseApiKeys, reportHandlers } from '../src/demo/service.js';
import { ALICE, API_KEYS, countStored, startDemo, submitReport, tempDir } from './helpers.js';

interface Violation {
  in: string;
  pointer: string;
  message: string;
}

/** Asserts an application/problem+json answer of this status and slug; returns its body. */
function expectProblem(response: LightMyRequestResponse, status: number, slug: string) {
  expect(response.statusCode).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json();
  expect(body.type).toBe(`${PROBLEM_TYPE_BASE}${slug}`);
  expect(body.status).toBe(status);
  expect(typeof body.title).toBe('string');
  return body as { type: string; status: number; title: string; detail?: string; errors?: Violation[] };
}

describe('request validation against the contract (demo)', () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  beforeAll(async () => {
    demo = await startDemo();
  });
  afterAll(() => demo.close());

  let keyNumber = 0;
  const submit = (body: unknown) => submitReport(demo.app, body, { 'idempotency-key': `validation-${++keyNumber}` });

  it('rejects a body missing a required property with pointer /title, and stores no job', async () => {
    const body = expectProblem(await submit({ rows: 5 }), 400, 'validation-failed');
    expect(body.errors).toContainEqual({ in: 'body', pointer: '/title', message: 'is required' });
    expect((await countStored(demo.app.store)).jobs).toBe(0);
  });

  it('rejects an additional body property with pointer /x', async () => {
    const body = expectProblem(await submit({ title: 'T', rows: 5, x: 1 }), 400, 'validation-failed');
    expect(body.errors).toContainEqual({ in: 'body', pointer: '/x', message: 'is not allowed' });
  });

  it('rejects a title longer than 200 characters with pointer /title', async () => {
    const body = expectProblem(await submit({ title: 'a'.repeat(201), rows: 5 }), 400, 'validation-failed');
    expect(body.errors).toHaveLength(1);
    expect(body.errors?.[0]).toMatchObject({ in: 'body', pointer: '/title' });
    expect(body.errors?.[0]?.message).toMatch(/200/);
  });

  it('rejects rows out of range (0 and 1000001) with pointer /rows', async () => {
    for (const rows of [0, 1_000_001]) {
      const body = expectProblem(await submit({ title: 'T', rows }), 400, 'validation-failed');
      expect(body.errors).toEqual([expect.objectContaining({ in: 'body', pointer: '/rows' })]);
    }
  });

  it('does not coerce body types: rows "5" is a violation, not the number 5', async () => {
    const body = expectProblem(await submit({ title: 'T', rows: '5' }), 400, 'validation-failed');
    expect(body.errors).toEqual([{ in: 'body', pointer: '/rows', message: 'must be integer' }]);
    expect((await countStored(demo.app.store)).jobs).toBe(0);
  });

  it('reports every violation of a body at once', async () => {
    const body = expectProblem(await submit({ rows: 'many', x: true }), 400, 'validation-failed');
    const pointers = (body.errors ?? []).map((violation) => violation.pointer).sort();
    expect(pointers).toEqual(['/rows', '/title', '/x']);
  });

  it('rejects a query value of the wrong type with in:query, pointer /rows', async () => {
    const response = await demo.app.server.inject({ method: 'GET', url: '/reports/estimate?rows=abc', headers: ALICE });
    const body = expectProblem(response, 400, 'validation-failed');
    expect(body.errors).toEqual([expect.objectContaining({ in: 'query', pointer: '/rows' })]);
  });

  it('rejects a missing required query parameter and an enum violation in the query', async () => {
    const missing = expectProblem(await demo.app.server.inject({ method: 'GET', url: '/reports/estimate', headers: ALICE }), 400, 'validation-failed');
    expect(missing.errors).toEqual([{ in: 'query', pointer: '/rows', message: 'is required' }]);
    const badEnum = expectProblem(
      await demo.app.server.inject({ method: 'GET', url: '/reports/estimate?rows=5&format=xml', headers: ALICE }),
      400,
      'validation-failed',
    );
    expect(badEnum.errors).toEqual([{ in: 'query', pointer: '/format', message: 'must be one of "csv", "json"' }]);
  });

  it('coerces query strings to their declared types: rows=5 is the number 5', async () => {
    const response = await demo.app.server.inject({ method: 'GET', url: '/reports/estimate?rows=5', headers: ALICE });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const body = response.json();
    expect(body.rows).toBe(5);
    expect(body.format).toBe('csv');
    expect(Number.isInteger(body.estimatedBytes)).toBe(true);
  });

  it('answers malformed JSON with 400 malformed-body', async () => {
    const response = await demo.app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'malformed-1', ...ALICE },
      payload: '{"title": "T", "rows": ',
    });
    expectProblem(response, 400, 'malformed-body');
    expect((await countStored(demo.app.store)).jobs).toBe(0);
  });

  it('answers a content type the operation does not declare with 415', async () => {
    const response = await demo.app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'text/plain', 'idempotency-key': 'plain-1', ...ALICE },
      payload: 'title=T rows=5',
    });
    const body = expectProblem(response, 415, 'unsupported-media-type');
    expect(body.detail).toContain('text/plain');
    expect((await countStored(demo.app.store)).jobs).toBe(0);
  });

  it('answers an unknown path with 404 problem+json', async () => {
    const response = await demo.app.server.inject({ method: 'GET', url: '/no/such/thing?x=1', headers: ALICE });
    const body = expectProblem(response, 404, 'not-found');
    expect(body.detail).toContain('/no/such/thing');
  });

  it('answers a known path with a wrong method with 405 and Allow (PUT /reports → POST)', async () => {
    const response = await demo.app.server.inject({ method: 'PUT', url: '/reports', headers: { 'content-type': 'application/json', ...ALICE }, payload: '{}' });
    expectProblem(response, 405, 'method-not-allowed');
    expect(response.headers.allow).toBe('POST');
  });

  it('answers POST /jobs/{id} with 405 and an Allow that lists GET and DELETE', async () => {
    const response = await demo.app.server.inject({ method: 'POST', url: '/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV', headers: ALICE });
    expectProblem(response, 405, 'method-not-allowed');
    const allow = String(response.headers.allow)
      .split(',')
      .map((method) => method.trim());
    expect(allow).toEqual(expect.arrayContaining(['GET', 'DELETE']));
    expect(allow).not.toContain('POST');
  });
});

describe('body limit', () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  afterEach(() => demo.close());

  it('answers a body over config.bodyLimit with 413 and stores no job', async () => {
    demo = await startDemo({ bodyLimit: 100 });
    const small = await submitReport(demo.app, { title: 'ok', rows: 1 }, { 'idempotency-key': 'limit-small' });
    expect(small.statusCode).toBe(202);
    const large = await submitReport(demo.app, { title: 'x'.repeat(150), rows: 1 }, { 'idempotency-key': 'limit-large' });
    expectProblem(large, 413, 'payload-too-large');
    expect((await countStored(demo.app.store)).jobs).toBe(1);
  });
});

describe('a synchronous handler that throws', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('answers 500 problem+json without the error message or a stack trace', async () => {
    const secret = 'secret-internal-detail-42';
    const app = await createAsyncFirst({
      contract: await readContractFile(new URL('../openapi.yaml', import.meta.url).pathname),
      handlers: {
        createReport: reportHandlers.createReport,
        estimateReport: () => {
          throw new Error(secret);
        },
        indexReport: reportHandlers.indexReport,
      },
      security: demoSecurity(parseApiKeys(API_KEYS)),
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', workerConcurrency: 0 },
    });
    try {
      const response = await app.server.inject({ method: 'GET', url: '/reports/estimate?rows=5', headers: ALICE });
      const body = expectProblem(response, 500, 'internal');
      expect(response.body).not.toContain(secret);
      expect(response.body).not.toMatch(/stack|\bat .*:\d+:\d+|\.ts\b|node_modules/);
      expect(Object.keys(body).sort()).toEqual(['detail', 'status', 'title', 'type']);
    } finally {
      await app.close();
    }
  });
});
