import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { OpenApiDocument } from '../src/contract/load.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import type { HandlerContext } from '../src/handlers.js';
import { ALICE, allJobs, BOB, countStored, startDemo, submitReport, tempDir, waitForJob } from './helpers.js';

function expectUnauthorized(response: LightMyRequestResponse) {
  expect(response.statusCode).toBe(401);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.json()).toMatchObject({ type: `${PROBLEM_TYPE_BASE}unauthorized`, status: 401 });
}

describe('the demo’s API key and bearer schemes', () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  afterEach(() => demo.close());

  it('answers 401 problem+json with a Bearer challenge when no credential is sent, and stores nothing', async () => {
    demo = await startDemo();
    const response = await demo.app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'anon-1' },
      payload: JSON.stringify({ title: 'T', rows: 1 }),
    });
    expectUnauthorized(response);
    expect(String(response.headers['www-authenticate'])).toMatch(/^Bearer\b/);
    expect(await countStored(demo.app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('answers 401 for a wrong X-API-Key and a wrong bearer token, on operations and on /jobs/{id}', async () => {
    demo = await startDemo();
    const wrongKey = await submitReport(demo.app, { title: 'T', rows: 1 }, { 'x-api-key': 'not-a-key', 'idempotency-key': 'wrong-1' });
    expectUnauthorized(wrongKey);
    expect(String(wrongKey.headers['www-authenticate'])).toContain('Bearer');

    const wrongBearer = await demo.app.server.inject({
      method: 'GET',
      url: '/reports/estimate?rows=5',
      headers: { authorization: 'Bearer not-a-key' },
    });
    expectUnauthorized(wrongBearer);
    expect(String(wrongBearer.headers['www-authenticate'])).toContain('Bearer');

    const noCredentialJob = await demo.app.server.inject({ method: 'GET', url: '/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV' });
    expectUnauthorized(noCredentialJob);
  });

  it('accepts X-API-Key and Authorization: Bearer for the same principal', async () => {
    demo = await startDemo();
    const byHeader = await submitReport(demo.app, { title: 'T', rows: 2 }, { 'idempotency-key': 'both-1' });
    expect(byHeader.statusCode).toBe(202);
    const { job_id } = byHeader.json();

    // The bearer token maps to the same principal: the same key and body replay the same job.
    const byBearer = await demo.app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'application/json', authorization: 'Bearer key-a', 'idempotency-key': 'both-1' },
      payload: JSON.stringify({ title: 'T', rows: 2 }),
    });
    expect(byBearer.statusCode).toBe(202);
    expect(byBearer.headers['idempotent-replayed']).toBe('true');
    expect(byBearer.json().job_id).toBe(job_id);

    const estimate = await demo.app.server.inject({ method: 'GET', url: '/reports/estimate?rows=3', headers: { authorization: 'Bearer key-a' } });
    expect(estimate.statusCode).toBe(200);
    expect(estimate.json().rows).toBe(3);

    const job = await waitForJob(demo.app, job_id, { authorization: 'Bearer key-a' });
    expect(job.status).toBe('succeeded');

    expect((await allJobs(demo.app.store)).map((stored) => stored.principal)).toEqual(['alice']);
  });

  it('hides a job from another principal: GET and DELETE answer 404', async () => {
    demo = await startDemo();
    const accepted = await submitReport(demo.app, { title: 'mine', rows: 1 }, { 'idempotency-key': 'own-1' });
    expect(accepted.statusCode).toBe(202);
    const { job_id } = accepted.json();

    const asBob = await demo.app.server.inject({ method: 'GET', url: `/jobs/${job_id}`, headers: BOB });
    expect(asBob.statusCode).toBe(404);
    expect(asBob.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(asBob.json().type).toBe(`${PROBLEM_TYPE_BASE}job-not-found`);

    const cancelAsBob = await demo.app.server.inject({ method: 'DELETE', url: `/jobs/${job_id}`, headers: BOB });
    expect(cancelAsBob.statusCode).toBe(404);

    const asAlice = await demo.app.server.inject({ method: 'GET', url: `/jobs/${job_id}`, headers: ALICE });
    expect(asAlice.statusCode).toBe(200);
    expect(asAlice.json().id).toBe(job_id);
    expect(asAlice.json().status).not.toBe('canceled');
  });

  it('scopes Idempotency-Keys by principal: the same key from another principal makes another job', async () => {
    demo = await startDemo();
    const fromAlice = await submitReport(demo.app, { title: 'A', rows: 1 }, { 'idempotency-key': 'shared' });
    const fromBob = await submitReport(demo.app, { title: 'B', rows: 1 }, { ...BOB, 'idempotency-key': 'shared' });
    expect(fromAlice.statusCode).toBe(202);
    expect(fromBob.statusCode).toBe(202);
    expect(fromBob.headers['idempotent-replayed']).toBeUndefined();
    expect(fromBob.json().job_id).not.toBe(fromAlice.json().job_id);
  });
});

describe('security declared inline', () => {
  const apps: AsyncFirstApp[] = [];
  const dirs: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of dirs.splice(0)) cleanup();
  });

  const info = { title: 'inline', version: '1.0.0' };
  const json = (schema: Record<string, unknown>) => ({ content: { 'application/json': { schema } } });

  async function start(contract: OpenApiDocument, handlers: Record<string, (input: never, context: HandlerContext) => unknown>, security = {}) {
    const tmp = tempDir();
    dirs.push(tmp.cleanup);
    const app = await createAsyncFirst({
      contract,
      handlers,
      security,
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', pollIntervalMs: 20, retryBaseMs: 10 },
    });
    apps.push(app);
    app.startBackground();
    return { app };
  }

  it('runs an operation with security: [] as principal "anonymous", in the request and in the stored job', async () => {
    const contract: OpenApiDocument = {
      openapi: '3.1.0',
      info,
      security: [{ KeyAuth: [] }],
      components: { securitySchemes: { KeyAuth: { type: 'apiKey', in: 'header', name: 'X-Key' } } },
      paths: {
        '/whoami': { get: { operationId: 'whoami', security: [], responses: { '200': { description: 'me', ...json({ type: 'object' }) } } } },
        '/tasks': {
          post: {
            operationId: 'runTask',
            security: [],
            requestBody: { required: true, ...json({ type: 'object' }) },
            responses: { '200': { description: 'done', ...json({ type: 'object' }) }, '202': { description: 'accepted' } },
          },
        },
        '/secret': { get: { operationId: 'secret', responses: { '200': { description: 'secret', ...json({ type: 'object' }) } } } },
      },
    };
    const seen: string[] = [];
    const { app } = await start(
      contract,
      {
        whoami: (_input, context) => ({ principal: context.principal }),
        runTask: (_input, context) => {
          seen.push(context.principal);
          return { principal: context.principal };
        },
        secret: () => ({ ok: true }),
      },
      { KeyAuth: (credential: string) => (credential === 'k1' ? 'keyholder' : undefined) },
    );

    const whoami = await app.server.inject({ method: 'GET', url: '/whoami' });
    expect(whoami.statusCode).toBe(200);
    expect(whoami.json()).toEqual({ principal: 'anonymous' });

    // The global requirement still holds for operations that do not override it.
    const secret = await app.server.inject({ method: 'GET', url: '/secret' });
    expect(secret.statusCode).toBe(401);
    expect((await app.server.inject({ method: 'GET', url: '/secret', headers: { 'x-key': 'k1' } })).statusCode).toBe(200);

    const accepted = await app.server.inject({
      method: 'POST',
      url: '/tasks',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'anon-task' },
      payload: '{"n":1}',
    });
    expect(accepted.statusCode).toBe(202);
    const { job_id } = accepted.json();
    const job = await waitForJob(app, job_id, {});
    expect(job.status).toBe('succeeded');
    expect(job.result).toEqual({ principal: 'anonymous' });
    expect(seen).toEqual(['anonymous']);

    expect(await app.store.getJob('anonymous', job_id)).toMatchObject({ principal: 'anonymous', operation: 'runTask', status: 'succeeded' });
    // The one idempotency record stored is the anonymous principal's.
    expect(await app.store.countIdempotencyRecords()).toBe(1);
    expect(await app.store.getIdempotencyRecord('anonymous', 'runTask', 'anon-task')).toMatchObject({ principal: 'anonymous', jobId: job_id });
  });

  it('passes an HTTP basic credential to its handler as "user:pass" and uses the principal it returns', async () => {
    const contract: OpenApiDocument = {
      openapi: '3.1.0',
      info,
      security: [{ Basic: [] }],
      components: { securitySchemes: { Basic: { type: 'http', scheme: 'basic' } } },
      paths: { '/me': { get: { operationId: 'me', responses: { '200': { description: 'me', ...json({ type: 'object' }) } } } } },
    };
    const credentials: string[] = [];
    const { app } = await start(
      contract,
      { me: (_input, context) => ({ principal: context.principal }) },
      {
        Basic: (credential: string) => {
          credentials.push(credential);
          return credential === 'user:pass' ? 'basic-user' : undefined;
        },
      },
    );
    const basic = (value: string) => `Basic ${Buffer.from(value).toString('base64')}`;

    const ok = await app.server.inject({ method: 'GET', url: '/me', headers: { authorization: basic('user:pass') } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ principal: 'basic-user' });

    const wrong = await app.server.inject({ method: 'GET', url: '/me', headers: { authorization: basic('user:nope') } });
    expectUnauthorized(wrong);
    expect(String(wrong.headers['www-authenticate'])).toMatch(/^Basic\b/);

    const none = await app.server.inject({ method: 'GET', url: '/me' });
    expectUnauthorized(none);
    expect(credentials).toEqual(['user:pass', 'user:nope']);
  });
});
