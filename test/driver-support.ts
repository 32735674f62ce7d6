import { afterEach } from 'vitest';
import type { AsyncFirstConfig } from '../src/config.js';
import { JobEngine, type JobEngineOptions } from '../src/engine/job-engine.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { AcceptRequest, Store } from '../src/store/store.js';
import { tempDir } from './helpers.js';
import { freshSchema, TEST_DATABASE_URL } from './postgres-support.js';

/*
 * Support for suites that run one storage behaviour against every driver: a fresh database per
 * test, on which each engine opened stands in for another process (on PostgreSQL each has a pool
 * of its own, so their statements really run at once).
 */

export interface DatabaseUnderTest {
  /** A new engine on this test's database (call again for another "process"). */
  open(options?: JobEngineOptions): Promise<Store>;
  cleanup(): Promise<void>;
}

export interface DriverUnderTest {
  name: string;
  database: () => DatabaseUnderTest;
}

/** SQLite (one temporary file) and PostgreSQL (one fresh schema named from `schemaPrefix`). */
export function driversUnderTest(schemaPrefix: string, poolMax = 4): DriverUnderTest[] {
  return [
    {
      name: 'SQLite',
      database: () => {
        const tmp = tempDir();
        return {
          open: (options) => JobEngine.start(new SqliteDriver(tmp.dbPath), options),
          cleanup: async () => tmp.cleanup(),
        };
      },
    },
    {
      name: 'PostgreSQL',
      database: () => {
        const { schema, drop } = freshSchema(schemaPrefix);
        return {
          open: (options) => JobEngine.start(new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax }), options),
          cleanup: drop,
        };
      },
    },
  ];
}

/**
 * SQLite (a temporary file) and PostgreSQL (a fresh schema) for an app: each `make` gives the
 * database as DATABASE_URL, as configuration, and as the environment of a child process, and
 * how to remove it after the test.
 */
export function appDatabases(schemaPrefix: string) {
  return [
    {
      name: 'SQLite',
      make: () => {
        const tmp = tempDir();
        const config: Partial<AsyncFirstConfig> = { databaseUrl: tmp.dbPath };
        return { databaseUrl: tmp.dbPath, config, env: { DATABASE_URL: tmp.dbPath } as Record<string, string>, drop: async () => tmp.cleanup() };
      },
    },
    {
      name: 'PostgreSQL',
      make: () => {
        const { schema, drop } = freshSchema(schemaPrefix);
        const config: Partial<AsyncFirstConfig> = { databaseUrl: TEST_DATABASE_URL, databaseSchema: schema };
        return { databaseUrl: TEST_DATABASE_URL, config, env: { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema } as Record<string, string>, drop };
      },
    },
  ];
}

/**
 * A database for an app in the test and worker processes it starts, on each driver: its settings
 * as config (for the app) and as environment (for the processes), a folder for the test's own
 * files, and how to remove it all.
 */
export function processDatabases(schemaPrefix: string) {
  return [
    {
      name: 'SQLite',
      make: () => {
        const tmp = tempDir();
        return { dir: tmp.dir, env: { DATABASE_URL: tmp.dbPath }, config: { databaseUrl: tmp.dbPath }, drop: async () => tmp.cleanup() };
      },
    },
    {
      name: 'PostgreSQL',
      make: () => {
        const tmp = tempDir();
        const { schema, drop } = freshSchema(schemaPrefix);
        return {
          dir: tmp.dir,
          env: { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema },
          config: { databaseUrl: TEST_DATABASE_URL, databaseSchema: schema },
          drop: async () => {
            await drop();
            tmp.cleanup();
          },
        };
      },
    },
  ];
}

/**
 * A fresh database for each test of the calling describe block: `open(n)` starts n engines on it
 * (with `options`, if given); after the test every engine is closed and the database removed.
 */
export function useDatabase(database: () => DatabaseUnderTest): { open(count: number, options?: JobEngineOptions): Promise<Store[]> } {
  let db: DatabaseUnderTest | undefined;
  const engines: Store[] = [];
  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.close();
    await db?.cleanup();
    db = undefined;
  });
  return {
    async open(count, options) {
      db ??= database();
      const opened: Store[] = [];
      // One after another: each applies (or finds) the migrations.
      for (let i = 0; i < count; i++) {
        const engine = await db.open(options);
        engines.push(engine);
        opened.push(engine);
      }
      return opened;
    },
  };
}

export const INPUT = '{"body":{"rows":1,"title":"t"},"params":{},"query":{}}';

/** A submission by alice of createReport under `key` (fingerprint `fp-<key>`), its record kept for a minute. */
export function acceptRequest(key: string, overrides: Partial<AcceptRequest> = {}): AcceptRequest {
  const now = Date.now();
  return {
    principal: 'alice',
    operation: 'createReport',
    key,
    fingerprint: `fp-${key}`,
    input: INPUT,
    maxAttempts: 3,
    now,
    keyExpiresAt: now + 60_000,
    ...overrides,
  };
}
