import { type AsyncFirstConfig, ConfigError } from '../config.js';
import type { Driver } from '../store/driver.js';
import { PostgresDriver } from '../store/postgres/postgres-driver.js';
import { resolveDatabasePath, SqliteDriver, type SqliteDriverOptions } from '../store/sqlite/sqlite-driver.js';
import { JobEngine } from './job-engine.js';

type DatabaseConfig = Pick<AsyncFirstConfig, 'databaseUrl' | 'busyTimeoutMs' | 'databaseSchema' | 'databasePoolMax' | 'databaseStatementTimeoutMs'>;

/**
 * The driver DATABASE_URL names: postgres:// or postgresql:// is PostgreSQL; a path or a file:
 * URL is an SQLite file. Any other scheme is a start error naming it (a URL is never taken for a
 * file name).
 */
export function driverFor(config: DatabaseConfig): Driver {
  const url = config.databaseUrl;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  // One letter before a colon is a Windows drive (C:\data\jobs.db), not a scheme.
  if (scheme === 'postgres' || scheme === 'postgresql') {
    return new PostgresDriver({
      connectionString: url,
      schema: config.databaseSchema,
      poolMax: config.databasePoolMax,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
      connectTimeoutMs: config.busyTimeoutMs,
    });
  }
  if (scheme === undefined || scheme === 'file' || scheme.length === 1) {
    return new SqliteDriver(resolveDatabasePath(url), { busyTimeoutMs: config.busyTimeoutMs });
  }
  throw new ConfigError(
    `DATABASE_URL uses the scheme "${scheme}:", which asyncfirst does not know; use postgres://… for PostgreSQL, or an SQLite file path or file: URL`,
  );
}

/** A job engine on one SQLite file (tests, tools, the benchmark). */
export function openSqliteEngine(path: string, options: SqliteDriverOptions = {}): Promise<JobEngine> {
  return JobEngine.start(new SqliteDriver(path, options));
}

/** Opens the job engine on the database DATABASE_URL names. */
export function openJobEngine(config: AsyncFirstConfig): Promise<JobEngine> {
  return JobEngine.start(driverFor(config), { webhookMaxAttempts: config.webhookMaxAttempts });
}
