import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeTime } from 'ulid';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE, PROBLEMS } from '../src/core/problems.js';
import { createDemo, reportHandlers } from '../src/demo/service.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import type { JobQuery, JobRecord, Store } from '../src/store/store.js';

export const ALICE = { 'x-api-key': 'key-a' };
export const BOB = { 'x-api-key': 'key-b' };
export const API_KEYS = 'alice:key-a,bob:key-b';

/** A small deterministic generator (mulberry32): numbers in [0, 1) that a seed reproduces. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

/** How many jobs and idempotency records the store holds. */
export async function countStored(store: Store): Promise<{ jobs: number; keys: number }> {
  const counts = await store.countJobs();
  return { jobs: counts.reduce((sum, count) => sum + count.count, 0), keys: await store.countIdempotencyRecords() };
}

/** Every job the store holds that matches `query`, oldest (first accepted) first: listJobs paged with its cursor. */
export async function allJobs(store: Store, query: Omit<JobQuery, 'cursor' | 'limit'> = {}): Promise<JobRecord[]> {
  const jobs: JobRecord[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.listJobs({ ...query, limit: 200, ...(cursor === undefined ? {} : { cursor }) });
    jobs.push(...page.jobs);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return jobs.reverse();
}

/** A job of any principal by its id, as an operator finds it: among the jobs created in the id's millisecond (a ULID's time). */
export async function findJob(store: Store, id: string): Promise<JobRecord | undefined> {
  const createdAt = decodeTime(id);
  return (await allJobs(store, { createdAfter: createdAt - 1, createdBefore: createdAt + 1 })).find((job) => job.id === id);
}

/**
 * Runs `read` on a job engine of its own on the database file, and closes it: a second process's
 * view (what was committed), for a file whose app has closed or that another process writes.
 */
export async function readStoreOn<T>(dbPath: string, read: (store: Store) => Promise<T>): Promise<T> {
  const store = await openSqliteEngine(dbPath);
  try {
    return await read(store);
  } finally {
    await store.close();
  }
}

/**
 * The demo contract on a temporary file, where any credential starting "fuzz-" (X-API-Key or Bearer) is
 * its own principal: a fuzz run that makes up a new credential gets an idempotency namespace of its own.
 */
export async function startFuzzDemo(config: Partial<AsyncFirstConfig> = {}) {
  const tmp = tempDir();
  const principal = (credential: string) => (credential.startsWith('fuzz-') ? credential : undefined);
  const app = await createAsyncFirst({
    contract: new URL('../openapi.yaml', import.meta.url).pathname,
    handlers: reportHandlers,
    security: { ApiKeyAuth: principal, BearerAuth: principal },
    config: { databaseUrl: tmp.dbPath, logLevel: 'silent', workerConcurrency: 0, ...config },
  });
  return {
    app,
    dbPath: tmp.dbPath,
    async close() {
      await app.close();
      tmp.cleanup();
    },
  };
}

const PROBLEM_ENTRIES = new Map<string, { title: string; status: number }>(Object.values(PROBLEMS).map((entry) => [entry.slug, entry]));

/**
 * Why an answer is not a 4xx problem as the README describes it (application/problem+json, a type from
 * the catalogue in src/http/problems.ts with its title, a status member equal to the HTTP status, a
 * string detail), or undefined when it is one.
 */
export function problemFault(status: number, contentType: string | undefined, text: string): string | undefined {
  if (status < 400 || status > 499) return `status ${status} is not a 4xx`;
  if (!/^application\/problem\+json(;|$)/i.test(contentType ?? '')) return `Content-Type is ${contentType ?? 'absent'}, not application/problem+json`;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return 'the body is not JSON';
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'the body is not a JSON object';
  const { type, title, status: member, detail } = body as Record<string, unknown>;
  if (typeof type !== 'string' || !type.startsWith(PROBLEM_TYPE_BASE)) return `type ${JSON.stringify(type)} does not start with ${PROBLEM_TYPE_BASE}`;
  if (member !== status) return `the status member ${JSON.stringify(member)} is not the HTTP status ${status}`;
  if (typeof detail !== 'string') return 'detail is not a string';
  const entry = PROBLEM_ENTRIES.get(type.slice(PROBLEM_TYPE_BASE.length));
  if (!entry) return `type ${type} is not in the problem catalogue`;
  if (title !== entry.title) return `title ${JSON.stringify(title)} is not the catalogue's ${JSON.stringify(entry.title)}`;
  // bad-request is the one entry whose status "may be another 4xx" (README).
  if (entry.status !== status && type !== `${PROBLEM_TYPE_BASE}bad-request`) return `${type} is a ${entry.status} in the catalogue, not a ${status}`;
  return undefined;
}

/**
 * Bytes (or text) as one readable line for failure messages: JSON-escaped when valid UTF-8, with \xNN
 * for the bytes of anything else; long runs are folded ("«[×3000»") and the middle of long text is cut.
 */
export function showBytes(bytes: Buffer | string, limit = 600): string {
  let shown: string;
  if (typeof bytes === 'string') shown = JSON.stringify(bytes);
  else {
    try {
      shown = JSON.stringify(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
    } catch {
      const escapes: Record<number, string> = { 9: '\\t', 10: '\\n', 13: '\\r', 34: '\\"', 92: '\\\\' };
      const byteText = (byte: number) =>
        escapes[byte] ?? (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`);
      shown = `"${[...bytes].map(byteText).join('')}"`;
    }
  }
  shown = shown.replace(/(.{1,8}?)\1{9,}/gs, (run: string, unit: string) => `«${unit}×${run.length / unit.length}»`);
  if (shown.length <= limit) return shown;
  const half = Math.floor(limit / 2);
  return `${shown.slice(0, half)}…(${shown.length - 2 * half} more characters)…${shown.slice(-half)}`;
}
