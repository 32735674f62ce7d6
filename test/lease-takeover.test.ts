import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { problem } from '../src/core/problems.js';
import { createDemo } from '../src/demo/service.js';
import { JobEngine } from '../src/engine/job-engine.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import { machineLeaseClock } from '../src/store/sqlite/lease-clock.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { JobRecord } from '../src/store/store.js';
import { API_KEYS, submitReport, tempDir, waitForJob } from './helpers.js';
import { customApp, expectNoLease, sleep, waitFor } from './worker-test-support.js';

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
    const job = await acceptor.store.getJob('alice', id);
    const leaseClockAtRead = machineLeaseClock().now();
    expect(job).toMatchObject({ status: 'running', leaseOwner: 'dead', fence: 1 });
    // The lease is measured on the machine's monotonic clock (of this boot), not the wall clock:
    // it runs leaseMs from the claim, less what has passed on that clock since.
    expect(job?.leaseExpiresInMs).toBeLessThanOrEqual(leaseMs);
    expect(job?.leaseExpiresInMs).toBeGreaterThanOrEqual(leaseMs - (leaseClockAtRead - leaseClockAtClaim));
    return { id, acceptor, rescuer, fence: claimed[0]?.fence ?? 0, leaseExpiresAt: claimedAt + leaseMs };
  }

  it('leaves the job to its owner until the lease expires, then a worker on the same file takes it over and completes it (attempts 2)', async () => {
    const { id, rescuer, leaseExpiresAt } = await jobHeldByDeadWorker(1000, { rescuer: { workerConcurrency: 2, leaseMs: 500 } });
    if (!rescuer) throw new Error('no rescuer app');
    rescuer.startBackground();

    // The rescuer polls every 20 ms; while the dead worker's lease holds, the job stays the dead worker's.
    let samples = 0;
    while (Date.now() < leaseExpiresAt - 100) {
      expect(await rescuer.store.getJob('alice', id)).toMatchObject({ status: 'running', leaseOwner: 'dead', fence: 1, attempts: 1 });
      samples++;
      await sleep(50);
    }
    expect(samples).toBeGreaterThan(0);

    const job = (await waitForJob(rescuer, id)) as JobView;
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(2);
    expect(job.result?.rowCount).toBe(20);
    const stored = await rescuer.store.getJob('alice', id);
    expect(stored).toMatchObject({ status: 'succeeded', attempts: 2, fence: 2 });
    expectNoLease(stored);
  });

  it("refuses the dead worker's late write with its old fence and leaves the row unchanged", async () => {
    const { id, acceptor, rescuer, fence } = await jobHeldByDeadWorker(50, { rescuer: { workerConcurrency: 1 } });
    if (!rescuer) throw new Error('no rescuer app');
    rescuer.startBackground();
    expect(((await waitForJob(rescuer, id)) as JobView).status).toBe('succeeded');
    const before = await acceptor.store.getJob('alice', id);
    expect(before).toMatchObject({ status: 'succeeded', fence: 2 });

    const lateFailure = await acceptor.store.finishJob(id, fence, { status: 'failed', error: problem('jobHandlerFailed', 'late') }, Date.now());
    const lateSuccess = await acceptor.store.finishJob(id, fence, { status: 'succeeded', result: '{"late":true}' }, Date.now());
    const lateRetry = await acceptor.store.retryJob(id, fence, problem('jobHandlerFailed', 'late'), Date.now(), Date.now());
    const lateRelease = await acceptor.store.releaseJob(id, fence, Date.now());
    const lateRenewal = await acceptor.store.renewLease(id, fence, 60_000, Date.now());
    expect([lateFailure, lateSuccess, lateRetry, lateRelease]).toEqual([false, false, false, false]);
    expect(lateRenewal.held).toBe(false);
    expect(await acceptor.store.getJob('alice', id)).toEqual(before);
  });

  it("refuses a stale fence even while the job is still running under the new owner's lease", async () => {
    const { id, acceptor, fence } = await jobHeldByDeadWorker(50);
    await sleep(80);
    // A second claimant (plain store call) takes the job over after the lease expired.
    const [takenOver] = await acceptor.store.claimJobs({ owner: 'alive', limit: 1, now: Date.now(), leaseMs: 60_000 });
    expect(takenOver).toMatchObject({ id, fence: fence + 1, attempts: 2 });
    // What the lease has left runs down between two reads; everything else stays as it was.
    const apartFromLeaseTime = (job: JobRecord | undefined) => ({ ...job, leaseExpiresInMs: undefined });
    const before = await acceptor.store.getJob('alice', id);
    expect(before).toMatchObject({ status: 'running', leaseOwner: 'alive' });

    expect(await acceptor.store.finishJob(id, fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(false);
    const after = await acceptor.store.getJob('alice', id);
    expect(apartFromLeaseTime(after)).toEqual(apartFromLeaseTime(before));
    // The refused write did not renew the lease.
    expect(after?.leaseExpiresInMs).toBeLessThanOrEqual(before?.leaseExpiresInMs ?? Number.NaN);
    expect(await acceptor.store.finishJob(id, fence + 1, { status: 'succeeded', result: '{"ok":1}' }, Date.now())).toBe(true);
    const finished = await acceptor.store.getJob('alice', id);
    expect(finished).toMatchObject({ status: 'succeeded', result: '{"ok":1}' });
    expectNoLease(finished);
  });

  it('takes over at once a job leased before a reboot, whose lease number on the old boot’s clock lies far ahead of this one', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const acceptor = await demoOn(tmp.dbPath, { workerConcurrency: 0 });
    const accepted = await submitReport(acceptor, { title: 'before reboot', rows: 3 }, { 'idempotency-key': 'reboot-1' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    // The worker of the earlier boot: its monotonic clock read a day further than this boot's does now.
    const machine = machineLeaseClock();
    const earlierBoot = await openSqliteEngine(tmp.dbPath, { leaseClock: { epoch: 'boot:earlier', now: () => machine.now() + 86_400_000 } });
    const [held] = await earlierBoot.claimJobs({ owner: 'before-reboot', limit: 1, now: Date.now(), leaseMs: 60_000 });
    await earlierBoot.close();
    expect(held).toMatchObject({ id, fence: 1, attempts: 1 });

    // This boot's store: the lease's number (a day and a minute on the old clock) has not passed on
    // this clock, but it is another clock's, so the lease has expired and the first claim takes the job.
    const afterReboot = await openSqliteEngine(tmp.dbPath);
    cleanups.push(() => void afterReboot.close());
    const [takenOver] = await afterReboot.claimJobs({ owner: 'after-reboot', limit: 1, now: Date.now(), leaseMs: 60_000 });
    expect(takenOver).toMatchObject({ id, fence: 2, attempts: 2, takenOverFrom: 'before-reboot' });
    expect(await afterReboot.getJob('alice', id)).toMatchObject({ status: 'running', leaseOwner: 'after-reboot', fence: 2 });
  });

  it('fails an abandoned job that has no attempts left with job-lease-expired', async () => {
    const { id, rescuer } = await jobHeldByDeadWorker(50, { maxAttempts: 1, rescuer: { workerConcurrency: 1 } });
    if (!rescuer) throw new Error('no rescuer app');
    expect(await rescuer.store.getJob('alice', id)).toMatchObject({ maxAttempts: 1, attempts: 1 });
    rescuer.startBackground();

    const job = (await waitForJob(rescuer, id)) as JobView;
    expect(job.status).toBe('failed');
    expect(job.attempts).toBe(1);
    expect(job.error?.type).toBe('urn:asyncfirst:problem:job-lease-expired');
    expect(job.result).toBeUndefined();
    const stored = await rescuer.store.getJob('alice', id);
    expect(stored).toMatchObject({ status: 'failed', attempts: 1, fence: 1 });
    expectNoLease(stored);
    expect(stored?.result).toBeUndefined();
    expect(stored?.finishedAt).toBeDefined();
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
    const owner = await waitFor('the job to be claimed', async () => (await first.store.getJob('alice', id))?.leaseOwner);
    expect([first.worker?.owner, second.worker?.owner]).toContain(owner);

    const job = (await waitForJob(first, id)) as JobView;
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(1);
    expect(runs).toEqual([{ attempt: 1, aborted: false }]);
    expect(await first.store.getJob('alice', id)).toMatchObject({ status: 'succeeded', attempts: 1, fence: 1 });
  });

  it('takes a renewal that finds its job already ended by its own success (committed, its sync still running) for that, not for a lost lease', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    // Once the handler has returned, every commit's sync takes 250 ms: a renewal (every 200 ms) then
    // runs between the success's COMMIT and its acknowledgement.
    let slowSyncs = false;
    const store = await JobEngine.start(
      new SqliteDriver(tmp.dbPath, { wrapSync: (sync) => (done) => (slowSyncs ? setTimeout(() => sync(done), 250) : sync(done)) }),
    );
    const runs: Array<{ aborted: boolean }> = [];
    const createReport = async (_input: unknown, context: { signal: AbortSignal }) => {
      const run = { aborted: false };
      runs.push(run);
      context.signal.addEventListener('abort', () => {
        run.aborted = true;
        console.log('ABORT', String(context.signal.reason), Date.now());
      });
      await sleep(400);
      slowSyncs = true;
      return { title: 'slow sync', format: 'csv', rowCount: 1, bytes: 1, sha256: 'd'.repeat(64) };
    };
    const app = await customApp({ dbPath: tmp.dbPath, store, createReport, config: { leaseMs: 1000, pollIntervalMs: 20 } });
    apps.push(app);
    app.startBackground();
    const accepted = await submitReport(app, { title: 'slow sync', rows: 1 }, { 'idempotency-key': 'slow-sync' });
    const id = accepted.json<{ job_id: string }>().job_id;
    await waitFor('the worker to let the job go', async () =>
      (await app.store.getJob('alice', id))?.status === 'succeeded' && app.runtime.worker?.activeJobs === 0 ? true : undefined,
    );
    // The renewals asked meanwhile answer a sync later.
    await sleep(700);
    expect(runs).toEqual([{ aborted: false }]);
    expect(await app.store.getJob('alice', id)).toMatchObject({ status: 'succeeded', attempts: 1 });
  });
});
