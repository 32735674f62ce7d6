import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { newJobId } from '../../src/core/ids.js';
import { openSqliteEngine } from '../../src/engine/open-engine.js';
import { fingerprintRequest } from '../../src/idempotency/fingerprint.js';
import { BENCH_PRINCIPAL, REPORT_BODY } from './shared.js';

/**
 * Puts `count` finished createReport jobs, each with its idempotency record, into a new
 * database file: the schema comes from opening the store once; the rows go in as one big
 * transaction with synchronous=OFF (for the prefill only: the server reopens the file with
 * asyncfirst's own settings). Jobs are spread over the last hours, all within retention, so
 * the sweeper leaves them alone. Returns the seconds it took.
 */
export async function prefill(dbPath: string, count: number): Promise<number> {
  await (await openSqliteEngine(dbPath)).close();
  const start = performance.now();
  const db = new Database(dbPath);
  try {
    // For the prefill only: no journal, no fsync, a big cache. WAL is restored below.
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -1048576');
    const { fingerprint, canonicalInput } = fingerprintRequest('createReport', { params: {}, query: {}, body: REPORT_BODY });
    const result = JSON.stringify({
      title: REPORT_BODY.title,
      format: 'csv',
      rowCount: REPORT_BODY.rows,
      bytes: 17_778,
      sha256: randomBytes(32).toString('hex'),
    });
    const insertJob = db.prepare<[string, string, number, string, number, number, number]>(
      `INSERT INTO jobs (id, principal, operation, input, status, attempts, max_attempts, run_at, fence, result, created_at, updated_at, finished_at)
       VALUES (?, '${BENCH_PRINCIPAL}', 'createReport', ?, 'succeeded', 1, 5, ?, 1, ?, ?, ?, ?)`,
    );
    const insertKey = db.prepare<[string, string, string, number, number]>(
      `INSERT INTO idempotency_keys (principal, operation, key, fingerprint, job_id, created_at, expires_at)
       VALUES ('${BENCH_PRINCIPAL}', 'createReport', ?, ?, ?, ?, ?)`,
    );
    const now = Date.now();
    const spacingMs = Math.min(10, (20 * 3_600_000) / Math.max(1, count));
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const createdAt = Math.floor(now - (count - i) * spacingMs);
        const id = newJobId(createdAt);
        insertJob.run(id, canonicalInput, createdAt, result, createdAt, createdAt + 5, createdAt + 5);
        insertKey.run(randomUUID(), fingerprint, id, createdAt, createdAt + 86_400_000);
      }
    })();
    db.pragma('journal_mode = WAL');
  } finally {
    db.close();
  }
  return (performance.now() - start) / 1000;
}

/** Up to `count` random job ids of the file (for GET /jobs/{id}). */
export function sampleJobIds(dbPath: string, count: number): string[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    const maxSeq = db.prepare<[], { m: number | null }>('SELECT max(seq) AS m FROM jobs').get()?.m ?? 0;
    if (maxSeq === 0) return [];
    const bySeq = db.prepare<[number], { id: string }>('SELECT id FROM jobs WHERE seq = ?');
    const ids: string[] = [];
    for (let i = 0; i < count * 2 && ids.length < count; i++) {
      const row = bySeq.get(1 + Math.floor(Math.random() * maxSeq));
      if (row) ids.push(row.id);
    }
    return ids;
  } finally {
    db.close();
  }
}

/** Jobs in the file, and its size on disk (main file + WAL). */
export function fileStats(dbPath: string): { jobs: number; bytes: number } {
  const db = new Database(dbPath, { readonly: true });
  let jobs: number;
  try {
    jobs = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM jobs').get()?.n ?? 0;
  } finally {
    db.close();
  }
  const size = (path: string) => (existsSync(path) ? statSync(path).size : 0);
  return { jobs, bytes: size(dbPath) + size(`${dbPath}-wal`) };
}
