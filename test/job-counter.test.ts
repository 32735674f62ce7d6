import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/store/sqlite/group-commit.js';
import { JobCounter } from '../src/store/sqlite/job-counter.js';

/*
 * SQLite's job counts are summed per group commit and written before its COMMIT (job-counter.ts):
 * what a write moved counts only if that write is kept, however the group ends.
 */
describe('job counts kept by the group commit', () => {
  const dbs: Database.Database[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) db.close();
  });

  function setup() {
    const db = new Database(':memory:');
    dbs.push(db);
    db.exec(`CREATE TABLE job_counts (operation TEXT NOT NULL, status TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (operation, status)) WITHOUT ROWID;
             CREATE TABLE things (id TEXT PRIMARY KEY)`);
    const add = db.prepare(
      `INSERT INTO job_counts (operation, status, count) VALUES (?, ?, ?) ON CONFLICT (operation, status) DO UPDATE SET count = count + excluded.count`,
    );
    const insertThing = db.prepare('INSERT INTO things (id) VALUES (?)');
    const counter = new JobCounter((operation, status, delta) => add.run(operation, status, delta));
    let commits = 0;
    const writes = new GroupCommit(db, {
      committed: () => () => {
        commits++;
      },
      isDatabaseError: () => false,
      isBusy: () => false,
      busyTimeoutMs: 100,
      verifyDurable: () => {},
      groupState: counter,
    });
    const counts = () =>
      Object.fromEntries(
        (
          db.prepare('SELECT operation, status, count FROM job_counts ORDER BY operation, status').all() as Array<{
            operation: string;
            status: string;
            count: number;
          }>
        ).map((row) => [`${row.operation}/${row.status}`, row.count]),
      );
    return { writes, counter, insertThing, counts, commits: () => commits };
  }

  it('writes the sums of a group once, in its transaction, and nothing for moves that cancel out', async () => {
    const { writes, counter, counts, commits } = setup();
    await Promise.all([
      writes.run(() => counter.moved('report', undefined, 'queued')),
      writes.run(() => counter.moved('report', undefined, 'queued')),
      writes.run(() => counter.moved('report', 'queued', 'running')),
      writes.run(() => counter.moved('mail', undefined, 'queued')),
      writes.run(() => counter.moved('mail', 'queued', 'canceled')),
      writes.run(() => counter.moved('mail', 'canceled', undefined)),
    ]);
    expect(commits()).toBe(1);
    expect(counts()).toEqual({ 'report/queued': 1, 'report/running': 1 });
    await writes.run(() => counter.moved('report', 'running', 'succeeded'));
    expect(counts()).toEqual({ 'report/queued': 1, 'report/running': 0, 'report/succeeded': 1 });
  });

  it("drops the moves of a write that fails, keeps the others' of its group, and keeps nothing of a group that is rolled back", async () => {
    const { writes, counter, insertThing, counts } = setup();
    await writes.run(() => insertThing.run('taken'));
    const outcomes = await Promise.allSettled([
      writes.run(() => {
        counter.moved('report', undefined, 'queued');
        insertThing.run('a');
      }),
      writes.run(() => {
        counter.moved('report', undefined, 'queued');
        insertThing.run('taken'); // a constraint error: this write alone is rolled back
      }),
      writes.run(() => {
        counter.moved('report', undefined, 'queued');
        insertThing.run('b');
      }),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(counts()).toEqual({ 'report/queued': 2 });

    // The next group starts from nothing: no move of the failed write or of the first try of the group is left over.
    await writes.run(() => counter.moved('report', 'queued', 'running'));
    expect(counts()).toEqual({ 'report/queued': 1, 'report/running': 1 });
  });
});
