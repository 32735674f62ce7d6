import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import { prepareStatements } from '../src/store/sqlite/statements.js';
import { tempDir } from './helpers.js';

/*
 * SQLite's plans for the statements the worker runs for every job: each must read an index that
 * yields the rows it wants in order, never sort every queued or running job. A new index (one
 * for listings, say) can change what the planner picks, so the plans are checked on a file that
 * holds enough jobs for the choice to matter, with no ANALYZE statistics (the driver runs none).
 */
describe('SQLite query plans of the hot statements', () => {
  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('claims due jobs through jobs_queued (by priority and per limited operation through their own indexes), in order, without sorting the queue, finds abandoned leases in one range of jobs_leased, sweeps and charts finished jobs by ranges of jobs_finished_by_operation, and lists jobs newest first from an index in that order, and reads the event log as a merge of two ranges', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const engine = await openSqliteEngine(tmp.dbPath);
    const now = Date.now();
    await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        engine.acceptJob({
          principal: `p${i % 7}`,
          operation: 'op',
          key: `k${i}`,
          fingerprint: 'f',
          input: '{}',
          maxAttempts: 3,
          now,
          keyExpiresAt: now + 60_000,
        }),
      ),
    );
    await engine.close();

    const db = new Database(tmp.dbPath);
    cleanups.push(() => {
      db.close();
    });
    const sql = prepareStatements(db);
    // better-sqlite3's statements carry their SQL text as `source`.
    const plan = (statement: object, parameters: unknown[]) =>
      db
        .prepare(`EXPLAIN QUERY PLAN ${(statement as { source: string }).source}`)
        .all(...parameters)
        .map((row) => (row as { detail: string }).detail)
        .join(' | ');
    const claim = plan(sql.claimQueued, ['w', 'epoch', now + 30_000, now, now, 16]);
    expect(claim).toContain('jobs_queued');
    expect(claim).not.toContain('TEMP B-TREE');
    // With priorities, each part is read in order from its index; only the few candidates (three
    // parts of at most the limit each) are sorted, never the queue.
    const byPriority = plan(sql.claimQueuedByPriority, [{ owner: 'w', epoch: 'epoch', leaseExpiresAt: now + 30_000, now, limit: 16 }]);
    expect(byPriority).toContain('SEARCH jobs USING INDEX jobs_queued_by_priority (priority>?)');
    expect(byPriority).toContain('SEARCH jobs USING INDEX jobs_queued (run_at<?)');
    expect(byPriority).toContain('SEARCH jobs USING INDEX jobs_queued_by_priority (priority<?)');
    expect(byPriority.match(/TEMP B-TREE/g)).toHaveLength(1);
    expect(byPriority).toMatch(/SCAN \(subquery-\d+\) \| USE TEMP B-TREE FOR ORDER BY$/);
    // A limited operation's claim reads its own jobs only: its queue in order, its running attempts, its lapsed leases.
    expect(plan(sql.claimLimitedQueued, [{ owner: 'w', epoch: 'epoch', leaseExpiresAt: now + 30_000, now, operation: 'op', limit: 16 }])).toContain(
      'SEARCH jobs USING COVERING INDEX jobs_limited_queued (operation=?)',
    );
    expect(plan(sql.claimLimitedQueued, [{ owner: 'w', epoch: 'epoch', leaseExpiresAt: now + 30_000, now, operation: 'op', limit: 16 }])).not.toContain(
      'TEMP B-TREE',
    );
    expect(plan(sql.limitedRunning, ['op'])).toBe('SEARCH jobs USING COVERING INDEX jobs_limited_running (operation=?)');
    expect(plan(sql.limitedAbandoned, ['op', 1000, 16])).toBe('SEARCH jobs USING INDEX jobs_limited_running (operation=? AND lease_expires_at<?)');

    // Every claim first looks for abandoned leases: one range of jobs_leased, not every running job.
    for (const [name, statement, parameters] of [
      ['cancelAbandoned', sql.cancelAbandoned, ['{}', now, now, 1000]],
      ['failAbandoned', sql.failAbandoned, ['{}', now, now, 1000]],
      ['abandonedJobs', sql.abandonedJobs, [1000, 16]],
    ] as const) {
      expect(plan(statement, [...parameters]), name).toContain('SEARCH jobs USING INDEX jobs_leased (lease_expires_at<?)');
    }

    // Delivery claims (webhooks and notifications alike) read the due range of the pending ones, in order.
    for (const webhooks of [1, 0]) {
      const deliveries = plan(sql.claimDeliveries, ['w', now + 30_000, now, now, now, webhooks, 16]);
      expect(deliveries, `claimDeliveries (${webhooks ? 'webhooks' : 'notifications'})`).toContain(
        'SEARCH webhook_deliveries USING INDEX webhook_deliveries_due (next_attempt_at<?)',
      );
      expect(deliveries).not.toContain('TEMP B-TREE');
    }
    // A job's children (ctx.enqueue's follow-ups) are one range of the partial index that holds only jobs with a parent.
    expect(plan(sql.childrenOfJob, ['01ARZ3NDEKTSV4RRFFQ69G5FAV'])).toBe('SEARCH jobs USING INDEX jobs_children (parent_id=?)');

    // The sweep and the dashboard's chart skip from operation to operation through
    // jobs_finished_by_operation (one probe each), then read each one's range of finish times.
    const skip =
      'CO-ROUTINE finished | SETUP | SCAN CONSTANT ROW | SCALAR SUBQUERY 1 | SCAN jobs USING COVERING INDEX jobs_finished_by_operation | RECURSIVE STEP | SCAN finished | CORRELATED SCALAR SUBQUERY 3 | SEARCH jobs USING COVERING INDEX jobs_finished_by_operation (operation>?) | SCAN finished';
    expect(plan(sql.finishedOperations, [])).toBe(skip);
    expect(plan(sql.finishedJobsBefore, ['op', now, 500])).toBe('SEARCH jobs USING INDEX jobs_finished_by_operation (operation=? AND finished_at<?)');
    expect(plan(sql.finishedPerMinute, [now])).toBe(
      `${skip} | SEARCH jobs USING INDEX jobs_finished_by_operation (operation=? AND finished_at>?) | USE TEMP B-TREE FOR GROUP BY`,
    );

    // Listings newest first: each reads an index in seq order (no sort), or the running jobs (a
    // worker's few) through jobs_leased, sorted.
    const listingParameters = { principal: 'p1', operation: null, createdAfter: null, createdBefore: null, before: Number.MAX_SAFE_INTEGER, limit: 50 };
    const listingPlans = {
      every: plan(sql.listJobs.every, [listingParameters]),
      own: plan(sql.listJobs.own, [listingParameters]),
      ...Object.fromEntries(
        (['queued', 'running', 'succeeded', 'failed', 'canceled'] as const).flatMap((state) => [
          [`inState ${state}`, plan(sql.listJobs.inState[state], [listingParameters])],
          [`ownInState ${state}`, plan(sql.listJobs.ownInState[state], [listingParameters])],
        ]),
      ),
    } as Record<string, string>;
    expect(listingPlans).toEqual({
      every: 'SEARCH jobs USING INTEGER PRIMARY KEY (rowid<?)',
      own: 'SEARCH jobs USING INDEX jobs_principal (principal=? AND seq<?)',
      'inState queued': 'SEARCH jobs USING INDEX jobs_queued_newest (seq<?)',
      'ownInState queued': expect.stringMatching(
        /^SEARCH jobs USING INDEX jobs_principal \(principal=\? AND seq>\? AND seq<\?\) \| SCALAR SUBQUERY \d+ \| SEARCH jobs USING COVERING INDEX jobs_queued_newest$/,
      ),
      'inState running': 'SCAN jobs USING INDEX jobs_leased | USE TEMP B-TREE FOR ORDER BY',
      'ownInState running': 'SCAN jobs USING INDEX jobs_leased | USE TEMP B-TREE FOR ORDER BY',
      'inState succeeded': 'SEARCH jobs USING INTEGER PRIMARY KEY (rowid<?)',
      'ownInState succeeded': 'SEARCH jobs USING INDEX jobs_principal (principal=? AND seq<?)',
      'inState failed': 'SEARCH jobs USING INDEX jobs_failed (seq<?)',
      'ownInState failed': 'SEARCH jobs USING INDEX jobs_principal_failed (principal=? AND seq<?)',
      'inState canceled': 'SEARCH jobs USING INDEX jobs_canceled (seq<?)',
      'ownInState canceled': 'SEARCH jobs USING INDEX jobs_principal_canceled (principal=? AND seq<?)',
    });

    // The event log after a cursor: the events and the jobs that are their own acceptance, each a
    // range of its table's positions, merged in order (nothing sorted), with or without filters.
    for (const filters of [
      { principal: null, operation: null, types: null },
      { principal: 'p1', operation: 'op', types: '["job.queued","job.succeeded"]' },
    ]) {
      const log = plan(sql.eventLogAfter, [{ after: 10, upTo: 1000, limit: 100, ...filters }]);
      expect(log).toMatch(/^MERGE \(UNION ALL\) \| LEFT \| SEARCH e USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/);
      expect(log).toContain('SEARCH j USING INDEX sqlite_autoindex_jobs_1 (id=?)');
      expect(log).toContain('RIGHT | SEARCH j USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)');
      expect(log).not.toContain('TEMP B-TREE');
    }
  });
});
