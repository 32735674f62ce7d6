import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import type { JobRecord, Store } from '../src/store/store.js';
import { ALICE, allJobs, readStoreOn, tempDir } from './helpers.js';
import { type DemoProcess, expectNoLease, killDemoProcess, sleep, startDemoProcess } from './worker-test-support.js';

const SUBMISSIONS = 200;
const CLIENT_CONCURRENCY = 20;
const KILL_AFTER_ACKS = 120;
const ROWS = 30_000;

interface Submission {
  key: string;
  body: string;
}

interface JobView {
  status: string;
  attempts: number;
  result?: { rowCount: number; title: string };
}

function post(address: string, submission: Submission): Promise<Response> {
  return fetch(`${address}/reports`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': submission.key, ...ALICE },
    body: submission.body,
  });
}

/** Runs `task` over `items` with at most `limit` in flight; stops taking new items once `stop()` is true. */
async function forEachLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>, stop: () => boolean = () => false): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: limit }, async () => {
    while (next < items.length && !stop()) {
      const item = items[next++] as T;
      await task(item);
    }
  });
  await Promise.all(lanes);
}

/** Polls GET /jobs/{id} for every id until all are finished or the deadline passes; returns the last views. */
async function waitForAll(address: string, ids: string[], timeoutMs: number): Promise<Map<string, JobView>> {
  const views = new Map<string, JobView>();
  const deadline = Date.now() + timeoutMs;
  let pending = [...ids];
  while (pending.length > 0 && Date.now() < deadline) {
    const stillPending: string[] = [];
    await forEachLimited(pending, CLIENT_CONCURRENCY, async (id) => {
      const response = await fetch(`${address}/jobs/${id}`, { headers: ALICE });
      const view = (await response.json()) as JobView;
      views.set(id, view);
      if (!['succeeded', 'failed', 'canceled'].includes(view.status)) stillPending.push(id);
    });
    pending = stillPending;
    if (pending.length > 0) await sleep(100);
  }
  return views;
}

describe('crash recovery', () => {
  const processes: DemoProcess[] = [];
  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const demo of processes.splice(0)) await killDemoProcess(demo);
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(mode: 'serve' | 'worker', env: Record<string, string>) {
    const demo = await startDemoProcess(mode, env);
    processes.push(demo);
    return demo;
  }

  /** A job engine of the test's own on the file the demo processes write: it reads what they committed. */
  async function readerOf(dbPath: string): Promise<Store> {
    const reader = await openSqliteEngine(dbPath);
    cleanups.push(() => reader.close());
    return reader;
  }

  it('keeps every acknowledged job through a SIGKILL mid-load: stored, replayed with the same job_id, and completed after restart', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const env = { DATABASE_URL: tmp.dbPath, WORKER_CONCURRENCY: '2', JOB_LEASE_MS: '500', WORKER_POLL_MS: '50' };
    const first = await start('serve', env);
    const firstAddress = first.address as string;
    const reader = await readerOf(tmp.dbPath);
    const anyRunning = async () => (await reader.listJobs({ statuses: ['running'], limit: 1 })).jobs.length > 0;

    const submissions: Submission[] = Array.from({ length: SUBMISSIONS }, (_, index) => ({
      key: `crash-${index}`,
      body: JSON.stringify({ title: `crash report ${index}`, rows: ROWS }),
    }));
    const acknowledged = new Map<string, { submission: Submission; jobId: string }>();
    let killed = false;
    let connectionErrors = 0;
    await forEachLimited(
      submissions,
      CLIENT_CONCURRENCY,
      async (submission) => {
        try {
          const response = await post(firstAddress, submission);
          const body = (await response.json()) as { job_id?: string };
          if (response.status !== 202) throw new Error(`submission ${submission.key} answered ${response.status}: ${JSON.stringify(body)}`);
          if (killed) return; // answered after the kill was sent: treat as not acknowledged
          expect(response.headers.get('x-job-id')).toBe(body.job_id);
          acknowledged.set(submission.key, { submission, jobId: body.job_id as string });
          // Kill mid-work: enough acknowledged, and the worker's claim of some job committed (so a lease is left behind).
          if (acknowledged.size >= KILL_AFTER_ACKS && !killed && (await anyRunning()) && !killed) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        } catch (error) {
          if (!killed) throw error;
          connectionErrors++;
        }
      },
      () => killed,
    );
    expect(killed).toBe(true);
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(acknowledged.size).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);
    expect(connectionErrors).toBeLessThanOrEqual(CLIENT_CONCURRENCY);

    // Every acknowledged job is in the file the killed process left behind, as it was acknowledged.
    const afterCrash = new Map((await allJobs(reader)).map((job) => [job.id, job]));
    for (const { submission, jobId } of acknowledged.values()) {
      const job = afterCrash.get(jobId);
      expect(job, `acknowledged job ${jobId} (${submission.key}) is missing after the crash`).toBeDefined();
      expect(job).toMatchObject({ principal: 'alice', operation: 'createReport' });
    }
    // The killed process's worker was in the middle of jobs (the queue was far from empty): their leases were left behind.
    const runningAtCrash = [...afterCrash.values()].filter((job) => job.status === 'running').map((job) => job.id);
    const byStatus: Record<string, number> = {};
    for (const job of afterCrash.values()) byStatus[job.status] = (byStatus[job.status] ?? 0) + 1;
    expect(runningAtCrash.length, `jobs by status after the crash: ${JSON.stringify(byStatus)}`).toBeGreaterThan(0);

    const second = await start('serve', { ...env, WORKER_CONCURRENCY: '4' });
    const secondAddress = second.address as string;

    // Replaying each acknowledged key and body finds the same job.
    await forEachLimited([...acknowledged.values()], CLIENT_CONCURRENCY, async ({ submission, jobId }) => {
      const response = await post(secondAddress, submission);
      expect(response.status).toBe(202);
      expect(response.headers.get('idempotent-replayed')).toBe('true');
      expect(response.headers.get('x-job-id')).toBe(jobId);
      expect(((await response.json()) as { job_id: string }).job_id).toBe(jobId);
    });

    const ids = [...acknowledged.values()].map(({ jobId }) => jobId);
    const views = await waitForAll(secondAddress, ids, 60_000);
    const notSucceeded = ids.filter((id) => views.get(id)?.status !== 'succeeded').map((id) => [id, views.get(id)?.status]);
    expect(notSucceeded).toEqual([]);
    for (const { submission, jobId } of acknowledged.values()) {
      expect(views.get(jobId)?.result).toMatchObject({ rowCount: ROWS, title: (JSON.parse(submission.body) as { title: string }).title });
    }

    // Jobs the killed process was running were taken over once its leases expired: a second attempt each.
    const jobs = new Map((await allJobs(reader)).map((job): [string, JobRecord] => [job.id, job]));
    for (const id of runningAtCrash) {
      expect(jobs.get(id)?.status).toBe('succeeded');
      expectNoLease(jobs.get(id));
      expect(jobs.get(id)?.attempts).toBeGreaterThanOrEqual(2);
    }
    // One job per key: the replays created nothing.
    expect(jobs.size).toBe(afterCrash.size);
  });

  it('runs jobs accepted by a server without a worker in a separate worker process on the same file', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const server = await start('serve', { DATABASE_URL: tmp.dbPath, WORKER_CONCURRENCY: '0' });
    const worker = await start('worker', { DATABASE_URL: tmp.dbPath, WORKER_CONCURRENCY: '2', WORKER_POLL_MS: '50' });
    const address = server.address as string;

    const ids: string[] = [];
    for (let index = 0; index < 5; index++) {
      const response = await post(address, { key: `split-${index}`, body: JSON.stringify({ title: `split ${index}`, rows: 100 + index }) });
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as { job_id: string }).job_id);
    }
    const views = await waitForAll(address, ids, 20_000);
    ids.forEach((id, index) => {
      expect(views.get(id)).toMatchObject({ status: 'succeeded', attempts: 1, result: { rowCount: 100 + index, title: `split ${index}` } });
    });
    const stored = await readStoreOn(tmp.dbPath, (store) => allJobs(store));
    expect(stored.map((job) => job.id)).toEqual(ids);
    for (const job of stored) {
      expect(job).toMatchObject({ status: 'succeeded', fence: 1 });
      expectNoLease(job);
    }

    // Both stop cleanly on SIGTERM.
    server.child.kill('SIGTERM');
    worker.child.kill('SIGTERM');
    expect((await server.exited).code, server.stderr()).toBe(0);
    expect((await worker.exited).code, worker.stderr()).toBe(0);
  });
});
