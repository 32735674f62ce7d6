import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import type { Store } from '../src/store/store.js';
import { ALICE, countStored, readStoreOn, tempDir } from './helpers.js';
import { type DemoProcess, killDemoProcess, sleep, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * Faults of the store, with the server as a real child process: another process holding the
 * write lock, the database file removed, the disk full, a wall clock that jumps. In each, a 202
 * is sent only for a job that a restart finds, and the server keeps answering.
 */

const UNAVAILABLE = 'urn:asyncfirst:problem:store-unavailable';

async function submit(address: string, key: string, body: unknown = { title: key, rows: 5 }): Promise<Response> {
  return fetch(`${address}/reports`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
    body: JSON.stringify(body),
  });
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await run();
  return { value, ms: performance.now() - start };
}

async function expectUnavailable(response: Response): Promise<void> {
  expect(response.status).toBe(503);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(response.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
  expect(await response.json()).toMatchObject({ type: UNAVAILABLE, status: 503 });
}

describe('store faults', () => {
  const processes: DemoProcess[] = [];
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const demo of processes.splice(0)) await killDemoProcess(demo);
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A job engine of the test's own on the file the server processes write: it reads what they committed. */
  async function readerOf(dbPath: string): Promise<Store> {
    const reader = await openSqliteEngine(dbPath);
    cleanups.push(() => reader.close());
    return reader;
  }

  async function serve(env: Record<string, string>, options: Parameters<typeof startDemoProcess>[2] = {}): Promise<DemoProcess & { address: string }> {
    const demo = await startDemoProcess('serve', env, options);
    processes.push(demo);
    if (!demo.address) throw new Error('the server logged no address');
    return demo as DemoProcess & { address: string };
  }

  it('keeps answering /healthz and GET /jobs/{id} at once while another process holds the write lock; writes wait for it off the event loop', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const { address } = await serve({ DATABASE_URL: tmp.dbPath, WORKER_CONCURRENCY: '0', DB_BUSY_TIMEOUT_MS: '1500' });
    const first = await submit(address, 'before-the-lock');
    expect(first.status).toBe(202);
    const jobId = ((await first.json()) as { job_id: string }).job_id;

    const blocker = new Database(tmp.dbPath);
    cleanups.push(() => blocker.close());
    blocker.exec('BEGIN IMMEDIATE');
    try {
      const refused = timed(() => submit(address, 'during-the-lock'));
      // While the submission waits for the lock, everything that needs no write is served promptly.
      let slowest = 0;
      for (let i = 0; i < 15; i++) {
        const health = await timed(() => fetch(`${address}/healthz`));
        const job = await timed(() => fetch(`${address}/jobs/${jobId}`, { headers: ALICE }));
        expect(health.value.status).toBe(200);
        expect(job.value.status).toBe(200);
        slowest = Math.max(slowest, health.ms, job.ms);
        await sleep(50);
      }
      // better-sqlite3 waits for a lock synchronously: a wait on the event loop would hold these for up to 1.5 s.
      expect(slowest).toBeLessThan(250);
      const { value: answer, ms } = await refused;
      await expectUnavailable(answer);
      expect(ms).toBeGreaterThanOrEqual(1400);

      // A submission that arrives while the lock is held is taken as soon as it is let go.
      const waiting = submit(address, 'released-meanwhile');
      await sleep(300);
      blocker.exec('ROLLBACK');
      expect((await waiting).status).toBe(202);
    } finally {
      if (blocker.inTransaction) blocker.exec('ROLLBACK');
    }
    expect(await readStoreOn(tmp.dbPath, countStored)).toEqual({ jobs: 2, keys: 2 });
  });

  it('answers 503 store-unavailable, fails /readyz and logs at error once the database file is removed; nothing is acknowledged after it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const demo = await serve({ DATABASE_URL: tmp.dbPath, WORKER_CONCURRENCY: '0' });
    const { address } = demo;
    expect((await submit(address, 'before-removal')).status).toBe(202);
    expect((await fetch(`${address}/readyz`)).status).toBe(200);

    for (const suffix of ['', '-wal', '-shm']) rmSync(`${tmp.dbPath}${suffix}`, { force: true });

    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => submit(address, `after-removal-${i}`)));
    for (const answer of answers) await expectUnavailable(answer);
    const ready = await fetch(`${address}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await ready.json()) as { type: string }).type).toBe(UNAVAILABLE);
    // Liveness is not readiness: the process is up.
    expect((await fetch(`${address}/healthz`)).status).toBe(200);
    await waitFor('the error line about the lost file', () =>
      demo
        .logs()
        .some((line) => line.level >= 50 && line.msg === 'the database file is gone: every write now answers 503 until it is restored and the server restarted')
        ? true
        : undefined,
    );
    await waitFor('the warning about the 503s', () =>
      demo.logs().some((line) => line.level === 40 && line.msg === 'answered 503: the job store is unavailable') ? true : undefined,
    );
    await killDemoProcess(processes.pop());

    // A restart on the path finds a new, empty file: none of the refused submissions was kept or bound its key.
    const restarted = await serve({ DATABASE_URL: tmp.dbPath, WORKER_CONCURRENCY: '0' });
    expect(await readStoreOn(tmp.dbPath, countStored)).toEqual({ jobs: 0, keys: 0 });
    const again = await submit(restarted.address, 'after-removal-0');
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
  });

  const mountPoint = join(tempDir().dir, 'small-disk');
  const canMount = (() => {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
    try {
      mkdirSync(mountPoint, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mountPoint], { stdio: 'ignore' });
      execFileSync('umount', [mountPoint], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  if (!canMount) console.log('skipping the disk-full test: mounting a small tmpfs needs root on Linux, and this run cannot');

  it.skipIf(!canMount)(
    'answers 503 (never 500) while the disk is full, fails /readyz, recovers when space is freed, and keeps every acknowledged job',
    async () => {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mountPoint]);
      cleanups.push(() => execFileSync('umount', ['-l', mountPoint]));
      const dbPath = join(mountPoint, 'jobs.db');
      const env = { DATABASE_URL: dbPath, WORKER_CONCURRENCY: '0' };
      const demo = await serve(env);
      const { address } = demo;
      expect((await submit(address, 'roomy')).status).toBe(202);

      // Fill the disk to the last byte.
      const filler = join(mountPoint, 'filler');
      const chunk = Buffer.alloc(64 * 1024, 1);
      let written = 0;
      for (;;) {
        try {
          writeFileSync(filler, chunk, { flag: written === 0 ? 'w' : 'a' });
          written += chunk.length;
        } catch {
          break;
        }
      }
      for (let size = 4096; size >= 1; size = Math.floor(size / 2)) {
        try {
          writeFileSync(filler, Buffer.alloc(size, 1), { flag: 'a' });
        } catch {}
      }

      const acknowledged = new Map<string, string>(); // key → job id
      const statuses = new Set<number>();
      const title = 'x'.repeat(200);
      for (let i = 0; i < 400 && !statuses.has(503); i++) {
        const key = `full-${i}`;
        const answer = await submit(address, key, { title, rows: 5 });
        statuses.add(answer.status);
        if (answer.status === 202) acknowledged.set(key, ((await answer.json()) as { job_id: string }).job_id);
        else await expectUnavailable(answer);
      }
      expect([...statuses].every((status) => status === 202 || status === 503)).toBe(true);
      expect(statuses.has(503)).toBe(true);
      expect((await fetch(`${address}/readyz`)).status).toBe(503);
      // The child's log reaches this process through a pipe: wait for the line rather than race it.
      await waitFor('the error line about writes refused', () =>
        demo.logs().some((line) => line.level >= 50 && line.msg === 'the database refuses writes; answering 503 until it accepts them again')
          ? true
          : undefined,
      );

      // Space is freed: readiness and submissions recover without a restart.
      rmSync(filler);
      // Readiness holds the failure for 5 s, then a probe write clears it.
      await waitFor('/readyz to answer 200 again', async () => ((await fetch(`${address}/readyz`)).status === 200 ? true : undefined), 10_000, 100);
      const after = await submit(address, 'after-space-freed');
      expect(after.status).toBe(202);
      acknowledged.set('after-space-freed', ((await after.json()) as { job_id: string }).job_id);

      // Killed and restarted: every acknowledged job is there, and each key replays its job.
      await killDemoProcess(processes.pop());
      const restarted = await serve(env);
      const reader = await readerOf(dbPath);
      for (const [key, jobId] of acknowledged) {
        expect((await reader.getJob('alice', jobId))?.id).toBe(jobId);
        const replay = await submit(restarted.address, key, key === 'after-space-freed' ? undefined : { title, rows: 5 });
        expect(replay.status).toBe(202);
        expect(replay.headers.get('idempotent-replayed')).toBe('true');
        expect(((await replay.json()) as { job_id: string }).job_id).toBe(jobId);
      }
    },
  );

  it('runs a job once when another worker process has a wall clock 60 s ahead: leases are on the machine monotonic clock', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const runLog = join(tmp.dir, 'runs.log');
    const common = { DATABASE_URL: tmp.dbPath, RUN_LOG: runLog, JOB_LEASE_MS: '1500', WORKER_POLL_MS: '50' };
    const owner = await serve({ ...common, WORKER_CONCURRENCY: '1' }, { script: 'test/fixtures/slow-service.ts' });
    // The job runs for 4 s, more than two leases: its owner renews the lease as it goes.
    const accepted = await submit(owner.address, 'long-job', { title: 'long', rows: 4000 });
    expect(accepted.status).toBe(202);
    const jobId = ((await accepted.json()) as { job_id: string }).job_id;
    const reader = await readerOf(tmp.dbPath);
    const stored = () => reader.getJob('alice', jobId);
    await waitFor('the owner to start the job', async () => ((await stored())?.status === 'running' ? true : undefined));

    const ahead = await startDemoProcess(
      'worker',
      { ...common, WORKER_CONCURRENCY: '4', CLOCK_AHEAD_MS: '60000' },
      { script: 'test/fixtures/slow-service.ts', nodeArgs: ['--import', './test/fixtures/clock-ahead.mjs'] },
    );
    processes.push(ahead);

    await waitFor('the job to finish', async () => ((await stored())?.status === 'succeeded' ? true : undefined), 15_000, 50);
    const runs = readFileSync(runLog, 'utf8').trim().split('\n');
    expect(runs).toEqual([`${jobId} 1 ${owner.child.pid}`]);
    expect(await stored()).toMatchObject({ status: 'succeeded', attempts: 1, fence: 1 });
    expect(ahead.logs().some((line) => line.msg.startsWith('took over a job'))).toBe(false);
  });
});
