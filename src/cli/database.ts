import { copyFileSync, existsSync, linkSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { type AsyncFirstConfig, loadConfig } from '../config.js';
import { withoutPassword } from '../core/database-url.js';
import type { MigrationStep } from '../store/driver.js';
import { migrate as migratePostgres } from '../store/postgres/migrate.js';
import { migrate as migrateSqlite } from '../store/sqlite/schema.js';
import { resolveDatabasePath } from '../store/sqlite/sqlite-driver.js';
import { CliError } from './errors.js';

export { withoutPassword } from '../core/database-url.js';

/** Where DATABASE_URL (or --database) points. */
type Target = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

export function databaseTarget(databaseUrl: string | undefined): { target: Target; config: AsyncFirstConfig } {
  const config = loadConfig(process.env, databaseUrl === undefined ? {} : { databaseUrl });
  const url = config.databaseUrl;
  if (/^postgres(ql)?:/i.test(url)) return { target: { kind: 'postgres', url }, config };
  if (/^[a-z][a-z0-9+.-]+:/i.test(url) && !url.startsWith('file:')) throw new CliError(`DATABASE_URL "${url}" is neither an SQLite file nor postgres://…`);
  return { target: { kind: 'sqlite', path: resolveDatabasePath(url) }, config };
}

/** The SQLite schema version this asyncfirst brings a database to. */
export function sqliteSchemaVersion(): number {
  const db = new Database(':memory:');
  try {
    migrateSqlite(db);
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

/** asyncfirst migrate: brings the database's schema up to date; returns its version. onStep hears of each migration applied. */
export async function migrateDatabase(target: Target, config: AsyncFirstConfig, onStep?: (step: MigrationStep) => void): Promise<number> {
  if (target.kind === 'postgres') {
    const client = new pg.Client({ connectionString: target.url, connectionTimeoutMillis: config.busyTimeoutMs });
    try {
      await client.connect();
      return await migratePostgres(client, config.databaseSchema, onStep);
    } catch (error) {
      throw new CliError(`cannot migrate ${withoutPassword(target.url)}: ${(error as Error).message}`);
    } finally {
      await client.end().catch(() => {});
    }
  }
  const db = new Database(target.path, { timeout: config.busyTimeoutMs });
  try {
    db.pragma('journal_mode = WAL');
    migrateSqlite(db, onStep);
    return db.pragma('user_version', { simple: true }) as number;
  } catch (error) {
    throw new CliError(`cannot migrate ${target.path}: ${(error as Error).message}`);
  } finally {
    db.close();
  }
}

/** What a checked SQLite copy holds. */
export interface CopyReport {
  file: string;
  schemaVersion: number;
  jobs: number;
}

/** Checks an SQLite file is a whole asyncfirst database this asyncfirst can open: integrity_check, its schema version, its jobs table. */
export function checkCopy(file: string): CopyReport {
  if (!existsSync(file)) throw new CliError(`${file} does not exist`);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new CliError(`${file} cannot be opened as an SQLite database: ${(error as Error).message}`);
  }
  try {
    const integrity = db.pragma('integrity_check') as { integrity_check: string }[];
    if (integrity.length !== 1 || integrity[0]?.integrity_check !== 'ok') {
      throw new CliError(`${file} fails PRAGMA integrity_check: ${integrity.map((row) => row.integrity_check).join('; ')}`);
    }
    const schemaVersion = db.pragma('user_version', { simple: true }) as number;
    const current = sqliteSchemaVersion();
    if (schemaVersion === 0) throw new CliError(`${file} is not an asyncfirst database (schema version 0)`);
    if (schemaVersion > current) throw new CliError(`${file} has schema version ${schemaVersion}, newer than this asyncfirst (${current}); upgrade asyncfirst`);
    const jobs = (db.prepare('SELECT count(*) AS count FROM jobs').get() as { count: number }).count;
    return { file, schemaVersion, jobs };
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`${file} is not a readable asyncfirst database: ${(error as Error).message}`);
  } finally {
    db.close();
  }
}

const POSTGRES_BACKUPS =
  'on PostgreSQL, back up and restore with the database tools: pg_dump --format=custom --schema=<DATABASE_SCHEMA> "$DATABASE_URL" > jobs.dump, and pg_restore --clean --dbname "$DATABASE_URL" jobs.dump with every asyncfirst process stopped';

/** What asyncfirst backup reports while it works: pages copied of the total, then the check of the copy. */
export interface BackupProgress {
  copied(pages: number, totalPages: number): void;
  checking(): void;
}

/** Pages copied per step of the backup: about a hundred steps, so progress moves by a percent. */
const stepPages = (totalPages: number) => Math.max(64, Math.ceil(totalPages / 100));

/**
 * asyncfirst backup <file>: an online, consistent copy of the live SQLite file (the backup API,
 * while servers keep running), checked with integrity_check. Never overwrites a file.
 */
export async function backupDatabase(target: Target, file: string, progress?: BackupProgress): Promise<CopyReport> {
  if (target.kind === 'postgres') throw new CliError(POSTGRES_BACKUPS);
  const destination = resolve(file);
  if (existsSync(destination)) throw new CliError(`${file} exists; asyncfirst backup never overwrites a file: choose a new name`);
  if (!existsSync(target.path)) throw new CliError(`there is no database at ${target.path} (DATABASE_URL)`);
  const partial = join(dirname(destination), `.${basename(destination)}.partial-${process.pid}`);
  const db = new Database(target.path, { readonly: true, fileMustExist: true });
  try {
    // One read transaction for the whole copy: every step reads the same snapshot (WAL lets servers
    // keep writing meanwhile), so the copy is the database as of one moment, and a write between
    // steps cannot make SQLite restart the copy from its first page — as it would, again and
    // again, on a busy server.
    // (BEGIN alone reads nothing: the first read starts the snapshot, which the backup's steps then share.)
    db.exec('BEGIN');
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    const copied = await db.backup(partial, {
      progress({ totalPages, remainingPages }) {
        progress?.copied(totalPages - remainingPages, totalPages);
        return stepPages(totalPages);
      },
    });
    db.exec('COMMIT');
    progress?.copied(copied.totalPages, copied.totalPages);
  } catch (error) {
    for (const file of [partial, `${partial}-wal`, `${partial}-shm`]) rmSync(file, { force: true });
    throw new CliError(`backup of ${target.path} failed: ${(error as Error).message}`);
  } finally {
    db.close();
  }
  try {
    // The copy leaves WAL mode: it is one self-contained file (a server sets WAL again when it opens it).
    const copy = new Database(partial);
    copy.pragma('journal_mode = DELETE');
    copy.close();
    progress?.checking();
    const report = checkCopy(partial);
    // link() fails if the name was taken meanwhile: the copy never replaces a file.
    linkSync(partial, destination);
    return { ...report, file };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`${file} exists; asyncfirst backup never overwrites a file: choose a new name`);
    throw error;
  } finally {
    for (const file of [partial, `${partial}-wal`, `${partial}-shm`]) rmSync(file, { force: true });
  }
}

/** What restore did: the copy swapped in, and where the database it replaced was kept. */
export interface RestoreReport extends CopyReport {
  safetyCopy: string | undefined;
}

/**
 * asyncfirst restore <file>: checks the copy, then, holding the live file's exclusive lock (so no
 * server or worker has it open, nor can open it meanwhile), keeps a safety copy of the live
 * database and swaps the copy in. onStep hears of the long steps as they begin.
 */
export function restoreDatabase(target: Target, file: string, now = new Date(), onStep?: (step: string) => void): RestoreReport {
  if (target.kind === 'postgres') throw new CliError(POSTGRES_BACKUPS);
  onStep?.(`checking ${file} (PRAGMA integrity_check)…`);
  const report = checkCopy(resolve(file));
  const live = target.path;
  const staged = `${live}.restoring-${process.pid}`;
  copyFileSync(resolve(file), staged);
  if (!existsSync(live)) {
    renameSync(staged, live);
    return { ...report, file, safetyCopy: undefined };
  }
  const db = new Database(live, { timeout: 0, fileMustExist: true });
  try {
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (error) {
      if (/^SQLITE_BUSY/.test(String((error as { code?: unknown }).code))) {
        throw new CliError(`a process holds ${live} (a server or worker is running): stop every asyncfirst process using it, then restore`);
      }
      throw new CliError(`cannot lock ${live}: ${(error as Error).message}`);
    }
    const safetyCopy = `${live}.before-restore-${now.toISOString().replaceAll(':', '-')}`;
    if (existsSync(safetyCopy)) throw new CliError(`${safetyCopy} exists; try again`);
    onStep?.(`keeping the live database as ${safetyCopy}…`);
    db.prepare('VACUUM INTO ?').run(safetyCopy);
    // Folds the write-ahead log into the file and removes it, so no log of the old database is left
    // beside the new one (SQLite would replay it into the restored file).
    db.pragma('journal_mode = DELETE');
    renameSync(staged, live);
    for (const leftover of [`${live}-wal`, `${live}-shm`, `${live}-journal`]) rmSync(leftover, { force: true });
    return { ...report, file, safetyCopy };
  } finally {
    db.close();
    rmSync(staged, { force: true });
  }
}
