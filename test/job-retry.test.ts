import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { demoOptions } from '../src/demo/service.js';
import { tempDir } from './helpers.js';

const KEYS = 'alice:key-a,bob:key-b,olga:key-o';
const ALICE = { 'x-api-key': 'key-a' };
const BOB = { 'x-api-key': 'key-b' };
const OLGA = { 'x-api-key': 'key-o' };

interface JobView {
  id: string;
  status: string;
  attempts: number;
  error?: unknown;
  result?: unknown;
}

describe('POST /jobs/{id}/retry over a real socket', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(dbPath: string, config: Partial<AsyncFirstConfig> = {}) {
    const app = await createAsyncFirst(
      demoOptions({ apiKeys: KEYS, config: { databaseUrl: dbPath, logLevel: 'silent', port: 0, pollIntervalMs: 50, adminPrincipals: 'olga', ...config } }),
    );
    apps.push(app);
    return { app, address: await app.listen() };
  }

  const retry = (address: string, id: string, headers: Record<string, string>) => fetch(`${address}/jobs/${id}/retry`, { method: 'POST', headers });

  async function expectProblem(response: Response, status: number, slug: string) {
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    const body = (await response.json()) as { type: string; status: number; jobStatus?: string };
    expect(body).toMatchObject({ type: `${PROBLEM_TYPE_BASE}${slug}`, status });
    return body;
  }

  it('queues a canceled job again (202, same id, fresh attempts); refuses it while queued or once succeeded (409); hides it from others (404) but not from operators', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    // No worker here: the jobs stay queued until canceled.
    const acceptor = await listen(tmp.dbPath, { workerConcurrency: 0 });
    const submit = async (headers: Record<string, string>, key: string) => {
      const response = await fetch(`${acceptor.address}/reports`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
        body: JSON.stringify({ title: key, rows: 3 }),
      });
      expect(response.status).toBe(202);
      return ((await response.json()) as { job_id: string }).job_id;
    };
    const mine = await submit(ALICE, 'r1');
    const bobs = await submit(BOB, 'r2');
    await expectProblem(await retry(acceptor.address, mine, ALICE), 409, 'job-not-retryable').then((body) => expect(body.jobStatus).toBe('queued'));
    for (const [id, headers] of [
      [mine, ALICE],
      [bobs, BOB],
    ] as const) {
      expect((await fetch(`${acceptor.address}/jobs/${id}`, { method: 'DELETE', headers })).status).toBe(200);
    }

    await expectProblem(await retry(acceptor.address, mine, BOB), 404, 'job-not-found');
    await expectProblem(await retry(acceptor.address, '01ARZ3NDEKTSV4RRFFQ69G5FAV', ALICE), 404, 'job-not-found');
    await expectProblem(await retry(acceptor.address, 'not-a-job-id', ALICE), 404, 'job-not-found');
    await expectProblem(await retry(acceptor.address, mine, {}), 401, 'unauthorized');
    await expectProblem(await fetch(`${acceptor.address}/jobs/${mine}/retry`, { headers: ALICE }), 405, 'method-not-allowed');
    expect(((await (await fetch(`${acceptor.address}/jobs/${mine}`, { headers: ALICE })).json()) as JobView).status).toBe('canceled');

    const retried = await retry(acceptor.address, mine, ALICE);
    expect(retried.status).toBe(202);
    expect(retried.headers.get('location')).toBe(`/jobs/${mine}`);
    expect(retried.headers.get('retry-after')).toBe('1');
    const body = (await retried.json()) as JobView;
    expect(body).toMatchObject({ id: mine, status: 'queued', attempts: 0 });
    expect(body.error).toBeUndefined();
    // A repeat changes nothing.
    await expectProblem(await retry(acceptor.address, mine, ALICE), 409, 'job-not-retryable');

    // An operator retries another principal's job.
    const byOperator = await retry(acceptor.address, bobs, OLGA);
    expect(byOperator.status).toBe(202);
    expect(((await byOperator.json()) as JobView).status).toBe('queued');
    await acceptor.app.close();

    // A worker on the same file runs both; a wait on the retried job answers when it has succeeded.
    const runner = await listen(tmp.dbPath);
    const waited = await fetch(`${runner.address}/jobs/${mine}`, { headers: { ...ALICE, prefer: 'wait=10' } });
    expect(waited.status).toBe(200);
    const done = (await waited.json()) as JobView;
    expect(done).toMatchObject({ id: mine, status: 'succeeded', attempts: 1, result: { rowCount: 3 } });
    const again = await expectProblem(await retry(runner.address, mine, ALICE), 409, 'job-not-retryable');
    expect(again.jobStatus).toBe('succeeded');

    const events = await fetch(`${runner.address}/jobs/${bobs}/events`, { headers: BOB });
    expect(events.status).toBe(200);
    const stream = await events.text();
    expect([...stream.matchAll(/^event: (.+)$/gm)].map((match) => match[1])).toEqual([
      'job.queued',
      'job.canceled',
      'job.queued',
      'job.running',
      'job.succeeded',
    ]);
  });
});
