import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { problem } from '../src/core/problems.js';
import { createDemo } from '../src/demo/service.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import { machineLeaseClock } from '../src/store/sqlite/lease-clock.js';
import { API_KEYS, submitReport, tempDir, waitForJob } from './helpers.js';
import { customApp, readJobRow, sleep, waitFor } from './worker-test-support.js';

describe('a worker that cannot renew its lease', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('gives the attempt up before its lease can lapse, so the worker that takes the job over never runs beside it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const runs: Array<{ attempt: number | undefined; startedAt: number; endedAt?: number; reason?: string }> = [];
    const createReport = async (_input: unknown, context: { signal: AbortSignal; job?: { attempt: number } }) => {
      const run: (typeof runs)[number] = { attempt: context.job?.attempt, startedAt: performance.now() };
      runs.push(run);
      try {
        await sleepFor(context.job?.attempt === 1 ? 3000 : 10, undefined, { signal: context.signal });
      } catch (error) {
        run.reason = String(context.signal.reason);
        throw error;
      } finally {
        run.endedAt = performance.now();
      }
      return { title: 'long', format: 'csv', rowCount: 1, bytes: 1, sha256: 'c'.repeat(64) };
    };
    // The first worker's renewals never come back (its database connection hangs); its claims and finishes still work.
    const real = await openSqliteEngine(tmp.dbPath);
    let stallRenewals = false;
    const stalling = new Proxy(real, {
      get(target, property) {
        if (property === 'renewLease' && stallRenewals) return () => new Promise(() => {});
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const config = { leaseMs: 600, pollIntervalMs: 20, workerConcurrency: 1 };
    const stuck = await customApp({ dbPath: tmp.dbPath, createReport, config, store: stalling });
    apps.push(stuck);
    stuck.startBackground();
    const accepted = await submitReport(stuck, { title: 'long', rows: 1 }, { 'idempotency-key': 'stalled-renewals' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    await waitFor('the first attempt to start', () => (runs.length === 1 ? true : undefined));
    stallRenewals = true;

    const rescuer = await customApp({ dbPath: tmp.dbPath, createReport, config });
    apps.push(rescuer);
    rescuer.startBackground();
    const job = (await waitForJob(rescuer, id)) as JobView;
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(2);
    expect(runs.map((run) => run.attempt)).toEqual([1, 2]);
    const [first, second] = runs as [(typeof runs)[number], (typeof runs)[number]];
    expect(first.reason).toMatch(/could not be renewed in time/);
    // The first attempt had ended before the second began.
    expect(first.endedAt).toBeLessThan(second.startedAt);
  });
});

interface JobView {
  status: string;
  attempts: number;
  maxAttempts: number;
  error?: { type: string; detail?: string };
  result?: { rowCount: number };
}

describe('a dead worker’s job is taken over when its lease expires', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  function demoOn(dbPath: string, config: Partial<AsyncFirstConfig>, maxAttempts?: number) {
    return createDemo({
      apiKeys: API_KEYS,
      config: { databaseUrl: dbPath, logLevel: 'silent', pollIntervalMs: 20, retryBaseMs: 20, retryMaxMs: 200, ...config },
      ...(maxAttempts === undefined ? {} : { operations: { createReport: { maxAttempts } } }),
    }).then((app) => {
      apps.push(app);
      return app;
    });
  }

  /**
   * Accepts one job in an app that runs no worker, then claims it as worker "dead", which never
   * finishes it. A rescuer app (worker not started) is built before the claim when asked for, so
   * the lease runs only from the claim on.
   */
  async function jobHeldByDeadWorker(leaseMs: number, options: { maxAttempts?: number; rescuer?: Partial<AsyncFirstConfig> } = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const acceptor = await demoOn(tmp.dbPath, { workerConcurrency: 0 }, options.maxAttempts);
    const accepted = await submitReport(acceptor, { title: 'orphan', rows: 20 }, { 'idempotency-key': 'orphan-1' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    const rescuer = options.rescuer ? await demoOn(tmp.dbPath, options.rescuer) : undefined;
    const claimedAt = Date.now();
    const leaseClockAtClaim = machineLeaseClock().now();
    const claimed = await acceptor.store.claimJobs({ owner: 'dead', limit: 1, now: claimedAt, leaseMs });
    expect(claimed).toHaveLength(1);
    expect(claimed[0]).toMatchObject({ id, attempts: 1, fence: 1 });
    const row = readJobRow(tmp.dbPath, id);
    expect(row).toMatchObject({ status: 'running', lease_owner: 'dead', lease_epoch: machineLeaseClock().epoch, fence: 1 });
    // The lease is measured on the machine's monotonic clock, not the wall clock.
    expect(row?.lease_expires_at).toBeGreaterThanOrEqual(leaseClockAtClaim + leaseMs);
    expect(row?.lease_expires_at).toBeLessThanOrEqual(machineLeaseClock().now() + leaseMs);
    return { dbPath: tmp.dbPath, id, acceptor, rescuer, fence: claimed[0]?.fence ?? 0, leaseExpiresAt: claimedAt + leaseMs };
  }

  it('leaves the job to its owner until the lease expires, then a worker on the same file takes it over and completes it (attempts 2)', async () => {
    const { dbPath, id, rescuer, leaseExpiresAt } = await jobHeldByDeadWorker(1000, { rescuer: { workerConcurrency: 2, leaseMs: 500 } });
    if (!rescuer) throw new Error('no rescuer app');
    rescuer.startBackground();

    // The rescuer polls every 20 ms; while the dead worker's lease holds, the job stays the dead worker's.
    let samples = 0;
    while (Date.now() < leaseExpiresAt - 100) {
      expect(readJobRow(dbPath, id)).toMatchObject({ status: 'running', lease_owner: 'dead', fence: 1, attempts: 1 });
      samples++;
      await sleep(50);
    }
    expect(samples).toBeGreaterThan(0);

    const job = (await waitForJob(rescuer, id)) as JobView;
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(2);
    expect(job.result?.rowCount).toBe(20);
    expect(readJobRow(dbPath, id)).toMatchObject({ status: 'succeeded', attempts: 2, fence: 2, lease_owner: null, lease_epoch: null, lease_expires_at: null });
  });

  it("refuses the dead worker's late write with its old fence and leaves the row unchanged", async () => {
    const { dbPath, id, acceptor, rescuer, fence } = await jobHeldByDeadWorker(50, { rescuer: { workerConcurrency: 1 } });
    if (!rescuer) throw new Error('no rescuer app');
    rescuer.startBackground();
    expect(((await waitForJob(rescuer, id)) as JobView).status).toBe('succeeded');
    const before = readJobRow(dbPath, id);
    expect(before).toMatchObject({ status: 'succeeded', fence: 2 });

    const lateFailure = await acceptor.store.finishJob(id, fence, { status: 'failed', error: problem('jobHandlerFailed', 'late') }, Date.now());
    const lateSuccess = await acceptor.store.finishJob(id, fence, { status: 'succeeded', result: '{"late":true}' }, Date.now());
    const lateRetry = await acceptor.store.retryJob(id, fence, problem('jobHandlerFailed', 'late'), Date.now(), Date.now());
    const lateRelease = await acceptor.store.releaseJob(id, fence, Date.now());
    const lateRenewal = await acceptor.store.renewLease(id, fence, 60_000, Date.now());
    expect([lateFailure, lateSuccess, lateRetry, lateRelease]).toEqual([false, false, false, false]);
    expect(lateRenewal.held).toBe(false);
    expect(readJobRow(dbPath, id)).toEqual(before);
  });

  it("refuses a stale fence even while the job is still running under the new owner's lease", async () => {
    const { dbPath, id, acceptor, fence } = await jobHeldByDeadWorker(50);
    await sleep(80);
    // A second claimant (plain store call) takes the job over after the lease expired.
    const [takenOver] = await acceptor.store.claimJobs({ owner: 'alive', limit: 1, now: Date.now(), leaseMs: 60_000 });
    expect(takenOver).toMatchObject({ id, fence: fence + 1, attempts: 2 });
    const before = readJobRow(dbPath, id);
    expect(before).toMatchObject({ status: 'running', lease_owner: 'alive' });

    expect(await acceptor.store.finishJob(id, fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(false);
    expect(readJobRow(dbPath, id)).toEqual(before);
    expect(await acceptor.store.finishJob(id, fence + 1, { status: 'succeeded', result: '{"ok":1}' }, Date.now())).toBe(true);
    expect(readJobRow(dbPath, id)).toMatchObject({ status: 'succeeded', result: '{"ok":1}', lease_owner: null });
  });

  it('fails an abandoned job that has no attempts left with job-lease-expired', async () => {
    const { dbPath, id, rescuer } = await jobHeldByDeadWorker(50, { maxAttempts: 1, rescuer: { workerConcurrency: 1 } });
    if (!rescuer) throw new Error('no rescuer app');
    expect(readJobRow(dbPath, id)).toMatchObject({ max_attempts: 1, attempts: 1 });
    rescuer.startBackground();

    const job = (await waitForJob(rescuer, id)) as JobView;
    expect(job.status).toBe('failed');
    expect(job.attempts).toBe(1);
    expect(job.error?.type).toBe('urn:asyncfirst:problem:job-lease-expired');
    expect(job.result).toBeUndefined();
    const row = readJobRow(dbPath, id);
    expect(row).toMatchObject({ status: 'failed', attempts: 1, fence: 1, lease_owner: null, result: null });
    expect(row?.finished_at).not.toBeNull();
  });
});

describe('lease renewal', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it('keeps a job that runs longer than leaseMs from being taken over by a second worker on the same file', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const runs: Array<{ attempt: number | undefined; aborted: boolean }> = [];
    const createReport = async (_input: unknown, context: { signal: AbortSignal; job?: { attempt: number } }) => {
      const run = { attempt: context.job?.attempt, aborted: false };
      runs.push(run);
      context.signal.addEventListener('abort', () => {
        run.aborted = true;
      });
      await sleep(1000);
      return { title: 'long', format: 'csv', rowCount: 1, bytes: 1, sha256: 'c'.repeat(64) };
    };
    const config = { leaseMs: 300, pollIntervalMs: 20 };
    const first = await customApp({ dbPath: tmp.dbPath, createReport, config });
    apps.push(first);
    const second = await customApp({ dbPath: tmp.dbPath, createReport, config });
    apps.push(second);
    first.startBackground();
    second.startBackground();

    const accepted = await submitReport(first, { title: 'long', rows: 1 }, { 'idempotency-key': 'long-running' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    const owner = await waitFor('the job to be claimed', () => readJobRow(tmp.dbPath, id)?.lease_owner ?? undefined);
    expect([first.worker?.owner, second.worker?.owner]).toContain(owner);

    const job = (await waitForJob(first, id)) as JobView;
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(1);
    expect(runs).toEqual([{ attempt: 1, aborted: false }]);
    expect(readJobRow(tmp.dbPath, id)).toMatchObject({ status: 'succeeded', attempts: 1, fence: 1 });
  });
});
