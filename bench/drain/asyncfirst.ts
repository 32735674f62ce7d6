// Drain: N createReport jobs already stored, a no-op handler, asyncfirst's embedded worker; one process.
// Prints {"system":"asyncfirst", "jobs", "drained", "seconds", "jobsPerSec", "fillJobsPerSec", ...}.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { operations } from '../../generated/api.js';
import { createAsyncFirst } from '../../src/app.js';
import { demoSecurity, parseApiKeys } from '../../src/demo/service.js';
import { openSqliteEngine } from '../../src/engine/open-engine.js';
import type { Handlers } from '../../src/handlers.js';
import { fingerprintRequest } from '../../src/idempotency/fingerprint.js';
import { announceDrain, announceError, argNumber, argValue, cpuProfiler, exitWithParent } from '../lib/child-side.js';
import { BENCH_API_KEYS, BENCH_PRINCIPAL, CONTRACT_PATH, noopReport, REPORT_BODY } from '../lib/shared.js';

exitWithParent();
const jobs = argNumber('jobs', 1000);
const concurrency = argNumber('concurrency', 8);
const timeoutMs = argNumber('timeout', 120) * 1000;
const dir = mkdtempSync(join(argValue('dir', tmpdir()), 'asyncfirst-bench-drain-'));
const dbPath = join(dir, 'drain.db');
// --profile=<file>: a CPU profile of the drain alone (not the fill), written to that file.
const profileFile = argValue('profile', '');
const profiler = cpuProfiler();

try {
  // Fill through a store of its own: an app's store wakes the app's worker on every commit.
  const fillStore = await openSqliteEngine(dbPath);
  const { fingerprint, canonicalInput } = fingerprintRequest('createReport', { params: {}, query: {}, body: REPORT_BODY });
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
    await Promise.all(writes); // one group commit per batch
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;
  await fillStore.close();

  let ran = 0;
  let allRan: () => void = () => {};
  const everyHandlerRan = new Promise<void>((resolve) => {
    allRan = resolve;
  });
  const handlers: Handlers<operations> = {
    createReport({ body }) {
      if (++ran === jobs) allRan();
      return noopReport(body);
    },
    estimateReport({ query }) {
      return { rows: query.rows, format: query.format ?? 'csv', estimatedBytes: 0 };
    },
  };
  const app = await createAsyncFirst({
    contract: CONTRACT_PATH,
    handlers,
    security: demoSecurity(parseApiKeys(BENCH_API_KEYS)),
    config: { databaseUrl: dbPath, logLevel: 'silent', workerConcurrency: concurrency },
  });
  const reader = new Database(dbPath, { readonly: true });
  const succeeded = reader.prepare<[], { n: number }>(`SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'`);
  const countSucceeded = () => succeeded.get()?.n ?? 0;

  if (profileFile) await profiler.start();
  const start = performance.now();
  const deadline = Date.now() + timeoutMs;
  app.startBackground();
  // No polling while the worker runs (it would share this thread); then poll until the last commits land.
  await Promise.race([everyHandlerRan, new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
  // The profile ends here: the polling below is the benchmark's, not the worker's (the last group's commits fall outside it).
  let profileStopMs = 0;
  if (profileFile) {
    const stopStart = performance.now();
    await profiler.stop(profileFile);
    profileStopMs = performance.now() - stopStart; // not the worker's time: left out of the rate below
  }
  let drained = countSucceeded();
  while (drained < jobs && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    drained = countSucceeded();
  }
  const seconds = (performance.now() - start - profileStopMs) / 1000;
  reader.close();
  await app.close();
  announceDrain({
    system: 'asyncfirst',
    config: `concurrency ${concurrency}`,
    concurrency,
    jobs,
    drained,
    seconds,
    fillSeconds,
  });
} catch (error) {
  announceError(error);
} finally {
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
