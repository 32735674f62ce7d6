import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { operations } from '../generated/api.js';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import { readContractFile } from '../src/contract/load.js';
import { buildReport } from '../src/demo/report.js';
import { demoSecurity, parseApiKeys, reportHandlers } from '../src/demo/service.js';
import type { Handlers } from '../src/handlers.js';
import type { Store } from '../src/store/store.js';
import { API_KEYS, allJobs, countStored, startDemo, submitReport, tempDir, waitForJob } from './helpers.js';

const IDEMPOTENCY_RETENTION_MS = 10_000;
const JOB_RETENTION_MS = 2_000;

interface JobRow {
  id: string;
  status: string;
  finished_at: number | null;
}
interface KeyRow {
  key: string;
  job_id: string;
  expires_at: number;
}

/** The keys the tests submit (alice's, for createReport). */
const KEYS = ['k', 'key-a-done', 'key-b-held'];

/**
 * What the store holds: every job, oldest first, and the idempotency records of KEYS, by key;
 * fails if it holds any other record.
 */
async function readRows(store: Store): Promise<{ jobs: JobRow[]; keys: KeyRow[] }> {
  const keys: KeyRow[] = [];
  for (const key of KEYS) {
    const record = await store.getIdempotencyRecord('alice', 'createReport', key);
    if (record) keys.push({ key: record.key, job_id: record.jobId, expires_at: record.expiresAt });
  }
  expect(await store.countIdempotencyRecords(), 'idempotency records of keys other than KEYS').toBe(keys.length);
  const jobs = (await allJobs(store)).map((job) => ({ id: job.id, status: job.status, finished_at: job.finishedAt ?? null }));
  return { jobs, keys };
}

async function until<T>(read: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('the retention sweeper', () => {
  let app: AsyncFirstApp | undefined;
  let release: () => void = () => {};
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(async () => {
    release();
    await app?.close();
    tmp.cleanup();
  });

  it('deletes finished jobs past jobRetentionMs and expired keys, keeps unfinished jobs and live keys, and frees the key for a new job', async () => {
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handlers: Handlers<operations> = {
      // "hold" stays running until the test releases it: an unfinished job, deterministically.
      createReport: async (input, context) => {
        if (input.body.title === 'hold') await held;
        return reportHandlers.createReport(input, context);
      },
      estimateReport: reportHandlers.estimateReport,
      indexReport: reportHandlers.indexReport,
    };
    app = await createAsyncFirst({
      contract: await readContractFile(new URL('../openapi.yaml', import.meta.url).pathname),
      handlers,
      security: demoSecurity(parseApiKeys(API_KEYS)),
      config: {
        databaseUrl: tmp.dbPath,
        logLevel: 'silent',
        pollIntervalMs: 20,
        sweepIntervalMs: 3_600_000,
        idempotencyRetentionMs: IDEMPOTENCY_RETENTION_MS,
        jobRetentionMs: JOB_RETENTION_MS,
      },
    });
    app.startBackground();
    const running = app;

    // Job A finishes; job B (submitted later, so its key expires later) stays running.
    const acceptedA = await submitReport(running, { title: 'done', rows: 3 }, { 'idempotency-key': 'key-a-done' });
    expect(acceptedA.statusCode).toBe(202);
    const jobA: string = acceptedA.json().job_id;
    expect((await waitForJob(running, jobA)).status).toBe('succeeded');
    const keyAExpiresAt = (await readRows(running.store)).keys[0]?.expires_at ?? Number.POSITIVE_INFINITY;
    await until(() => (Date.now() + IDEMPOTENCY_RETENTION_MS > keyAExpiresAt ? true : undefined), 'the clock to move past key A');
    const acceptedB = await submitReport(running, { title: 'hold', rows: 3 }, { 'idempotency-key': 'key-b-held' });
    expect(acceptedB.statusCode).toBe(202);
    const jobB: string = acceptedB.json().job_id;
    await until(async () => ((await readRows(running.store)).jobs.find((job) => job.id === jobB)?.status === 'running' ? true : undefined), 'job B to run');

    const before = await readRows(running.store);
    const finishedA = before.jobs.find((job) => job.id === jobA)?.finished_at;
    const keyA = before.keys.find((key) => key.key === 'key-a-done');
    const keyB = before.keys.find((key) => key.key === 'key-b-held');
    expect(finishedA).toBeTypeOf('number');
    expect(keyA?.job_id).toBe(jobA);
    expect(keyB?.job_id).toBe(jobB);
    expect(keyB!.expires_at).toBeGreaterThan(keyA!.expires_at);
    // The retentions are chosen so that job A's retention ends well before key A expires.
    expect(finishedA! + JOB_RETENTION_MS).toBeLessThan(keyA!.expires_at);

    // 1 ms before job A's retention ends: nothing is deleted.
    expect(await running.sweeper.sweepNow(finishedA! + JOB_RETENTION_MS - 1)).toEqual({ keys: 0, jobs: 0 });
    expect(await readRows(running.store)).toEqual(before);

    // Job A's retention is over; its key is not yet expired and stays; running job B stays.
    expect(await running.sweeper.sweepNow(finishedA! + JOB_RETENTION_MS)).toEqual({ keys: 0, jobs: 1 });
    let rows = await readRows(running.store);
    expect(rows.jobs.map((job) => job.id)).toEqual([jobB]);
    expect(rows.keys.map((key) => key.key)).toEqual(['key-a-done', 'key-b-held']);

    // The moment key A expires (and key B, made later, does not): key A goes, key B and job B stay.
    expect(await running.sweeper.sweepNow(keyA!.expires_at)).toEqual({ keys: 1, jobs: 0 });
    rows = await readRows(running.store);
    expect(rows.keys).toEqual([keyB]);
    expect(rows.jobs).toEqual([{ id: jobB, status: 'running', finished_at: null }]);

    // An unfinished job is never swept, however old.
    expect(await running.sweeper.sweepNow(keyB!.expires_at + 365 * 24 * 3_600_000)).toEqual({ keys: 1, jobs: 0 });
    rows = await readRows(running.store);
    expect(rows.keys).toEqual([]);
    expect(rows.jobs.map((job) => [job.id, job.status])).toEqual([[jobB, 'running']]);

    // The swept key is free: the same key and body make a new job, not a replay.
    const again = await submitReport(running, { title: 'done', rows: 3 }, { 'idempotency-key': 'key-a-done' });
    expect(again.statusCode).toBe(202);
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    const jobA2: string = again.json().job_id;
    expect(jobA2).not.toBe(jobA);
    const jobA2View = await waitForJob(running, jobA2);
    expect(jobA2View.status).toBe('succeeded');
    expect(jobA2View.result).toEqual(await buildReport({ title: 'done', rows: 3 }, new AbortController().signal));
    rows = await readRows(running.store);
    expect(rows.keys.map((key) => [key.key, key.job_id])).toEqual([['key-a-done', jobA2]]);

    // A replay now answers the new job.
    const replay = await submitReport(running, { title: 'done', rows: 3 }, { 'idempotency-key': 'key-a-done' });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json().job_id).toBe(jobA2);
  });

  it('frees a key whose job was swept even before the key itself expires', async () => {
    app = await createAsyncFirst({
      contract: await readContractFile(new URL('../openapi.yaml', import.meta.url).pathname),
      handlers: reportHandlers,
      security: demoSecurity(parseApiKeys(API_KEYS)),
      config: {
        databaseUrl: tmp.dbPath,
        logLevel: 'silent',
        pollIntervalMs: 20,
        sweepIntervalMs: 3_600_000,
        idempotencyRetentionMs: IDEMPOTENCY_RETENTION_MS,
        jobRetentionMs: JOB_RETENTION_MS,
      },
    });
    app.startBackground();
    const running = app;
    const first = await submitReport(running, { title: 'short-lived', rows: 2 }, { 'idempotency-key': 'k' });
    const firstId: string = first.json().job_id;
    expect((await waitForJob(running, firstId)).status).toBe('succeeded');
    const finishedAt = (await readRows(running.store)).jobs[0]?.finished_at;
    expect(finishedAt).toBeTypeOf('number');

    expect(await running.sweeper.sweepNow(finishedAt! + JOB_RETENTION_MS)).toEqual({ keys: 0, jobs: 1 });
    expect((await readRows(running.store)).keys).toHaveLength(1);

    const second = await submitReport(running, { title: 'short-lived', rows: 2 }, { 'idempotency-key': 'k' });
    expect(second.statusCode).toBe(202);
    expect(second.headers['idempotent-replayed']).toBeUndefined();
    expect(second.json().job_id).not.toBe(firstId);
    expect((await readRows(running.store)).keys.map((key) => key.job_id)).toEqual([second.json().job_id]);
  });
});

describe('a large sweep', () => {
  it('deletes thousands of finished jobs in batches with the event loop free between them', async () => {
    const demo = await startDemo({ workerConcurrency: 0, sweepIntervalMs: 3_600_000 });
    try {
      const total = 3000;
      // Jobs that finished long ago (at time 1), put there through the store; their keys stay live.
      const store = demo.app.store;
      const now = Date.now();
      const accepted = await Promise.all(
        Array.from({ length: total }, (_, i) =>
          store.acceptJob({
            principal: 'alice',
            operation: 'createReport',
            key: `old-${i}`,
            fingerprint: `old-${i}`,
            input: '{}',
            maxAttempts: 5,
            now,
            keyExpiresAt: now + 3_600_000,
          }),
        ),
      );
      expect(accepted.every((outcome) => outcome.kind === 'created')).toBe(true);
      const claimed = await store.claimJobs({ owner: 'old', limit: total, now, leaseMs: 60_000 });
      expect(claimed).toHaveLength(total);
      const finished = await Promise.all(claimed.map((job) => store.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, 1)));
      expect(finished.every(Boolean)).toBe(true);
      expect(await countStored(store)).toEqual({ jobs: total, keys: total });

      // Count the event-loop turns that run while the sweep is under way.
      let turns = 0;
      let sweeping = true;
      const spin = () => {
        if (!sweeping) return;
        turns++;
        setImmediate(spin);
      };
      setImmediate(spin);
      const deleted = await demo.app.sweeper.sweepNow(Date.now());
      sweeping = false;

      expect(deleted).toEqual({ keys: 0, jobs: total });
      expect(await countStored(store)).toEqual({ jobs: 0, keys: total });
      // 500 jobs a batch: at least one turn between each two of the 6 batches.
      expect(turns).toBeGreaterThanOrEqual(total / 500 - 1);
    } finally {
      await demo.close();
    }
  });
});
