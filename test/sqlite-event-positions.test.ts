import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { JobEngine } from '../src/engine/job-engine.js';
import { migrate } from '../src/store/sqlite/schema.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { Store, StreamedEvent } from '../src/store/store.js';
import { acceptRequest } from './driver-support.js';
import { tempDir } from './helpers.js';

/*
 * The SQLite event log's one numbering of positions for the jobs table and job_events: a job that
 * starts now is its own job.queued in the log (no row of job_events is written for it), a job that
 * starts later logs its acceptance as a row, and the log reads both merged in position order, each
 * event once, also on a file whose log was written before the numbering was shared.
 */

/** The cursor before every position (see event-log-upgrade.test.ts). */
const FROM_THE_START = Buffer.from('e0.0', 'latin1').toString('base64url');

async function readAll(engine: Store): Promise<StreamedEvent[]> {
  const events: StreamedEvent[] = [];
  let after = FROM_THE_START;
  for (let reads = 0; reads < 100; reads++) {
    const slice = await engine.readEvents({ after, limit: 2 });
    events.push(...slice.events);
    if (slice.events.length === 0 && slice.cursor === after) return events;
    after = slice.cursor;
  }
  throw new Error('the log did not come to an end');
}

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openOn(path: string): Promise<{ engine: JobEngine; driver: SqliteDriver }> {
  const driver = new SqliteDriver(path);
  const engine = await JobEngine.start(driver);
  cleanups.push(() => engine.close());
  return { engine, driver };
}

describe('SQLite event log positions', () => {
  it('logs a job that starts now from its row and one that starts later from a row of its own, each once, in position order with their events', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const { engine, driver } = await openOn(tmp.dbPath);
    const now = Date.now();
    const soon = (await engine.acceptJob(acceptRequest('soon'))).jobId;
    const later = (await engine.acceptJob(acceptRequest('later', { runAt: now + 60_000 }))).jobId;
    const [claimed] = await engine.claimJobs({ owner: 'worker', limit: 5, now, leaseMs: 30_000 });
    expect(claimed?.id).toBe(soon);
    expect(await engine.finishJob(soon, claimed?.fence ?? 0, { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);

    const events = await readAll(engine);
    expect(events.map((event) => [event.jobId, event.type])).toEqual([
      [soon, 'job.queued'],
      [later, 'job.queued'],
      [soon, 'job.running'],
      [soon, 'job.succeeded'],
    ]);
    // Built from the job row: due when accepted. Stored with the acceptance: due a minute later.
    const soonQueued = JSON.parse(events[0]?.data ?? '');
    expect(soonQueued).toMatchObject({ id: soon, status: 'queued' });
    expect(soonQueued.nextAttemptAt).toBe(soonQueued.createdAt);
    expect(JSON.parse(events[1]?.data ?? '')).toMatchObject({ id: later, status: 'queued', nextAttemptAt: new Date(now + 60_000).toISOString() });

    const rows = driver.db.prepare(`SELECT job_id, version FROM job_events ORDER BY id`).all();
    expect(rows).toEqual([
      { job_id: later, version: 0 },
      { job_id: soon, version: 1 },
      { job_id: soon, version: 2 },
    ]);
    // One numbering: the acceptances' seq and the events' ids interleave in the order they were written.
    const positions = driver.db
      .prepare(`SELECT seq AS position, id AS job FROM jobs WHERE accept_logged = 0 UNION ALL SELECT id, job_id FROM job_events ORDER BY position`)
      .all() as Array<{ position: number; job: string }>;
    expect(positions.map((row) => row.job)).toEqual([soon, later, soon, soon]);
    expect(new Set(positions.map((row) => row.position)).size).toBe(4);
  });

  it('reads a log written before the numbering was shared: the old acceptances from their rows, once, and new jobs after them', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const db = new Database(tmp.dbPath);
    // Schema 16: the last before jobs and job_events shared one numbering (17).
    migrate(db, undefined, 16);
    const old = '01KAB2T4E6Q8S0V2X4Z6B8D0F2';
    db.prepare(
      `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at, version) VALUES (?, 'alice', 'createReport', '{}', 'running', 3, 1, 1, 2, 1)`,
    ).run(old);
    const insertEvent = db.prepare(`INSERT INTO job_events (job_id, version, type, data, created_at) VALUES (?, ?, ?, ?, ?)`);
    insertEvent.run(old, 0, 'job.queued', null, 1);
    insertEvent.run(old, 1, 'job.running', '{"status":"running"}', 2);
    db.close();

    const { engine } = await openOn(tmp.dbPath);
    const fresh = (await engine.acceptJob(acceptRequest('fresh'))).jobId;
    expect((await readAll(engine)).map((event) => [event.jobId, event.type])).toEqual([
      [old, 'job.queued'],
      [old, 'job.running'],
      [fresh, 'job.queued'],
    ]);
  });
});
