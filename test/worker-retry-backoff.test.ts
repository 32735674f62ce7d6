import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { type AnyHandler, PermanentJobError } from '../src/handlers.js';
import { retryDelayMs } from '../src/worker/backoff.js';
import { ALICE, submitReport, tempDir, waitForJob } from './helpers.js';
import { customApp, expectNoLease, waitFor } from './worker-test-support.js';

const HANDLER_FAILED = 'urn:asyncfirst:problem:job-handler-failed';

interface JobView {
  status: string;
  attempts: number;
  maxAttempts: number;
  nextAttemptAt?: string;
  updatedAt: string;
  error?: { type: string; title: string; status: number; detail?: string; attempt?: number };
  result?: unknown;
}

describe('worker retries with backoff', () => {
  let app: AsyncFirstApp | undefined;
  let cleanup: (() => void) | undefined;
  afterEach(async () => {
    await app?.close();
    cleanup?.();
    app = undefined;
    cleanup = undefined;
  });

  async function start(createReport: AnyHandler, config: Partial<AsyncFirstConfig> = {}, maxAttempts?: number) {
    const tmp = tempDir();
    cleanup = tmp.cleanup;
    app = await customApp({
      dbPath: tmp.dbPath,
      createReport,
      config,
      ...(maxAttempts === undefined ? {} : { createReportOptions: { maxAttempts } }),
    });
    app.startBackground();
    return { app, dbPath: tmp.dbPath };
  }

  async function getJob(running: AsyncFirstApp, id: string): Promise<JobView> {
    const response = await running.server.inject({ method: 'GET', url: `/jobs/${id}`, headers: ALICE });
    expect(response.statusCode).toBe(200);
    return response.json<JobView>();
  }

  it('retries a handler that throws twice and ends succeeded on attempt 3, showing queued + last error + a future nextAttemptAt in between', async () => {
    const attempts: number[] = [];
    const { app: running } = await start(
      async (_input, context) => {
        const attempt = context.job?.attempt ?? 0;
        attempts.push(attempt);
        if (attempt < 3) throw new Error(`transient failure ${attempt}`);
        return { title: 'retried', format: 'csv', rowCount: 1, bytes: 1, sha256: 'a'.repeat(64) };
      },
      // Retry delays of at least 200 ms (attempt 1) and 400 ms (attempt 2): long enough to see the job waiting.
      { retryBaseMs: 400, retryMaxMs: 5000 },
    );

    const accepted = await submitReport(running, { title: 'retry', rows: 1 }, { 'idempotency-key': 'retry-twice' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;

    for (const failedAttempt of [1, 2]) {
      const { view, askedAt } = await waitFor(`job back in the queue after attempt ${failedAttempt}`, async () => {
        const askedAt = Date.now();
        const view = await getJob(running, id);
        return view.status === 'queued' && view.attempts === failedAttempt ? { view, askedAt } : undefined;
      });
      expect(view.error).toEqual({
        type: HANDLER_FAILED,
        title: 'The job handler failed',
        status: 500,
        detail: `transient failure ${failedAttempt}`,
        attempt: failedAttempt,
      });
      expect(view.nextAttemptAt).toBeDefined();
      const nextAttemptAt = Date.parse(view.nextAttemptAt ?? '');
      expect(nextAttemptAt).toBeGreaterThan(askedAt);
      expect(nextAttemptAt).toBeGreaterThan(Date.parse(view.updatedAt));
      const stored = await running.store.getJob('alice', id);
      expect(stored).toMatchObject({ status: 'queued', attempts: failedAttempt });
      expectNoLease(stored);
      expect(stored?.result).toBeUndefined();
      expect(stored?.runAt).toBe(nextAttemptAt);
    }

    const done = (await waitForJob(running, id)) as JobView;
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(3);
    expect(done.error).toBeUndefined();
    expect(done.nextAttemptAt).toBeUndefined();
    expect(done.result).toEqual({ title: 'retried', format: 'csv', rowCount: 1, bytes: 1, sha256: 'a'.repeat(64) });
    expect(attempts).toEqual([1, 2, 3]);
    const stored = await running.store.getJob('alice', id);
    expect(stored).toMatchObject({ status: 'succeeded', attempts: 3 });
    expect(stored?.error).toBeUndefined();
    expectNoLease(stored);
    expect(JSON.parse(stored?.result ?? 'null')).toEqual(done.result);
  });

  it('fails a handler that always throws after the per-operation maxAttempts, with job-handler-failed details and no stack trace', async () => {
    let calls = 0;
    const { app: running } = await start(
      async () => {
        calls++;
        throw new Error('the report source is unreachable');
      },
      { maxAttempts: 7 },
      3,
    );

    const accepted = await submitReport(running, { title: 'doomed', rows: 1 }, { 'idempotency-key': 'always-throws' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;

    const done = (await waitForJob(running, id)) as JobView;
    expect(done.status).toBe('failed');
    expect(done.attempts).toBe(3);
    expect(done.maxAttempts).toBe(3);
    expect(done.error).toEqual({
      type: HANDLER_FAILED,
      title: 'The job handler failed',
      status: 500,
      detail: 'the report source is unreachable',
      attempt: 3,
    });
    expect(calls).toBe(3);

    const response = await running.server.inject({ method: 'GET', url: `/jobs/${id}`, headers: ALICE });
    expect(response.body).not.toMatch(/stack|\n\s+at |worker-retry-backoff|\.ts:\d+/);
    const stored = await running.store.getJob('alice', id);
    expect(stored).toMatchObject({ status: 'failed', attempts: 3, maxAttempts: 3 });
    expect(stored?.result).toBeUndefined();
    expectNoLease(stored);
    expect(stored?.finishedAt).toBeDefined();
    expect(JSON.stringify(stored?.error)).not.toMatch(/stack|\n\s+at |\.ts:\d+/);
    expect(stored?.error).toEqual(done.error);
  });

  it('fails a job at once, on attempt 1, when its handler throws PermanentJobError', async () => {
    let calls = 0;
    const { app: running } = await start(async () => {
      calls++;
      throw new PermanentJobError('the title names a report that does not exist');
    });

    const accepted = await submitReport(running, { title: 'missing', rows: 1 }, { 'idempotency-key': 'permanent' });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;

    const done = (await waitForJob(running, id)) as JobView;
    expect(done.status).toBe('failed');
    expect(done.attempts).toBe(1);
    expect(done.maxAttempts).toBe(5);
    expect(done.error).toMatchObject({ type: HANDLER_FAILED, detail: 'the title names a report that does not exist', attempt: 1 });
    expect(calls).toBe(1);
    const stored = await running.store.getJob('alice', id);
    expect(stored).toMatchObject({ status: 'failed', attempts: 1 });
    expectNoLease(stored);
  });
});

describe('retryDelayMs', () => {
  const lowest = () => 0;
  const highest = () => 1;

  it('doubles the ceiling with each attempt, starting from the base', () => {
    expect([1, 2, 3, 4, 5].map((attempt) => retryDelayMs(attempt, 1000, 1_000_000, highest))).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect([1, 2, 3, 4, 5].map((attempt) => retryDelayMs(attempt, 1000, 1_000_000, lowest))).toEqual([500, 1000, 2000, 4000, 8000]);
  });

  it('treats attempt 0 like attempt 1', () => {
    expect(retryDelayMs(0, 1000, 1_000_000, highest)).toBe(1000);
  });

  it('caps the ceiling at maxMs', () => {
    expect(retryDelayMs(10, 1000, 60_000, highest)).toBe(60_000);
    expect(retryDelayMs(10, 1000, 60_000, lowest)).toBe(30_000);
    expect(retryDelayMs(60, 1000, 300_000, highest)).toBe(300_000);
    expect(retryDelayMs(2000, 1000, 300_000, highest)).toBe(300_000);
  });

  it('keeps the jittered delay within [ceiling/2, ceiling] for any random value', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (attempt, baseMs, maxMs, random) => {
          const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
          const delay = retryDelayMs(attempt, baseMs, maxMs, () => random);
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
          expect(delay).toBeLessThanOrEqual(ceiling);
        },
      ),
    );
  });

  it('spreads delays across the jitter range with the default Math.random', () => {
    const delays = Array.from({ length: 500 }, () => retryDelayMs(3, 1000, 1_000_000));
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(2000);
      expect(delay).toBeLessThanOrEqual(4000);
    }
    expect(new Set(delays).size).toBeGreaterThan(100);
  });
});
