import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';

import { JobEngine } from '../src/engine/job-engine.js';
import { GroupCommit } from '../src/store/sqlite/group-commit.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { Sync } from '../src/store/sqlite/wal-sync.js';
import { type Store, StoreUnavailableError } from '../src/store/store.js';
import { acceptRequest } from './driver-support.js';
import { tempDir } from './helpers.js';

/*
 * SQLite commits with synchronous=NORMAL and the WAL is synced afterwards, off the event loop
 * (wal-sync.ts): no write may be acknowledged before the sync that followed its COMMIT has
 * finished, groups keep committing while a sync runs, and a failed sync fails the store for good.
 */

/** A sync that finishes only when the test says so. */
function heldSync() {
  const waiting: ((error: Error | null) => void)[] = [];
  const sync: Sync = (done) => {
    waiting.push(done);
  };
  return {
    sync,
    started: () => waiting.length,
    finish(error: Error | null = null) {
      const done = waiting.shift();
      if (!done) throw new Error('no sync is running');
      done(error);
    },
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Whether each promise has settled yet. */
function tracked<T>(promise: Promise<T>) {
  const state = { settled: false, value: undefined as T | undefined, error: undefined as unknown, promise };
  promise.then(
    (value) => {
      state.settled = true;
      state.value = value;
    },
    (error: unknown) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

describe('group commit with the sync off the event loop', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  function setup() {
    const tmp = tempDir();
    const db = new Database(tmp.dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE things (id TEXT PRIMARY KEY)');
    const reader = new Database(tmp.dbPath, { readonly: true });
    cleanups.push(() => {
      reader.close();
      db.close();
      tmp.cleanup();
    });
    const insert = db.prepare('INSERT INTO things (id) VALUES (?)');
    const held = heldSync();
    let announced = 0;
    const writes = new GroupCommit(db, {
      committed: () => () => {
        announced++;
      },
      isDatabaseError: () => false,
      isBusy: () => false,
      busyTimeoutMs: 100,
      verifyDurable: () => {},
      sync: held.sync,
      syncFailed: (error) => new StoreUnavailableError(`sync failed: ${error.message}`),
    });
    const committed = () => (reader.prepare('SELECT id FROM things ORDER BY id').all() as { id: string }[]).map((row) => row.id);
    return { writes, insert, held, committed, announced: () => announced };
  }

  it('acknowledges a write only after the sync begun after its COMMIT, while later groups commit and share the next sync', async () => {
    const { writes, insert, held, committed, announced } = setup();
    const first = tracked(writes.run(() => insert.run('a')));
    await turn();
    // Committed (another connection reads it) and being synced, but not acknowledged.
    expect(committed()).toEqual(['a']);
    expect(held.started()).toBe(1);
    expect(first.settled).toBe(false);
    expect(announced()).toBe(0);

    // Two more groups commit while the first sync runs; neither starts a sync of its own.
    const second = tracked(writes.run(() => insert.run('b')));
    await turn();
    const third = tracked(writes.run(() => insert.run('c')));
    await turn();
    expect(committed()).toEqual(['a', 'b', 'c']);
    expect(held.started()).toBe(1);

    held.finish();
    await turn();
    expect(first.settled).toBe(true);
    expect(first.error).toBeUndefined();
    // The first sync began before b and c committed: they wait for the next one, which began at once.
    expect(second.settled).toBe(false);
    expect(third.settled).toBe(false);
    expect(held.started()).toBe(1);
    expect(announced()).toBe(1);

    held.finish();
    await turn();
    expect(second.settled && third.settled).toBe(true);
    expect(held.started()).toBe(0);
    await writes.whenSynced();
  });

  it('settles a write asked to settle at COMMIT before the sync, while the other writes of its group, and its announcement, wait for the sync', async () => {
    const { writes, insert, held, committed, announced } = setup();
    const claimLike = tracked(writes.run(() => insert.run('a'), true));
    const acceptance = tracked(writes.run(() => insert.run('b')));
    await turn();
    expect(committed()).toEqual(['a', 'b']);
    expect(held.started()).toBe(1);
    expect(claimLike.settled).toBe(true);
    expect(claimLike.error).toBeUndefined();
    expect(acceptance.settled).toBe(false);
    expect(announced()).toBe(0);

    // A group of such writes alone still announces only once synced.
    held.finish();
    await turn();
    expect(acceptance.settled).toBe(true);
    const alone = tracked(writes.run(() => insert.run('c'), true));
    await turn();
    expect(alone.settled).toBe(true);
    expect(announced()).toBe(1);
    held.finish();
    await turn();
    expect(announced()).toBe(2);
    await writes.whenSynced();
  });

  it('fails the writes a failed sync covered, those committed during it, and every write after it, and writes nothing more', async () => {
    const { writes, insert, held, committed } = setup();
    const first = tracked(writes.run(() => insert.run('a')));
    await turn();
    const during = tracked(writes.run(() => insert.run('b')));
    await turn();
    held.finish(new Error('EIO: i/o error, fdatasync'));
    await turn();
    expect(first.error).toBeInstanceOf(StoreUnavailableError);
    expect(String(first.error)).toMatch(/sync failed: EIO/);
    // b committed while the failing sync ran; a later sync that succeeds could not vouch for it.
    expect(during.error).toBe(first.error);
    expect(held.started()).toBe(0);

    const after = tracked(writes.run(() => insert.run('c')));
    await turn();
    expect(after.error).toBe(first.error);
    expect(committed()).toEqual(['a', 'b']);
    await writes.whenSynced();
  });

  it('lets a closing driver wait for the sync in flight', async () => {
    const { writes, insert, held } = setup();
    const write = tracked(writes.run(() => insert.run('a')));
    await turn();
    const synced = tracked(writes.whenSynced());
    await turn();
    expect(synced.settled).toBe(false);
    held.finish();
    await turn();
    expect(write.settled && synced.settled).toBe(true);
  });
});

describe('the SQLite driver syncing its WAL', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  async function open(wrap: (sync: Sync) => Sync) {
    const tmp = tempDir();
    const engine: Store = await JobEngine.start(new SqliteDriver(tmp.dbPath, { wrapSync: wrap }));
    const faults: string[] = [];
    engine.onFault((fault) => faults.push(fault.kind));
    cleanups.push(async () => {
      await engine.close();
      tmp.cleanup();
    });
    return { engine, faults };
  }

  it('answers an acceptance only once the real fdatasync of the WAL has finished', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    const { engine } = await open((sync) => (done) => {
      started.push(performance.now());
      sync((error) => {
        finished.push(performance.now());
        done(error);
      });
    });
    const syncsBefore = finished.length;
    await engine.acceptJob(acceptRequest('k1'));
    const answeredAt = performance.now();
    expect(finished.length).toBeGreaterThan(syncsBefore);
    expect(finished.at(-1) as number).toBeLessThanOrEqual(answeredAt);
  });

  it("hands a claim to the worker at COMMIT, while the claim's sync runs, and announces each group's changes only after its own sync", async () => {
    let hold = false;
    const held = heldSync();
    const { engine } = await open((sync) => (done) => (hold ? held.sync(done) : sync(done)));
    const { jobId } = await engine.acceptJob(acceptRequest('k1'));
    const changed: string[] = [];
    engine.onJobsChanged((ids) => changed.push(...ids));
    hold = true;
    const claimed = await engine.claimJobs({ owner: 'w1', limit: 5, now: Date.now(), leaseMs: 30_000 });
    expect(claimed.map((job) => job.id)).toEqual([jobId]);
    expect(held.started()).toBe(1);
    expect(changed).toEqual([]);
    // An outcome written now waits for a sync begun after its own COMMIT (which covers the claim's too).
    const finished = tracked(engine.finishJob(jobId, claimed[0]?.fence ?? 0, { status: 'succeeded', result: '{}' }, Date.now()));
    await turn();
    expect(finished.settled).toBe(false);
    // The claim's sync ends: the claim is announced, and the finish, committed during that sync, is not.
    held.finish();
    await turn();
    expect(changed).toEqual([jobId]);
    expect(held.started()).toBe(1);
    expect(finished.settled).toBe(false);
    hold = false;
    held.finish();
    await turn();
    expect(changed).toEqual([jobId, jobId]);
    await expect(finished.promise).resolves.toBe(true);
  });

  it('fails every write for good once a sync fails, reports it, and is no longer ready', async () => {
    let failNext = false;
    const { engine, faults } = await open((sync) => (done) => {
      if (failNext) done(new Error('EIO: i/o error, fdatasync'));
      else sync(done);
    });
    await engine.acceptJob(acceptRequest('k1'));
    failNext = true;
    await expect(engine.acceptJob(acceptRequest('k2'))).rejects.toThrow(/could not be synced to disk \(EIO/);
    expect(faults).toEqual(['sync-failed']);
    failNext = false;
    // The disk answers again, but what it dropped is not known: writes stay refused until a restart.
    await expect(engine.acceptJob(acceptRequest('k3'))).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(engine.checkReady()).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
