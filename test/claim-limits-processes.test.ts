import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp, OperationOptions } from '../src/app.js';
import { reportHandlers } from '../src/demo/service.js';
import type { AnyHandler } from '../src/handlers.js';
import { processDatabases } from './driver-support.js';
import { customApp, type DemoProcess, killDemoProcess, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * createReport's concurrency and rate limit across two real worker processes on one database
 * (one SQLite file, or one PostgreSQL schema), each able to run more than the limit allows. The
 * handlers write their own start and end times to a log of the test's own, and the limits are
 * checked on those times, not on what the store says.
 */

const SCRIPT = 'test/fixtures/limited-service.ts';

interface Run {
  job: string;
  attempt: number;
  pid: number;
  start: number;
  end: number;
  failed: boolean;
}

const DATABASES = processDatabases('af_limits');

/** The most handlers running at once, from their own start and end times (an end and a start at one instant do not overlap). */
function mostAtOnce(runs: Run[]): number {
  const edges = runs.flatMap((run) => [
    { at: run.start, delta: 1 },
    { at: run.end, delta: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let most = 0;
  for (const edge of edges) {
    now += edge.delta;
    most = Math.max(most, now);
  }
  return most;
}

describe.each(DATABASES)('limits across two worker processes on $name', (database) => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** An API app in this process (no worker) and two worker processes, all with `policy` for createReport. */
  async function cluster(policy: OperationOptions): Promise<{ app: AsyncFirstApp; runs: () => Run[] }> {
    const db = database.make();
    cleanups.push(db.drop);
    const runLog = join(db.dir, 'runs.jsonl');
    const app = await customApp({
      dbPath: '',
      createReport: reportHandlers.createReport as AnyHandler,
      createReportOptions: policy,
      config: { ...db.config, workerConcurrency: 0 },
    });
    cleanups.push(() => app.close());
    const env = {
      ...db.env,
      RUN_LOG: runLog,
      CREATE_REPORT_POLICY: JSON.stringify(policy),
      WORKER_CONCURRENCY: '4',
      WORKER_POLL_MS: '50',
      RETRY_BASE_MS: '50',
      RETRY_MAX_MS: '100',
    };
    const workers: DemoProcess[] = [];
    for (let i = 0; i < 2; i++) {
      const worker = await startDemoProcess('worker', env, { script: SCRIPT });
      workers.push(worker);
      cleanups.push(() => killDemoProcess(worker));
    }
    const runs = () => {
      let text = '';
      try {
        text = readFileSync(runLog, 'utf8');
      } catch {}
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Run);
    };
    return { app, runs };
  }

  async function allSucceeded(app: AsyncFirstApp, count: number, timeoutMs: number): Promise<void> {
    await waitFor(
      `${count} jobs to succeed`,
      async () =>
        (await app.store.countJobs()).find((row) => row.operation === 'createReport' && row.status === 'succeeded')?.count === count ? true : undefined,
      timeoutMs,
      50,
    );
  }

  it('never runs more than concurrency: 2 handlers at once, through retries, though each process may run 4', async () => {
    const { app, runs } = await cluster({ concurrency: 2 });
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        app.enqueue('createReport', { body: { title: i % 7 === 0 ? `fail-once-${i}` : `slow-${i}`, rows: 200 } }, { key: `job-${i}` }),
      ),
    );
    await allSucceeded(app, 20, 60_000);
    const log = runs();
    // 20 jobs, of which 3 (0, 7, 14) failed once and ran again.
    expect(log).toHaveLength(23);
    expect(log.filter((run) => run.failed)).toHaveLength(3);
    expect(new Set(log.map((run) => run.job)).size).toBe(20);
    expect(mostAtOnce(log)).toBe(2);
  }, 90_000);

  it('starts at most rateLimit.max: 3 handlers in any per: 1 second across both processes', async () => {
    const { app, runs } = await cluster({ rateLimit: { max: 3, per: 1 } });
    await Promise.all(Array.from({ length: 9 }, (_, i) => app.enqueue('createReport', { body: { title: `paced-${i}`, rows: 20 } }, { key: `paced-${i}` })));
    await allSucceeded(app, 9, 60_000);
    const starts = runs()
      .map((run) => run.start)
      .sort((a, b) => a - b);
    expect(starts).toHaveLength(9);
    // The window is kept on the claim's clock; a handler starts a few milliseconds after its claim,
    // so its own start time may be off by that much (100 ms allowed).
    for (let i = 0; i + 3 < starts.length; i++) expect(starts[i + 3]! - starts[i]!).toBeGreaterThanOrEqual(900);
    expect(starts[8]! - starts[0]!).toBeGreaterThanOrEqual(1900);
  }, 90_000);
});
