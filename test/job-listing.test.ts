import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { demoOptions } from '../src/demo/service.js';
import type { IsOperator } from '../src/http/job-routes.js';
import { tempDir } from './helpers.js';

const KEYS = 'alice:key-a,bob:key-b,olga:key-o';
const ALICE = { 'x-api-key': 'key-a' };
const BOB = { 'x-api-key': 'key-b' };
const OLGA = { 'x-api-key': 'key-o' };

interface Page {
  jobs: Array<{ id: string; operation: string; status: string; principal?: string }>;
  nextCursor?: string;
}

describe('GET /jobs over a real socket', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  /** A server with no worker, so jobs stay queued until a test cancels them. */
  async function listen(config: Partial<AsyncFirstConfig> = {}, operators?: IsOperator) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createAsyncFirst({
      ...demoOptions({ apiKeys: KEYS, config: { databaseUrl: tmp.dbPath, logLevel: 'silent', port: 0, workerConcurrency: 0, ...config } }),
      ...(operators ? { operators } : {}),
    });
    apps.push(app);
    return app.listen();
  }

  async function submit(address: string, headers: Record<string, string>, key: string): Promise<string> {
    const response = await fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
      body: JSON.stringify({ title: key, rows: 1 }),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  }

  async function list(address: string, headers: Record<string, string>, query = ''): Promise<Page> {
    const response = await fetch(`${address}/jobs${query}`, { headers });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    return (await response.json()) as Page;
  }

  it("lists the caller's jobs newest first, filtered by state, operation and creation time, and pages with the cursor", async () => {
    const address = await listen();
    const a1 = await submit(address, ALICE, 'a1');
    const b1 = await submit(address, BOB, 'b1');
    const a2 = await submit(address, ALICE, 'a2');
    await new Promise((resolve) => setTimeout(resolve, 5));
    const between = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const a3 = await submit(address, ALICE, 'a3');
    expect((await fetch(`${address}/jobs/${a2}`, { method: 'DELETE', headers: ALICE })).status).toBe(200);

    const all = await list(address, ALICE);
    expect(all.jobs.map((job) => job.id)).toEqual([a3, a2, a1]);
    expect(all.nextCursor).toBeUndefined();
    expect(all.jobs[1]).toMatchObject({ id: a2, operation: 'createReport', status: 'canceled' });
    expect((await list(address, BOB)).jobs.map((job) => job.id)).toEqual([b1]);

    expect((await list(address, ALICE, '?status=canceled')).jobs.map((job) => job.id)).toEqual([a2]);
    expect((await list(address, ALICE, '?status=queued')).jobs.map((job) => job.id)).toEqual([a3, a1]);
    expect((await list(address, ALICE, '?status=queued&status=canceled')).jobs.map((job) => job.id)).toEqual([a3, a2, a1]);
    expect((await list(address, ALICE, '?status=failed')).jobs).toEqual([]);
    expect((await list(address, ALICE, '?operation=createReport&status=queued')).jobs.map((job) => job.id)).toEqual([a3, a1]);
    expect((await list(address, ALICE, '?operation=estimateReport')).jobs).toEqual([]);
    expect((await list(address, ALICE, `?createdAfter=${encodeURIComponent(between)}`)).jobs.map((job) => job.id)).toEqual([a3]);
    expect((await list(address, ALICE, `?createdBefore=${encodeURIComponent(between)}`)).jobs.map((job) => job.id)).toEqual([a2, a1]);

    const first = await list(address, ALICE, '?limit=2');
    expect(first.jobs.map((job) => job.id)).toEqual([a3, a2]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await list(address, ALICE, `?limit=2&cursor=${encodeURIComponent(first.nextCursor as string)}`);
    expect(second.jobs.map((job) => job.id)).toEqual([a1]);
    expect(second.nextCursor).toBeUndefined();
  });

  it("shows operators every principal's jobs: those named in ADMIN_PRINCIPALS and those the operators function chooses", async () => {
    const named = await listen({ adminPrincipals: ' olga , nobody' });
    const a1 = await submit(named, ALICE, 'a1');
    const b1 = await submit(named, BOB, 'b1');
    expect((await list(named, OLGA)).jobs.map((job) => [job.id, job.principal])).toEqual([
      [b1, 'bob'],
      [a1, 'alice'],
    ]);
    expect((await list(named, ALICE)).jobs[0]?.principal).toBeUndefined();
    expect((await list(named, OLGA, '?status=queued&limit=1')).jobs.map((job) => job.id)).toEqual([b1]);
    expect((await list(named, ALICE)).jobs.map((job) => job.id)).toEqual([a1]);

    const asked: string[] = [];
    const chosen = await listen({}, (principal) => {
      asked.push(principal);
      return principal === 'bob';
    });
    const a2 = await submit(chosen, ALICE, 'a2');
    const b2 = await submit(chosen, BOB, 'b2');
    expect((await list(chosen, BOB)).jobs.map((job) => job.id)).toEqual([b2, a2]);
    expect((await list(chosen, OLGA)).jobs).toEqual([]);
    expect(asked).toEqual(['bob', 'olga']);
  });

  it("lets operators read, wait for, stream and cancel another principal's job; others still get 404", async () => {
    const address = await listen({ adminPrincipals: 'olga' });
    const job = await submit(address, ALICE, 'a1');
    const read = await fetch(`${address}/jobs/${job}`, { headers: OLGA });
    expect(read.status).toBe(200);
    expect(((await read.json()) as { id: string; status: string }).status).toBe('queued');
    expect((await fetch(`${address}/jobs/${job}`, { headers: BOB })).status).toBe(404);
    expect((await fetch(`${address}/jobs/${job}`, { method: 'DELETE', headers: BOB })).status).toBe(404);
    expect((await fetch(`${address}/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV`, { headers: OLGA })).status).toBe(404);
    const waiting = (await fetch(`${address}/jobs/${job}/result`, { headers: OLGA })).status;
    expect(waiting).toBe(202);

    const canceled = await fetch(`${address}/jobs/${job}`, { method: 'DELETE', headers: OLGA });
    expect(canceled.status).toBe(200);
    expect(((await canceled.json()) as { status: string }).status).toBe('canceled');
    const stream = await fetch(`${address}/jobs/${job}/events`, { headers: OLGA });
    expect(stream.status).toBe(200);
    expect([...(await stream.text()).matchAll(/^event: (.+)$/gm)].map((match) => match[1])).toEqual(['job.queued', 'job.canceled']);
    expect((await fetch(`${address}/jobs/${job}/result`, { headers: OLGA })).status).toBe(409);
    expect(((await (await fetch(`${address}/jobs/${job}`, { headers: ALICE })).json()) as { status: string }).status).toBe('canceled');
  });

  it('answers a bad filter, limit or cursor with 400 problem+json naming it', async () => {
    const address = await listen();
    await submit(address, ALICE, 'a1');
    const cases: Array<[string, string, string]> = [
      ['?status=lost', 'validation-failed', '/status/0'],
      ['?status=queued&status=lost', 'validation-failed', '/status/1'],
      ['?createdAfter=yesterday', 'validation-failed', '/createdAfter'],
      ['?createdBefore=2026-13-01T00:00:00Z', 'validation-failed', '/createdBefore'],
      ['?limit=0', 'validation-failed', '/limit'],
      ['?limit=201', 'validation-failed', '/limit'],
      ['?limit=ten', 'validation-failed', '/limit'],
      ['?operation=', 'validation-failed', '/operation'],
      ['?cursor=not-a-cursor', 'cursor-invalid', ''],
    ];
    for (const [query, type, pointer] of cases) {
      const response = await fetch(`${address}/jobs${query}`, { headers: ALICE });
      expect(response.status, query).toBe(400);
      expect(response.headers.get('content-type'), query).toBe('application/problem+json; charset=utf-8');
      const body = (await response.json()) as { type: string; status: number; errors?: Array<{ in: string; pointer: string }> };
      expect(body.type, query).toBe(`${PROBLEM_TYPE_BASE}${type}`);
      expect(body.status).toBe(400);
      if (pointer) expect(body.errors?.[0], query).toMatchObject({ in: 'query', pointer });
    }
    const anonymous = await fetch(`${address}/jobs`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
  });
});
