import { type AsyncFirstConfig, ConfigError } from '../config.js';
import type { Driver } from '../store/driver.js';
import { resolveDatabasePath, SqliteDriver, type SqliteDriverOptions } from '../store/sqlite/sqlite-driver.js';
import { JobEngine } from './job-engine.js';

/**
 * The driver DATABASE_URL names: a path or a file: URL is an SQLite file. Any other scheme is a
 * start error naming it (a URL is never taken for a file name).
 */
export function driverFor(config: Pick<AsyncFirstConfig, 'databaseUrl' | 'busyTimeoutMs'>): Driver {
  const url = config.databaseUrl;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  // One letter before a colon is a Windows drive (C:\data\jobs.db), not a scheme.
  if (scheme === undefined || scheme === 'file' || scheme.length === 1) {
    return new SqliteDriver(resolveDatabasePath(url), { busyTimeoutMs: config.busyTimeoutMs });
  }
  throw new ConfigError(`DATABASE_URL uses the scheme "${scheme}:", which asyncfirst does not know; use an SQLite file path or a file: URL`);
}

/** A job engine on one SQLite file (tests, tools, the benchmark). */
export function openSqliteEngine(path: string, options: SqliteDriverOptions = {}): Promise<JobEngine> {
  return JobEngine.start(new SqliteDriver(path, options));
}

/** Opens the job engine on the database DATABASE_URL names. */
export function openJobEngine(config: AsyncFirstConfig): Promise<JobEngine> {
  return JobEngine.start(driverFor(config), { webhookMaxAttempts: config.webhookMaxAttempts });
}
