import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ALICE, countStored, startDemo, submitReport } from './helpers.js';

const UNAVAILABLE = 'urn:asyncfirst:problem:store-unavailable';
const BODY = { title: 'Q3', rows: 5 };

function expectUnavailable(response: { statusCode: number; headers: Record<string, unknown>; json: <T>() => T }) {
  expect(response.statusCode).toBe(503);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(String(response.headers['retry-after'])).toMatch(/^[1-9][0-9]*$/);
  expect(response.json()).toMatchObject({ type: UNAVAILABLE, status: 503, title: 'Job store unavailable' });
}

describe('the store cannot take a write', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  let blocker: Database.Database | undefined;
  afterEach(async () => {
    if (blocker?.inTransaction) blocker.exec('ROLLBACK');
    blocker?.close();
    blocker = undefined;
    await demo?.close();
    demo = undefined;
  });

  /** A second connection to the same file that holds the write lock until ROLLBACK. */
  const holdWriteLock = (dbPath: string) => {
    blocker = new Database(dbPath);
    blocker.exec('BEGIN IMMEDIATE');
    return blocker;
  };

  it('answers a submission 503 store-unavailable with Retry-After while another connection holds the write lock, and writes nothing', async () => {
    // No worker: its claims would wait on the same lock and only slow the test down.
    demo = await startDemo({ busyTimeoutMs: 100, workerConcurrency: 0 });
    const { app, dbPath } = demo;
    const lock = holdWriteLock(dbPath);

    const refused = await submitReport(app, BODY, { 'idempotency-key': 'busy-1' });
    expectUnavailable(refused);
    expect(refused.headers.location).toBeUndefined();
    expect(refused.headers['x-job-id']).toBeUndefined();
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });

    // A replay of the refused request is refused the same way while the lock is held.
    expectUnavailable(await submitReport(app, BODY, { 'idempotency-key': 'busy-1' }));

    lock.exec('ROLLBACK');
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });

    // The key was not used up: the same key and body now create the job.
    const accepted = await submitReport(app, BODY, { 'idempotency-key': 'busy-1' });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.headers['idempotent-replayed']).toBeUndefined();
    const jobId = accepted.json<{ job_id: string }>().job_id;
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });

    const replay = await submitReport(app, BODY, { 'idempotency-key': 'busy-1' });
    expect(replay.statusCode).toBe(202);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json<{ job_id: string }>().job_id).toBe(jobId);
  });

  it('answers every one of several racing submissions 503 while the lock is held, and keeps none of them', async () => {
    demo = await startDemo({ busyTimeoutMs: 100, workerConcurrency: 0 });
    const { app, dbPath } = demo;
    const lock = holdWriteLock(dbPath);

    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => submitReport(app, BODY, { 'idempotency-key': `group-${i}` })));
    for (const answer of answers) expectUnavailable(answer);
    lock.exec('ROLLBACK');
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });

    const retried = await Promise.all(Array.from({ length: 5 }, (_, i) => submitReport(app, BODY, { 'idempotency-key': `group-${i}` })));
    for (const answer of retried) {
      expect(answer.statusCode).toBe(202);
      expect(answer.headers['idempotent-replayed']).toBeUndefined();
    }
    expect(await countStored(app.store)).toEqual({ jobs: 5, keys: 5 });
  });

  it('still answers GET /jobs/{id} while the write lock is held (reads do not wait for writers), but DELETE answers 503', async () => {
    demo = await startDemo({ busyTimeoutMs: 100, workerConcurrency: 0 });
    const { app, dbPath } = demo;
    const accepted = await submitReport(app, BODY, { 'idempotency-key': 'read-1' });
    expect(accepted.statusCode).toBe(202);
    const jobId = accepted.json<{ job_id: string }>().job_id;
    const lock = holdWriteLock(dbPath);

    const job = await app.server.inject({ method: 'GET', url: `/jobs/${jobId}`, headers: ALICE });
    expect(job.statusCode).toBe(200);
    expect(job.json()).toMatchObject({ id: jobId, status: 'queued' });

    const cancel = await app.server.inject({ method: 'DELETE', url: `/jobs/${jobId}`, headers: ALICE });
    expectUnavailable(cancel);

    lock.exec('ROLLBACK');
    const after = await app.server.inject({ method: 'GET', url: `/jobs/${jobId}`, headers: ALICE });
    expect(after.json()).toMatchObject({ status: 'queued' });
  });
});

describe('the store has failed', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
  });

  it('answers GET /jobs/{id}, DELETE /jobs/{id} and a submission 503 problem+json, not 500, once the store is closed', async () => {
    demo = await startDemo({ workerConcurrency: 0 });
    const { app } = demo;
    const accepted = await submitReport(app, BODY, { 'idempotency-key': 'closed-1' });
    expect(accepted.statusCode).toBe(202);
    const jobId = accepted.json<{ job_id: string }>().job_id;

    await app.store.close();

    expectUnavailable(await app.server.inject({ method: 'GET', url: `/jobs/${jobId}`, headers: ALICE }));
    expectUnavailable(await app.server.inject({ method: 'DELETE', url: `/jobs/${jobId}`, headers: ALICE }));
    expectUnavailable(await submitReport(app, BODY, { 'idempotency-key': 'closed-2' }));
    // Requests that do not need the store are still answered as usual.
    expect((await app.server.inject({ method: 'GET', url: '/jobs/not-a-job-id', headers: ALICE })).statusCode).toBe(404);
  });

  it('answers GET /jobs/{id} 503 when the worker is running against the closed store too', async () => {
    demo = await startDemo();
    const { app } = demo;
    const accepted = await submitReport(app, BODY, { 'idempotency-key': 'closed-3' });
    const jobId = accepted.json<{ job_id: string }>().job_id;
    await app.store.close();
    // Wake the worker against the closed store; its failed claims must not take the server down.
    for (let i = 0; i < 3; i++) {
      app.worker?.notify();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expectUnavailable(await app.server.inject({ method: 'GET', url: `/jobs/${jobId}`, headers: ALICE }));
  });
});
