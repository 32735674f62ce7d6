import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AnyHandler } from '../src/handlers.js';
import { ALICE, allJobs, readStoreOn, submitReport, tempDir } from './helpers.js';
import { customApp, type DemoProcess, expectNoLease, gate, killDemoProcess, startDemoProcess, waitFor } from './worker-test-support.js';

const REPORT = { title: 'ok', format: 'csv', rowCount: 1, bytes: 1, sha256: 'e'.repeat(64) };

describe('app.close() while a handler runs', () => {
  let app: AsyncFirstApp | undefined;
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    await app?.close();
    app = undefined;
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function start(createReport: AnyHandler, shutdownGraceMs: number) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    app = await customApp({ dbPath: tmp.dbPath, createReport, config: { workerConcurrency: 1, shutdownGraceMs } });
    app.startBackground();
    return { app, dbPath: tmp.dbPath };
  }

  async function submitAndWaitRunning(running: AsyncFirstApp, key: string, started: () => boolean) {
    const accepted = await submitReport(running, { title: key, rows: 1 }, { 'idempotency-key': key });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    await waitFor('the handler to start', () => (started() ? true : undefined));
    expect(await running.store.getJob('alice', id)).toMatchObject({ status: 'running', attempts: 1 });
    return id;
  }

  it('lets a handler that finishes within the grace period complete: the job is succeeded after close()', async () => {
    const finish = gate();
    let started = false;
    let aborted = false;
    const { app: running, dbPath } = await start(async (_input, context) => {
      started = true;
      context.signal.addEventListener('abort', () => {
        aborted = true;
      });
      await finish.promise;
      return REPORT;
    }, 5000);
    const id = await submitAndWaitRunning(running, 'finishes-in-grace', () => started);

    const closed = running.close();
    // The handler finishes a moment after shutdown began, well within the grace period.
    setTimeout(finish.open, 100);
    await closed;
    expect(aborted).toBe(false);
    // The app has closed: read the file as another process would.
    const job = await readStoreOn(dbPath, (store) => store.getJob('alice', id));
    expect(job).toMatchObject({ status: 'succeeded', attempts: 1 });
    expectNoLease(job);
    expect(JSON.parse(job?.result ?? 'null')).toEqual(REPORT);
  });

  it('releases a handler that outlives shutdownGraceMs back to the queue without counting the attempt', async () => {
    const never = gate();
    let started = false;
    let abortReason: unknown;
    const { app: running, dbPath } = await start(async (_input, context) => {
      started = true;
      context.signal.addEventListener('abort', () => {
        abortReason = context.signal.reason;
      });
      // Ignores its signal: runs on until the test lets it go.
      await never.promise;
      return REPORT;
    }, 200);
    const id = await submitAndWaitRunning(running, 'outlives-grace', () => started);

    await running.close();
    expect((abortReason as Error | undefined)?.message).toMatch(/shutting down/);
    const job = await readStoreOn(dbPath, (store) => store.getJob('alice', id));
    expect(job).toMatchObject({ status: 'queued', attempts: 0 });
    expectNoLease(job);
    expect(job?.result).toBeUndefined();
    expect(job?.finishedAt).toBeUndefined();
    // The handler's late end changes nothing: its claim was given back.
    never.open();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await readStoreOn(dbPath, (store) => store.getJob('alice', id))).toEqual(job);
  });

  it('answers requests that arrive during shutdown with 503 problem+json and stores nothing', async () => {
    const finish = gate();
    let started = false;
    const { app: running, dbPath } = await start(async () => {
      started = true;
      await finish.promise;
      return REPORT;
    }, 5000);
    const id = await submitAndWaitRunning(running, 'in-flight', () => started);

    const closed = running.close();
    const requests = [
      submitReport(running, { title: 'too late', rows: 1 }, { 'idempotency-key': 'during-shutdown' }),
      running.server.inject({ method: 'GET', url: `/jobs/${id}`, headers: ALICE }),
      running.server.inject({ method: 'DELETE', url: `/jobs/${id}`, headers: ALICE }),
      running.server.inject({ method: 'GET', url: '/reports/estimate?rows=10', headers: ALICE }),
    ];
    for (const response of await Promise.all(requests)) {
      expect(response.statusCode).toBe(503);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.headers['retry-after']).toBe('1');
      expect(response.json<{ type: string; status: number }>()).toMatchObject({ type: 'urn:asyncfirst:problem:shutting-down', status: 503 });
    }
    finish.open();
    await closed;
    const jobs = await readStoreOn(dbPath, (store) => allJobs(store));
    expect(jobs.map((job) => [job.id, job.status, job.cancelRequested])).toEqual([[id, 'succeeded', false]]);
  });
});

describe('SIGTERM to the demo process', () => {
  let demo: DemoProcess | undefined;
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    await killDemoProcess(demo);
    demo = undefined;
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('stops gracefully with exit code 0, giving a job still running after the grace period back to the queue', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    demo = await startDemoProcess('serve', { DATABASE_URL: tmp.dbPath, SHUTDOWN_GRACE_MS: '100' });
    expect(demo.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // A million rows take far longer than the 100 ms grace period; the embedded worker claims the job on acceptance.
    const response = await fetch(`${demo.address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'sigterm-1', ...ALICE },
      body: JSON.stringify({ title: 'before SIGTERM', rows: 1_000_000 }),
    });
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };

    demo.child.kill('SIGTERM');
    const { code, signal } = await demo.exited;
    expect(signal, demo.stderr()).toBeNull();
    expect(code, demo.stderr()).toBe(0);
    const job = await readStoreOn(tmp.dbPath, (store) => store.getJob('alice', job_id));
    expect(job).toMatchObject({ id: job_id, principal: 'alice', operation: 'createReport', status: 'queued', attempts: 0 });
    expectNoLease(job);
  });
});
