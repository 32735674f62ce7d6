import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { buildReport } from '../src/demo/report.js';
import { createDemo } from '../src/demo/service.js';
import { API_KEYS, allJobs, tempDir } from './helpers.js';

const ALICE_KEY = { 'x-api-key': 'key-a' };

describe('the demo over a real TCP socket', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(dbPath: string, config: Partial<AsyncFirstConfig> = {}) {
    const app = await createDemo({
      apiKeys: API_KEYS,
      config: { databaseUrl: dbPath, logLevel: 'silent', port: 0, host: '127.0.0.1', pollIntervalMs: 50, ...config },
    });
    apps.push(app);
    const address = await app.listen();
    expect(address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    return { app, address };
  }

  const submit = (address: string, key: string, body: unknown) =>
    fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE_KEY },
      body: JSON.stringify(body),
    });

  async function pollUntilFinished(address: string, id: string, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const response = await fetch(`${address}/jobs/${id}`, { headers: ALICE_KEY });
      expect(response.status).toBe(200);
      const job = (await response.json()) as { status: string; result?: unknown };
      if (['succeeded', 'failed', 'canceled'].includes(job.status)) return { response, job };
      if (Date.now() > deadline) throw new Error(`job ${id} still ${job.status} after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  it('accepts, replays, refuses a changed body with 422, and runs the job to the deterministic report', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const { app, address } = await listen(tmp.dbPath);
    const input = { title: 'Socket report', rows: 12_345, format: 'json' as const };

    const accepted = await submit(address, 'socket-1', input);
    expect(accepted.status).toBe(202);
    const acceptedBody = (await accepted.json()) as { status: string; job_id: string; location: string };
    expect(acceptedBody.status).toBe('accepted');
    expect(acceptedBody.location).toBe(`/jobs/${acceptedBody.job_id}`);
    expect(accepted.headers.get('location')).toBe(acceptedBody.location);
    expect(accepted.headers.get('x-job-id')).toBe(acceptedBody.job_id);
    expect(accepted.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(accepted.headers.get('idempotent-replayed')).toBeNull();

    const replay = await submit(address, 'socket-1', { format: 'json', rows: 12_345, title: 'Socket report' });
    expect(replay.status).toBe(202);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(((await replay.json()) as { job_id: string }).job_id).toBe(acceptedBody.job_id);

    const changed = await submit(address, 'socket-1', { ...input, rows: 12_346 });
    expect(changed.status).toBe(422);
    expect(changed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await changed.json()) as { type: string }).type).toBe(`${PROBLEM_TYPE_BASE}idempotency-key-reused`);

    const { response, job } = await pollUntilFinished(address, acceptedBody.job_id);
    expect(job.status).toBe('succeeded');
    expect(response.headers.get('retry-after')).toBeNull();
    const result = job.result as { title: string; format: string; rowCount: number; bytes: number; sha256: string };
    expect(result.rowCount).toBe(input.rows);
    expect(result.bytes).toBeGreaterThan(0);
    expect(result.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(result).toEqual(await buildReport(input, new AbortController().signal));

    const jobs = await allJobs(app.store);
    expect(jobs.map(({ id, status, attempts }) => ({ id, status, attempts }))).toEqual([{ id: acceptedBody.job_id, status: 'succeeded', attempts: 1 }]);
    expect(await app.store.countIdempotencyRecords()).toBe(1);
    expect((await app.store.getIdempotencyRecord('alice', 'createReport', 'socket-1'))?.jobId).toBe(acceptedBody.job_id);
  });

  it('shows Retry-After on GET /jobs/{id} while the job is unfinished and none once it has finished', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const input = { title: 'Later', rows: 50 };

    // A process without a worker: the job stays queued, deterministically.
    const acceptor = await listen(tmp.dbPath, { workerConcurrency: 0 });
    const accepted = await submit(acceptor.address, 'socket-later', input);
    expect(accepted.status).toBe(202);
    const { job_id } = (await accepted.json()) as { job_id: string };
    const queued = await fetch(`${acceptor.address}/jobs/${job_id}`, { headers: ALICE_KEY });
    expect(queued.status).toBe(200);
    expect(((await queued.json()) as { status: string }).status).toBe('queued');
    expect(queued.headers.get('retry-after')).toBe('1');
    await acceptor.app.close();

    // A process with a worker on the same file runs it.
    const runner = await listen(tmp.dbPath);
    const { response, job } = await pollUntilFinished(runner.address, job_id);
    expect(job.status).toBe('succeeded');
    expect(response.headers.get('retry-after')).toBeNull();
    expect(job.result).toEqual(await buildReport(input, new AbortController().signal));
  });
});
