import { readdirSync, readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { JOB_STATES } from '../src/core/job-states.js';
import { JobEngine } from '../src/engine/job-engine.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import { migrate } from '../src/store/sqlite/schema.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { Store, StreamedEvent } from '../src/store/store.js';
import { acceptRequest } from './driver-support.js';
import { tempDir } from './helpers.js';
import { freshSchema, TEST_DATABASE_URL } from './postgres-support.js';

/*
 * A database written by an asyncfirst from before the log of every job's events (SQLite schema 5,
 * PostgreSQL 0003), opened by this one: its events are kept, in the order they were written, and
 * the log goes on after them.
 */

const OLD_JOB = '01KAB2T4E6Q8S0V2X4Z6B8D0F2';

async function readAll(engine: Store, after: string): Promise<StreamedEvent[]> {
  const events: StreamedEvent[] = [];
  for (let reads = 0; reads < 200; reads++) {
    const slice = await engine.readEvents({ after });
    events.push(...slice.events);
    if (slice.events.length === 0 && slice.cursor === after && !slice.heldBack) return events;
    if (slice.heldBack) await new Promise((resolve) => setTimeout(resolve, 10));
    after = slice.cursor;
  }
  throw new Error('the log did not come to an end');
}

/** The cursor before every position: a client could never have been given it, but it reads the log from its start. */
const FROM_THE_START = Buffer.from('e0.0', 'latin1').toString('base64url');

const engines: Store[] = [];
afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.close();
});

describe('a database from before the log of every job', () => {
  it('SQLite (schema 5): keeps the events in their order, and new ones come after them', async () => {
    const tmp = tempDir();
    try {
      // Schema 5 as it shipped: the migrations up to it.
      const db = new Database(tmp.dbPath);
      migrate(db, undefined, 5);
      db.prepare(
        `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at, finished_at, version)
         VALUES (?, 'alice', 'createReport', '{}', 'succeeded', 3, 1, 1, 3, 3, 2)`,
      ).run(OLD_JOB);
      const insert = db.prepare(`INSERT INTO job_events (id, job_id, type, data, created_at, version) VALUES (?, ?, ?, ?, ?, ?)`);
      insert.run(40, OLD_JOB, 'job.running', '{"status":"running"}', 2, 1);
      insert.run(41, OLD_JOB, 'job.succeeded', '{"status":"succeeded"}', 3, 2);
      db.close();

      const engine = await JobEngine.start(new SqliteDriver(tmp.dbPath));
      engines.push(engine);
      const old = await readAll(engine, FROM_THE_START);
      expect(old.map((event) => [event.jobId, event.type, event.data])).toEqual([
        [OLD_JOB, 'job.running', '{"status":"running"}'],
        [OLD_JOB, 'job.succeeded', '{"status":"succeeded"}'],
      ]);
      expect((await engine.getJobEvents('alice', OLD_JOB, 0))?.events.map((event) => event.id)).toEqual([1, 2]);
      // The next id follows the last one kept.
      const fresh = (await engine.acceptJob(acceptRequest('new'))).jobId;
      const after = await readAll(engine, old.at(-1)?.cursor ?? '');
      expect(after.map((event) => [event.jobId, event.type])).toEqual([[fresh, 'job.queued']]);
    } finally {
      tmp.cleanup();
    }
  });

  it('PostgreSQL (0003): stamps the events kept with the migration, in the order they were written, and new ones come after them', async () => {
    const { schema, drop } = freshSchema('af_upgrade');
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA "${schema}"`);
      await client.query(`SET search_path TO "${schema}"`);
      await client.query(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const directory = new URL('../src/store/postgres/migrations/', import.meta.url);
      const states = JOB_STATES.map((state) => `'${state}'`).join(', ');
      for (const file of readdirSync(directory).sort().slice(0, 3)) {
        await client.query(readFileSync(new URL(file, directory), 'utf8').replaceAll(':job_states', states));
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [Number(file.slice(0, 4)), file]);
      }
      await client.query(
        `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at, finished_at, version)
         VALUES ($1, 'alice', 'createReport', '{}', 'succeeded', 3, 1, 1, 3, 3, 2)`,
        [OLD_JOB],
      );
      // Written in another order than their versions: the migration orders them by time.
      await client.query(
        `INSERT INTO job_events (job_id, version, type, data, created_at) VALUES ($1, 2, 'job.succeeded', '{"status":"succeeded"}', 3), ($1, 1, 'job.running', '{"status":"running"}', 2)`,
        [OLD_JOB],
      );

      const engine = await JobEngine.start(new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax: 2 }));
      engines.push(engine);
      const old = await readAll(engine, FROM_THE_START);
      expect(old.map((event) => [event.jobId, event.type])).toEqual([
        [OLD_JOB, 'job.running'],
        [OLD_JOB, 'job.succeeded'],
      ]);
      const fresh = (await engine.acceptJob(acceptRequest('new'))).jobId;
      const after = await readAll(engine, old.at(-1)?.cursor ?? '');
      expect(after.map((event) => [event.jobId, event.type])).toEqual([[fresh, 'job.queued']]);
      const ids = await client.query<{ id: string }>(`SELECT id FROM job_events ORDER BY id`);
      expect(ids.rows.map((row) => Number(row.id))).toEqual([1, 2, 3]);
    } finally {
      await client.end();
      await drop();
    }
  });
});
