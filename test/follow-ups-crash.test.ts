import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { reportHandlers } from '../src/demo/service.js';
import type { AnyHandler } from '../src/handlers.js';
import { processDatabases } from './driver-support.js';
import { ALICE } from './helpers.js';
import { customApp, type DemoProcess, killDemoProcess, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * A follow-up is stored with its parent's success, so a parent whose first attempt did its work,
 * asked for its follow-up and was then killed (SIGKILL, before its success was stored) leaves no
 * child; the retry that succeeds in another process stores exactly one, which runs once.
 */

const SCRIPT = 'test/fixtures/follow-up-crash-service.ts';

interface Ran {
  ran: 'createReport' | 'indexReport';
  job: string;
  attempt?: number;
  parent?: string;
  pid: number;
}

const DATABASES = processDatabases('af_followup_crash');

describe.each(DATABASES)('follow-ups of a parent killed mid-attempt, on $name', (database) => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('stores the child once, from the retry that succeeded in another process, and runs it once', async () => {
    const db = database.make();
    cleanups.push(db.drop);
    const runLog = join(db.dir, 'runs.jsonl');
    const ran = (): Ran[] => {
      let text = '';
      try {
        text = readFileSync(runLog, 'utf8');
      } catch {}
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Ran);
    };
    // The API in this process, with no worker; the attempts run in worker processes.
    const app = await customApp({ dbPath: '', createReport: reportHandlers.createReport as AnyHandler, config: { ...db.config, workerConcurrency: 0 } });
    cleanups.push(() => app.close());
    const env = { ...db.env, RUN_LOG: runLog, WORKER_POLL_MS: '50', JOB_LEASE_MS: '1500' };

    const first = await startDemoProcess('worker', env, { script: SCRIPT });
    cleanups.push(() => killDemoProcess(first));
    const accepted = await app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { ...ALICE, 'content-type': 'application/json', 'idempotency-key': 'crash-parent' },
      payload: { title: 'crash', rows: 1 },
    });
    expect(accepted.statusCode).toBe(202);
    const parentId = (accepted.json() as { job_id: string }).job_id;

    // The first attempt has done its work and asked for its follow-up: kill its process there.
    await waitFor('the first attempt to do its work', () => (ran().some((run) => run.ran === 'createReport' && run.attempt === 1) ? true : undefined));
    first.child.kill('SIGKILL');
    await first.exited;
    const afterKill = await app.store.getJob('alice', parentId);
    expect(afterKill?.status).toBe('running');
    expect(afterKill?.children ?? []).toEqual([]);

    // Another process takes the job over once its lease has lapsed; its attempt succeeds.
    const second: DemoProcess = await startDemoProcess('worker', env, { script: SCRIPT });
    cleanups.push(() => killDemoProcess(second));
    await waitFor('the child to run', () => (ran().some((run) => run.ran === 'indexReport') ? true : undefined), 20_000, 50);
    // Time for a second child to show up, if one were wrongly stored.
    await new Promise((resolve) => setTimeout(resolve, 500));

    const parent = await app.store.getJob('alice', parentId);
    expect(parent?.status).toBe('succeeded');
    expect(parent?.attempts).toBe(2);
    expect(parent?.children).toHaveLength(1);
    const childId = parent?.children?.[0] as string;
    const child = await app.store.getJob('alice', childId);
    expect(child).toMatchObject({ operation: 'indexReport', parentId, status: 'succeeded', attempts: 1 });
    const indexRuns = ran().filter((run) => run.ran === 'indexReport');
    expect(indexRuns).toEqual([expect.objectContaining({ job: childId, parent: parentId, pid: second.child.pid })]);
    const indexJobs = (await app.store.countJobs()).filter((row) => row.operation === 'indexReport');
    expect(indexJobs).toEqual([expect.objectContaining({ status: 'succeeded', count: 1 })]);
  }, 60_000);
});
