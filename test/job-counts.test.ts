import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { demoOptions } from '../src/demo/service.js';
import { tempDir } from './helpers.js';

const KEYS = 'alice:key-a,olga:key-o';
const ALICE = { 'x-api-key': 'key-a' };
const OLGA = { 'x-api-key': 'key-o' };

interface Counts {
  counts: Array<{ operation: string; status: string; count: number }>;
  asOf: string;
}

describe('GET /jobs/counts over a real socket', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(config: Partial<AsyncFirstConfig> = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createAsyncFirst(
      demoOptions({
        apiKeys: KEYS,
        config: { databaseUrl: tmp.dbPath, logLevel: 'silent', port: 0, workerConcurrency: 0, adminPrincipals: 'olga', ...config },
      }),
    );
    apps.push(app);
    return app.listen();
  }

  const submit = async (address: string, key: string) => {
    const response = await fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
      body: JSON.stringify({ title: key, rows: 1 }),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  };

  async function counts(address: string): Promise<Counts> {
    const response = await fetch(`${address}/jobs/counts`, { headers: OLGA });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    return (await response.json()) as Counts;
  }

  it('gives operators the counts by operation and state, read at most once per COUNTS_CACHE_MS', async () => {
    const address = await listen({ countsCacheMs: 1000 });
    expect((await counts(address)).counts).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    const first = await submit(address, 'c1');
    await submit(address, 'c2');
    expect((await fetch(`${address}/jobs/${first}`, { method: 'DELETE', headers: ALICE })).status).toBe(200);
    const read = await counts(address);
    expect(read.counts).toEqual([
      { operation: 'createReport', status: 'canceled', count: 1 },
      { operation: 'createReport', status: 'queued', count: 1 },
    ]);
    expect(Math.abs(Date.parse(read.asOf) - Date.now())).toBeLessThan(5000);

    // Within the cache time, a change is not seen yet and the same reading is served; after it, it is.
    await submit(address, 'c3');
    const cached = await counts(address);
    expect(cached).toEqual(read);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    const fresh = await counts(address);
    expect(fresh.counts).toEqual([
      { operation: 'createReport', status: 'canceled', count: 1 },
      { operation: 'createReport', status: 'queued', count: 2 },
    ]);
    expect(Date.parse(fresh.asOf)).toBeGreaterThan(Date.parse(read.asOf));
  });

  it('answers 403 problem+json to a principal who is not an operator, and 401 without a credential', async () => {
    const address = await listen();
    await submit(address, 'c1');
    const refused = await fetch(`${address}/jobs/counts`, { headers: ALICE });
    expect(refused.status).toBe(403);
    expect(refused.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    expect(((await refused.json()) as { type: string }).type).toBe(`${PROBLEM_TYPE_BASE}forbidden`);
    expect((await fetch(`${address}/jobs/counts`)).status).toBe(401);
    expect((await fetch(`${address}/jobs/counts`, { method: 'DELETE', headers: OLGA })).status).toBe(405);
  });
});
