import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import { submitReport, tempDir } from './helpers.js';
import { customApp, gate, waitFor } from './worker-test-support.js';

describe('a cancel asked from another process before the worker sees it', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('ends the job canceled when its handler then fails, instead of queueing a retry', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const failNow = gate();
    let calls = 0;
    const app: AsyncFirstApp = await customApp({
      dbPath: tmp.dbPath,
      // A long lease: the worker's renewal (which would carry the flag) does not come during the test.
      config: { workerConcurrency: 1, leaseMs: 60_000 },
      createReport: async () => {
        calls++;
        await failNow.promise;
        throw new Error('transient failure');
      },
    });
    cleanups.push(() => app.close());
    app.startBackground();

    const accepted = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'cancel-then-fail' });
    const jobId = accepted.json<{ job_id: string }>().job_id;
    await waitFor('the job to run', async () => ((await app.store.getJob('alice', jobId))?.status === 'running' ? true : undefined));

    // Another process's connection asks for the cancel; this process's worker is not told.
    const other = await openSqliteEngine(tmp.dbPath);
    const outcome = await other.cancelJob('alice', jobId, Date.now());
    await other.close();
    expect(outcome.kind).toBe('signalled');

    failNow.open();
    await waitFor('the job to end canceled', async () => ((await app.store.getJob('alice', jobId))?.status === 'canceled' ? true : undefined));
    const job = await app.store.getJob('alice', jobId);
    expect(job?.status).toBe('canceled');
    expect(job?.attempts).toBe(1);
    expect(job?.error?.type).toBe('urn:asyncfirst:problem:job-canceled');
    // It was not queued again: the handler ran once.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls).toBe(1);
  });
});
