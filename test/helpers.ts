import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { createDemo } from '../src/demo/service.js';

export const ALICE = { 'x-api-key': 'key-a' };
export const BOB = { 'x-api-key': 'key-b' };
export const API_KEYS = 'alice:key-a,bob:key-b';

/** A fresh folder for one test's database file; removed by the returned cleanup. */
export function tempDir(): { dir: string; dbPath: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'asyncfirst-test-'));
  return { dir, dbPath: join(dir, 'jobs.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The demo service on a temporary SQLite file, not listening (use app.server.inject). */
export async function startDemo(config: Partial<AsyncFirstConfig> = {}, extra: Parameters<typeof createDemo>[0] = {}) {
  const tmp = tempDir();
  const app = await createDemo({
    apiKeys: API_KEYS,
    ...extra,
    config: { databaseUrl: tmp.dbPath, logLevel: 'silent', pollIntervalMs: 50, retryBaseMs: 20, retryMaxMs: 200, ...config },
  });
  app.startBackground();
  return {
    app,
    dbPath: tmp.dbPath,
    async close() {
      await app.close();
      tmp.cleanup();
    },
  };
}

/** POST /reports through inject. */
export function submitReport(app: AsyncFirstApp, body: unknown, headers: Record<string, string> = {}) {
  return app.server.inject({
    method: 'POST',
    url: '/reports',
    headers: { 'content-type': 'application/json', ...ALICE, ...headers },
    payload: JSON.stringify(body),
  });
}

/** Polls GET /jobs/{id} until the job is finished or the deadline passes. */
export async function waitForJob(app: AsyncFirstApp, id: string, headers: Record<string, string> = ALICE, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await app.server.inject({ method: 'GET', url: `/jobs/${id}`, headers });
    const job = response.json();
    if (['succeeded', 'failed', 'canceled'].includes(job.status) || Date.now() > deadline) return job;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** How many jobs and idempotency records the database file holds (read through its own connection). */
export function countRows(dbPath: string): { jobs: number; keys: number } {
  const db = new Database(dbPath, { readonly: true });
  try {
    const count = (table: string) => db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM ${table}`).get()?.n ?? -1;
    return { jobs: count('jobs'), keys: count('idempotency_keys') };
  } finally {
    db.close();
  }
}
