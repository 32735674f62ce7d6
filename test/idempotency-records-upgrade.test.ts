import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { JobEngine } from '../src/engine/job-engine.js';
import { migrate } from '../src/store/sqlite/schema.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import { acceptRequest } from './driver-support.js';
import { tempDir } from './helpers.js';

/*
 * An SQLite file from before the idempotency records moved to a rowid table with a unique key
 * index (schema 16), opened by this asyncfirst: every key it bound still binds its job,
 * an expired one is still free, and the sweeper still finds the expired ones by their expiry.
 */

const OLD_JOB = '01KAB2T4E6Q8S0V2X4Z6B8D0F2';
const OTHER_JOB = '01KAB2T4E6Q8S0V2X4Z6B8D0F3';

describe('idempotency records kept across the move to a key index', () => {
  it('replays a key bound before it, refuses that key with another request, frees an expired one, and keeps one record per key', async () => {
    const tmp = tempDir();
    try {
      const db = new Database(tmp.dbPath);
      // Schema 15: the last before the idempotency records moved to a rowid table (16).
      migrate(db, undefined, 15);
      const now = Date.now();
      const insertJob = db.prepare(
        `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at) VALUES (?, 'alice', 'createReport', '{}', 'queued', 3, ?, ?, ?)`,
      );
      insertJob.run(OLD_JOB, now, now, now);
      insertJob.run(OTHER_JOB, now, now, now);
      const insertKey = db.prepare(
        `INSERT INTO idempotency_keys (principal, operation, key, fingerprint, job_id, created_at, expires_at) VALUES ('alice', 'createReport', ?, ?, ?, ?, ?)`,
      );
      insertKey.run('kept', 'fp-kept', OLD_JOB, now, now + 60_000);
      insertKey.run('expired', 'fp-expired', OTHER_JOB, now - 120_000, now - 60_000);
      db.close();

      const driver = new SqliteDriver(tmp.dbPath);
      const engine = await JobEngine.start(driver);
      try {
        expect(await engine.acceptJob(acceptRequest('kept'))).toEqual({ kind: 'replayed', jobId: OLD_JOB });
        expect(await engine.acceptJob(acceptRequest('kept', { fingerprint: 'fp-another-body' }))).toEqual({ kind: 'mismatch', jobId: OLD_JOB });
        const rebound = await engine.acceptJob(acceptRequest('expired'));
        expect(rebound.kind).toBe('created');
        expect(rebound.jobId).not.toBe(OTHER_JOB);
        expect(await engine.acceptJob(acceptRequest('expired'))).toEqual({ kind: 'replayed', jobId: rebound.jobId });

        const records = driver.db.prepare(`SELECT key, job_id FROM idempotency_keys ORDER BY key`).all();
        expect(records).toEqual([
          { key: 'expired', job_id: rebound.jobId },
          { key: 'kept', job_id: OLD_JOB },
        ]);
        // A second record for one key is refused by the unique index, not stored beside the first.
        expect(() =>
          driver.db
            .prepare(
              `INSERT INTO idempotency_keys (principal, operation, key, fingerprint, job_id, created_at, expires_at) VALUES ('alice', 'createReport', 'kept', 'x', 'y', 1, 2)`,
            )
            .run(),
        ).toThrow(/UNIQUE/);
        const plan = driver.db
          .prepare(`EXPLAIN QUERY PLAN SELECT fingerprint, job_id, expires_at FROM idempotency_keys WHERE principal = ? AND operation = ? AND key = ?`)
          .all('alice', 'createReport', 'kept') as Array<{ detail: string }>;
        expect(plan.map((step) => step.detail).join('\n')).toContain('USING INDEX idempotency_keys_key');
      } finally {
        await engine.close();
      }
    } finally {
      tmp.cleanup();
    }
  });
});
