import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import { JOB_STATES } from '../../core/job-states.js';
import type { MigrationStep } from '../driver.js';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** The numbered migrations (0001_name.sql, …), in order; never edit one that has shipped. */
function migrationFiles(): { version: number; name: string; sql: string }[] {
  const states = JOB_STATES.map((state) => `'${state}'`).join(', ');
  return readdirSync(MIGRATIONS_DIR)
    .filter((file) => /^\d{4}_[\w-]+\.sql$/.test(file))
    .sort()
    .map((file, index) => {
      const version = Number(file.slice(0, 4));
      if (version !== index + 1) throw new Error(`PostgreSQL migration ${file} is out of sequence: expected number ${index + 1}`);
      return { version, name: file, sql: readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8').replaceAll(':job_states', states) };
    });
}

/** The schema version this code brings a database to. */
export const POSTGRES_SCHEMA_VERSION = migrationFiles().length;

const quoteIdentifier = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Brings the schema up to date: under an advisory lock (so many processes starting at once apply
 * each migration once), creates the schema if missing and applies the pending migrations, each in
 * its own transaction. A database newer than this code is refused. onStep hears of each migration
 * before and after it runs.
 */
export async function migrate(client: pg.ClientBase, schema: string, onStep?: (step: MigrationStep) => void): Promise<number> {
  const lock = `asyncfirst:migrate:${schema}`;
  // Migrations may wait for another process's lock and may take long (an index on a big table):
  // not under DATABASE_STATEMENT_TIMEOUT_MS, which is for requests.
  await client.query('SET statement_timeout = 0');
  await client.query('SELECT pg_advisory_lock(hashtext($1))', [lock]);
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`);
    await client.query(`SET search_path TO ${quoteIdentifier(schema)}`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const applied = Number((await client.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations')).rows[0]?.version ?? 0);
    const migrations = migrationFiles();
    if (applied > migrations.length) {
      throw new Error(`the database schema "${schema}" has version ${applied}, newer than this asyncfirst (${migrations.length}); upgrade asyncfirst`);
    }
    for (const migration of migrations.slice(applied)) {
      const step = { version: migration.version, of: migrations.length, name: migration.name };
      onStep?.(step);
      const started = performance.now();
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
        await client.query('COMMIT');
        onStep?.({ ...step, ms: performance.now() - started });
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    }
    return migrations.length;
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [lock]);
    await client.query('RESET statement_timeout');
  }
}
