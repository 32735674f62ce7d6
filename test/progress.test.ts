import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import type { AnyHandler, HandlerContext } from '../src/handlers.js';
import type { JobRecord, Store } from '../src/store/store.js';
import { ALICE, readStoreOn, tempDir } from './helpers.js';
import { customApp, expectNoLease, fetchJob, gate, storeWithLeaseClockAhead, waitFor } from './worker-test-support.js';

/*
 * context.progress(percent, message): stored on the running job, shown by GET /jobs/{id}, logged
 * as a job.progress event; clamped to 0..100; never written once the worker no longer holds the job.
 */

const REPORT = { title: 'progress', format: 'csv', rowCount: 3, bytes: 30, sha256: 'c'.repeat(64) };

interface JobView {
  id: string;
  status: string;
  progress?: { percent: number; message?: string };
}

interface EventRow {
  id: number;
  type: string;
  data: string;
}

/** One of alice's jobs as stored, its events (oldest first) and its stored progress, read in one go. */
async function readProgressState(store: Store, jobId: string): Promise<{ job: JobRecord | undefined; events: EventRow[]; progress: unknown }> {
  const stored = await store.getJobEvents('alice', jobId, 0);
  return { job: stored?.job, events: stored?.events ?? [], progress: stored?.job.progress ?? null };
}

const progressOfEvent = (row: EventRow) => (JSON.parse(row.data) as JobView).progress;

describe('context.progress() on a running job', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  const releases: Array<() => void> = [];
  afterEach(async () => {
    for (const release of releases.splice(0)) release();
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(createReport: AnyHandler, config: Partial<AsyncFirstConfig> = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await customApp({ dbPath: tmp.dbPath, createReport, config: { port: 0, host: '127.0.0.1', ...config } });
    apps.push(app);
    const address = await app.listen();
    return { app, address, dbPath: tmp.dbPath };
  }

  function held() {
    const entry = gate();
    releases.push(entry.open);
    return entry;
  }

  async function accept(address: string, key: string) {
    const response = await fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
      body: JSON.stringify({ title: key, rows: 3 }),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  }

  const getJob = (address: string, id: string) => fetchJob<JobView>(address, id);

  it('shows {percent: 40, message: "step 2"} in GET /jobs/{id} while running, and stores a job.progress event', async () => {
    const finish = held();
    const reported = gate();
    const { app, address } = await listen(async (_input, context) => {
      await context.progress(40, 'step 2');
      reported.open();
      await finish.promise;
      return REPORT;
    });
    const id = await accept(address, 'progress-40');
    await reported.promise;

    const job = await getJob(address, id);
    expect(job.status).toBe('running');
    expect(job.progress).toEqual({ percent: 40, message: 'step 2' });

    const { events, progress } = await readProgressState(app.store, id);
    expect(progress).toEqual({ percent: 40, message: 'step 2' });
    expect(events.map((row) => row.type)).toEqual(['job.running', 'job.progress']);
    const logged = JSON.parse((events[1] as EventRow).data) as JobView;
    expect(logged).toMatchObject({ id, status: 'running', progress: { percent: 40, message: 'step 2' } });

    finish.open();
    const done = await waitFor('the job to succeed', async () => {
      const view = await getJob(address, id);
      return view.status === 'succeeded' ? view : undefined;
    });
    expect(done.status).toBe('succeeded');
    expect((await readProgressState(app.store, id)).events.map((row) => row.type)).toEqual(['job.running', 'job.progress', 'job.succeeded']);
  });

  it('clamps percent to 0..100 and rejects a percent that is not a number without writing it', async () => {
    const finish = held();
    const reported = gate();
    const rejections: unknown[] = [];
    const { app, address } = await listen(async (_input, context) => {
      await context.progress(-5, 'below');
      await context.progress(150, 'above');
      await context.progress(Number.NaN, 'not a number').catch((error: unknown) => rejections.push(error));
      reported.open();
      await finish.promise;
      return REPORT;
    });
    const id = await accept(address, 'progress-clamp');
    await reported.promise;

    expect(rejections).toHaveLength(1);
    expect(rejections[0]).toBeInstanceOf(TypeError);
    const { events, progress } = await readProgressState(app.store, id);
    expect(events.filter((row) => row.type === 'job.progress').map(progressOfEvent)).toEqual([
      { percent: 0, message: 'below' },
      { percent: 100, message: 'above' },
    ]);
    expect(progress).toEqual({ percent: 100, message: 'above' });
    expect((await getJob(address, id)).progress).toEqual({ percent: 100, message: 'above' });
  });

  it('does not write progress after another claim took the job over (stale fence)', async () => {
    const proceed = held();
    const reported = gate();
    const afterTakeover: Array<Promise<unknown>> = [];
    const { app, address, dbPath } = await listen(async (_input, context) => {
      await context.progress(10, 'before');
      reported.open();
      await proceed.promise;
      afterTakeover.push(context.progress(50, 'with a stale fence').then(() => 'resolved'));
      await afterTakeover[0];
      return REPORT;
    });
    const id = await accept(address, 'progress-stale');
    await reported.promise;

    // A second claimant takes the job over as if the lease had expired (the worker has not noticed yet).
    const thief = await storeWithLeaseClockAhead(dbPath, 120_000);
    const [taken] = await thief.claimJobs({ owner: 'thief', limit: 1, now: Date.now(), leaseMs: 60_000 });
    await thief.close();
    expect(taken).toMatchObject({ id, fence: 2 });
    const before = await readProgressState(app.store, id);
    expect(before.events.map((row) => row.type)).toEqual(['job.running', 'job.progress', 'job.running']);

    proceed.open();
    await waitFor('the handler to report again', () => (afterTakeover.length > 0 ? true : undefined));
    expect(await afterTakeover[0]).toBe('resolved');
    // Let the handler's outcome reach the store as well.
    await waitFor('the worker to let go of the job', () => (app.worker?.activeJobs === 0 ? true : undefined));

    const after = await readProgressState(app.store, id);
    expect(after.events).toEqual(before.events);
    expect(after.progress).toEqual({ percent: 10, message: 'before' });
    expect(after.job).toMatchObject({ status: 'running', leaseOwner: 'thief', fence: 2 });
    const job = await getJob(address, id);
    expect(job.progress).toEqual({ percent: 10, message: 'before' });
  });

  it('does not write progress once the worker has seen its lease lost and aborted the handler', async () => {
    const reported = gate();
    let aborted: (reason: unknown) => void = () => {};
    const abortSeen = new Promise<unknown>((resolve) => {
      aborted = resolve;
    });
    const late: Array<Promise<unknown>> = [];
    const report = (context: HandlerContext, message: string) => {
      late.push(context.progress(60, message).then(() => 'resolved'));
    };
    const { app, address, dbPath } = await listen(
      async (_input, context) => {
        await context.progress(10, 'before');
        reported.open();
        await new Promise<void>((resolve) => {
          context.signal.addEventListener(
            'abort',
            () => {
              report(context, 'in the abort listener');
              aborted(context.signal.reason);
              resolve();
            },
            { once: true },
          );
        });
        report(context, 'after the abort');
        await Promise.all(late);
        return REPORT;
      },
      { leaseMs: 300 },
    );
    const id = await accept(address, 'progress-lost');
    await reported.promise;

    const thief = await storeWithLeaseClockAhead(dbPath, 120_000);
    await thief.claimJobs({ owner: 'thief', limit: 1, now: Date.now(), leaseMs: 60_000 });
    await thief.close();
    const before = await readProgressState(app.store, id);
    expect(before.events.map((row) => row.type)).toEqual(['job.running', 'job.progress', 'job.running']);

    // The worker's next lease renewal finds the lease gone and aborts the handler.
    const reason = await abortSeen;
    expect(String(reason)).toMatch(/lease/);
    await waitFor('the worker to let go of the job', () => (app.worker?.activeJobs === 0 ? true : undefined));
    expect(await Promise.all(late)).toEqual(['resolved', 'resolved']);

    const after = await readProgressState(app.store, id);
    expect(after.events).toEqual(before.events);
    expect(after.progress).toEqual({ percent: 10, message: 'before' });
    expect(after.job).toMatchObject({ status: 'running', leaseOwner: 'thief' });
  });

  it('does not write progress after shutdown released the job back to the queue', async () => {
    const reported = gate();
    const late: Array<Promise<unknown>> = [];
    const never = gate();
    const { app, address, dbPath } = await listen(
      async (_input, context) => {
        await context.progress(10, 'before');
        context.signal.addEventListener(
          'abort',
          () => {
            // Reported while the release is being written: must not land in the same commit.
            late.push(context.progress(99, 'after release').then(() => 'resolved'));
          },
          { once: true },
        );
        reported.open();
        // Ignores the abort: keeps running past the grace period.
        await never.promise;
        return REPORT;
      },
      { shutdownGraceMs: 100 },
    );
    releases.push(never.open);
    const id = await accept(address, 'progress-released');
    await reported.promise;

    await app.close();
    expect(late).toHaveLength(1);
    expect(await late[0]).toBe('resolved');

    // The app has closed: read the file as another process would.
    const { job, events, progress } = await readStoreOn(dbPath, (store) => readProgressState(store, id));
    expect(events.map((row) => row.type)).toEqual(['job.running', 'job.progress', 'job.queued']);
    expect(progress).toEqual({ percent: 10, message: 'before' });
    expect(job).toMatchObject({ status: 'queued', attempts: 0 });
    expectNoLease(job);
  });
});
