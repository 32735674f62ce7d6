// Drain: N createReport jobs already stored, asyncfirst's embedded worker; one process.
// --handler=noop|report|sleep5 (lib/shared.ts DrainHandler); --concurrency=default leaves WORKER_CONCURRENCY at its default.
// Prints {"system":"asyncfirst", "jobs", "drained", "seconds", "jobsPerSec", "fillJobsPerSec", ...}.
// --database=postgres: the same on PostgreSQL, in a schema of its own (dropped at the end), with
// DATABASE_POOL_MAX=--pool connections (default 10); the result also says what the drain cost the
// database: the queries sent, by statement, and the CPU time of the backends serving them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { operations } from '../../generated/api.js';
import { createAsyncFirst } from '../../src/app.js';
import { DEFAULT_CONFIG } from '../../src/config.js';
import { demoSecurity, parseApiKeys, reportHandlers } from '../../src/demo/service.js';
import { JobEngine } from '../../src/engine/job-engine.js';
import { driverFor, openSqliteEngine } from '../../src/engine/open-engine.js';
import type { Handlers } from '../../src/handlers.js';
import { fingerprintRequest } from '../../src/idempotency/fingerprint.js';
import { announceDrain, announceError, argNumber, argValue, cpuProfiler, exitWithParent } from '../lib/child-side.js';
import { asyncfirstChannel, benchSchemaName, countQueries, type DatabaseWindow, dropSchema, namedConnectionUrl, startDatabaseWindow } from '../lib/postgres.js';
import { BENCH_API_KEYS, BENCH_PRINCIPAL, CONTRACT_PATH, type DrainHandler, drainBody, noopReport, PG_URL, sleepingReport } from '../lib/shared.js';

exitWithParent();
const jobs = argNumber('jobs', 1000);
const defaultConcurrency = argValue('concurrency', '8') === 'default';
const concurrency = defaultConcurrency ? DEFAULT_CONFIG.workerConcurrency : argNumber('concurrency', 8);
const handlerKind = argValue('handler', 'noop') as DrainHandler;
const body = drainBody(handlerKind);
const timeoutMs = argNumber('timeout', 120) * 1000;
const onPostgres = argValue('database', 'sqlite') === 'postgres';
const poolMax = argNumber('pool', 10);
const dir = mkdtempSync(join(argValue('dir', tmpdir()), 'asyncfirst-bench-drain-'));
const dbPath = join(dir, 'drain.db');
const schema = onPostgres ? benchSchemaName('drain') : undefined;
const queries = schema ? countQueries(schema) : undefined;
// The app's database settings: an SQLite file, or PostgreSQL in this run's schema.
const database = schema ? { databaseUrl: namedConnectionUrl(schema), databaseSchema: schema, databasePoolMax: poolMax } : { databaseUrl: dbPath };
// --profile=<file>: a CPU profile of the drain alone (not the fill), written to that file.
const profileFile = argValue('profile', '');
const profiler = cpuProfiler();

/** Succeeded jobs, read on a connection (or file handle) of the benchmark's own. */
async function succeededCounter(): Promise<{ count(): Promise<number>; close(): Promise<void> }> {
  if (schema) {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    return {
      count: async () => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".jobs WHERE status = 'succeeded'`)).rows[0]?.n ?? 0),
      close: () => client.end(),
    };
  }
  const reader = new Database(dbPath, { readonly: true });
  const succeeded = reader.prepare<[], { n: number }>(`SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'`);
  return {
    count: async () => succeeded.get()?.n ?? 0,
    close: async () => {
      reader.close();
    },
  };
}

try {
  // Fill through a store of its own: an app's store wakes the app's worker on every commit.
  const fillStore = schema
    ? await JobEngine.start(
        driverFor({ ...database, databaseSchema: schema, databasePoolMax: poolMax, busyTimeoutMs: 5000, databaseStatementTimeoutMs: 60_000 }),
      )
    : await openSqliteEngine(dbPath);
  const { fingerprint, canonicalInput } = fingerprintRequest('createReport', { params: {}, query: {}, body });
  const fillStart = performance.now();
  const batch = 1000;
  for (let first = 0; first < jobs; first += batch) {
    const now = Date.now();
    const writes: Promise<unknown>[] = [];
    for (let i = first; i < Math.min(jobs, first + batch); i++) {
      writes.push(
        fillStore.acceptJob({
          principal: BENCH_PRINCIPAL,
          operation: 'createReport',
          key: `drain-${i}`,
          fingerprint,
          input: canonicalInput,
          maxAttempts: 5,
          now,
          keyExpiresAt: now + 86_400_000,
        }),
      );
    }
    await Promise.all(writes); // SQLite: one group commit per batch; PostgreSQL: one statement each, on the pool
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;
  await fillStore.close();

  let ran = 0;
  let allRan: () => void = () => {};
  const everyHandlerRan = new Promise<void>((resolve) => {
    allRan = resolve;
  });
  const counted = () => {
    if (++ran === jobs) allRan();
  };
  const handlers: Handlers<operations> = {
    // The no-op stays synchronous: the row that shows the worker's own cost per job.
    createReport:
      handlerKind === 'noop'
        ? ({ body }) => {
            counted();
            return noopReport(body);
          }
        : handlerKind === 'report'
          ? async (input, context) => {
              const report = await reportHandlers.createReport(input, context);
              counted();
              return report;
            }
          : async ({ body }) => {
              const report = await sleepingReport(body);
              counted();
              return report;
            },
    estimateReport({ query }) {
      return { rows: query.rows, format: query.format ?? 'csv', estimatedBytes: 0 };
    },
    indexReport: reportHandlers.indexReport,
  };
  const app = await createAsyncFirst({
    contract: CONTRACT_PATH,
    handlers,
    security: demoSecurity(parseApiKeys(BENCH_API_KEYS)),
    config: { ...database, logLevel: 'silent', ...(defaultConcurrency ? {} : { workerConcurrency: concurrency }) },
  });
  const succeeded = await succeededCounter();

  // Round trips are always counted (cheap); notifications only when profiling (a listener of the benchmark's own adds to PostgreSQL's work per NOTIFY).
  const window = schema && queries ? await startDatabaseWindow(schema, queries, profileFile ? asyncfirstChannel(schema) : undefined) : undefined;
  if (profileFile) await profiler.start();
  const start = performance.now();
  const cpuAtStart = process.cpuUsage();
  const deadline = Date.now() + timeoutMs;
  app.startBackground();
  // No polling while the worker runs (it would share this thread); then poll until the last commits land.
  await Promise.race([everyHandlerRan, new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
  // The database window ends with the handlers too: the counting below is the benchmark's.
  const cost: DatabaseWindow | undefined = await window?.stop();
  // The profile ends here: the polling below is the benchmark's, not the worker's (the last group's commits fall outside it).
  let profileStopMs = 0;
  if (profileFile) {
    const stopStart = performance.now();
    await profiler.stop(profileFile);
    profileStopMs = performance.now() - stopStart; // not the worker's time: left out of the rate below
  }
  let drained = await succeeded.count();
  while (drained < jobs && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, onPostgres ? 2 : 1));
    drained = await succeeded.count();
  }
  const seconds = (performance.now() - start - profileStopMs) / 1000;
  // The drain's CPU time (every thread of this process), with the polling above; not comparable while profiling.
  const cpu = process.cpuUsage(cpuAtStart);
  await succeeded.close();
  await app.close();
  announceDrain({
    system: onPostgres ? 'asyncfirst-pg' : 'asyncfirst',
    config: `concurrency ${concurrency}${defaultConcurrency ? ' (the default)' : ''}${onPostgres && poolMax !== 10 ? `, pool ${poolMax}` : ''}`,
    concurrency,
    jobs,
    drained,
    seconds,
    fillSeconds,
    cpuUsPerJob: (cpu.user + cpu.system) / Math.max(1, drained),
    ...(cost ? { database: cost } : {}),
  });
} catch (error) {
  announceError(error);
} finally {
  rmSync(dir, { recursive: true, force: true });
  if (schema) await dropSchema(schema).catch((error: unknown) => console.error(`dropping ${schema}: ${(error as Error).message}`));
  process.exit(0);
}
