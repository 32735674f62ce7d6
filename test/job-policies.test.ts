import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, type AsyncFirstOptions, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import type { AnyHandler } from '../src/handlers.js';
import { DATABASES, taskContract } from './policy-support.js';
import { waitFor } from './worker-test-support.js';

/*
 * The policies of x-asyncfirst at work, over real HTTP on both drivers: a timeout aborts the
 * attempt's signal and fails it as job-timeout (then retried, then failed), the contract's backoff
 * sets the retry delays, and options in code override the contract field by field.
 */

type Handlers = Record<string, AnyHandler>;

interface Attempt {
  name: string;
  attempt: number;
  startedAt: number;
  /** When its signal fired, and why. */
  abortedAt?: number;
  reason?: { name: string; message: string };
}

interface JobView {
  id: string;
  status: string;
  attempts: number;
  maxAttempts: number;
  error?: { type: string; title: string; status: number; detail: string; attempt: number };
  result?: unknown;
}

describe.each(DATABASES)('operation policies on $name', (database) => {
  const apps: AsyncFirstApp[] = [];
  const drops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const drop of drops.splice(0)) await drop();
  });

  /*
   * runTask: a name starting "hang" never settles and never reads its signal; "wait" waits for
   * its signal and rejects with its reason; "fail-once" fails its first attempt; others succeed.
   */
  const attempts: Attempt[] = [];
  const runTask: AnyHandler = async (input, context) => {
    const { name } = (input as { body: { name: string } }).body;
    const attempt = context.job?.attempt ?? 0;
    const record: Attempt = { name, attempt, startedAt: Date.now() };
    attempts.push(record);
    if (name.startsWith('hang')) return new Promise(() => {});
    if (name.startsWith('wait')) {
      const { signal } = context;
      return new Promise((_, reject) =>
        signal.addEventListener(
          'abort',
          () => {
            record.abortedAt = Date.now();
            record.reason = { name: (signal.reason as Error).name, message: (signal.reason as Error).message };
            reject(signal.reason);
          },
          { once: true },
        ),
      );
    }
    if (name.startsWith('fail-once') && attempt === 1) throw new Error('first attempt fails');
    return { name, attempt };
  };

  async function serve(policy: unknown, operations?: AsyncFirstOptions<Handlers>['operations'], config: Partial<AsyncFirstConfig> = {}) {
    attempts.length = 0;
    const made = database.make();
    drops.push(made.drop);
    const app = await createAsyncFirst<Handlers>({
      contract: taskContract(policy),
      handlers: { runTask, previewTask: () => ({}) },
      ...(operations ? { operations } : {}),
      // Retries left to the defaults would wait 5 to 10 s: a test that passes saw the policy's delays.
      config: { ...made.config, logLevel: 'silent', port: 0, pollIntervalMs: 50, retryBaseMs: 10_000, retryMaxMs: 10_000, ...config },
    });
    apps.push(app);
    return app.listen();
  }

  async function submit(address: string, name: string): Promise<string> {
    const response = await fetch(`${address}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': name },
      body: JSON.stringify({ name }),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  }

  async function finished(address: string, id: string, timeoutMs = 10_000): Promise<JobView> {
    return waitFor(
      `job ${id} to finish`,
      async () => {
        const job = (await (await fetch(`${address}/jobs/${id}`)).json()) as JobView;
        return ['succeeded', 'failed', 'canceled'].includes(job.status) ? job : undefined;
      },
      timeoutMs,
      20,
    );
  }

  it('aborts an attempt at its timeout with a TimeoutError reason, fails it as job-timeout, retries it, then fails the job', async () => {
    const address = await serve({ timeout: 0.3, maxAttempts: 2, backoff: { base: 0.05, max: 0.05 } });
    const id = await submit(address, 'wait-1');
    const job = await finished(address, id);
    expect(job).toMatchObject({ status: 'failed', attempts: 2, maxAttempts: 2 });
    expect(job.error).toMatchObject({ type: `${PROBLEM_TYPE_BASE}job-timeout`, title: 'The job ran past its timeout', status: 500, attempt: 2 });
    expect(job.error?.detail).toContain('timeout of 0.3 s');
    expect(attempts.map((attempt) => attempt.attempt)).toEqual([1, 2]);
    for (const attempt of attempts) {
      expect(attempt.reason).toEqual({ name: 'TimeoutError', message: 'the attempt ran past its timeout of 0.3 s (x-asyncfirst timeout)' });
      const ranMs = (attempt.abortedAt as number) - attempt.startedAt;
      expect(ranMs).toBeGreaterThanOrEqual(290);
      expect(ranMs).toBeLessThan(2000);
    }
  });

  it('ends an attempt at its timeout even when the handler never settles nor reads its signal', async () => {
    const address = await serve({ timeout: 0.2, maxAttempts: 2, backoff: { base: 0.05, max: 0.05 } });
    const id = await submit(address, 'hang-1');
    const job = await finished(address, id);
    expect(job).toMatchObject({ status: 'failed', attempts: 2, error: { type: `${PROBLEM_TYPE_BASE}job-timeout`, attempt: 2 } });
    expect(attempts.map((attempt) => attempt.attempt)).toEqual([1, 2]);
    const gap = (attempts[1]?.startedAt ?? 0) - (attempts[0]?.startedAt ?? 0);
    // 200 ms of attempt, then a retry delay of 25 to 50 ms.
    expect(gap).toBeGreaterThanOrEqual(215);
    expect(gap).toBeLessThan(2000);
  });

  it("waits the contract's backoff between attempts, not RETRY_BASE_MS", async () => {
    const address = await serve({ maxAttempts: 3, backoff: { base: 0.2, max: 0.2 } });
    const id = await submit(address, 'fail-once-1');
    const job = await finished(address, id);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2, result: { name: 'fail-once-1', attempt: 2 } });
    const gap = (attempts[1]?.startedAt ?? 0) - (attempts[0]?.startedAt ?? 0);
    // Equal jitter: between half the ceiling (100 ms) and the ceiling (200 ms), plus a claim.
    expect(gap).toBeGreaterThanOrEqual(95);
    expect(gap).toBeLessThan(1500);
  });

  it('takes options in code over the contract, field by field', async () => {
    // The contract alone would fail the job after one 100-second attempt; code gives it 3 attempts of 0.2 s, 0.1 s apart at most.
    const address = await serve(
      { maxAttempts: 1, timeout: 100, backoff: { base: 30, max: 60 } },
      { runTask: { maxAttempts: 3, timeout: 0.2, backoff: { base: 0.1 } } },
    );
    const id = await submit(address, 'hang-2');
    const job = await finished(address, id);
    expect(job).toMatchObject({ status: 'failed', attempts: 3, maxAttempts: 3, error: { type: `${PROBLEM_TYPE_BASE}job-timeout`, attempt: 3 } });
    expect(job.error?.detail).toContain('timeout of 0.2 s');
    const starts = attempts.map((attempt) => attempt.startedAt);
    for (let i = 1; i < starts.length; i++) expect((starts[i] ?? 0) - (starts[i - 1] ?? 0)).toBeLessThan(1500);
  });
});
