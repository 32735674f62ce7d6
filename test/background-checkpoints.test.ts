import { statSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { JobEngine } from '../src/engine/job-engine.js';
import { SqliteDriver } from '../src/store/sqlite/sqlite-driver.js';
import type { Store } from '../src/store/store.js';
import { acceptRequest } from './driver-support.js';
import { tempDir } from './helpers.js';
import { waitFor } from './worker-test-support.js';

/*
 * The WAL is checkpointed by a thread of the driver's own (checkpointer.ts), not inside the
 * commits on the event loop: pages written by commits reach the database file although no commit
 * reached the size at which SQLite would checkpoint by itself, and the WAL stays bounded.
 */
describe('WAL checkpoints on a thread of their own', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function open() {
    const tmp = tempDir();
    cleanups.push(() => tmp.cleanup());
    const engine: Store = await JobEngine.start(new SqliteDriver(tmp.dbPath));
    cleanups.push(() => engine.close());
    return { engine, dbPath: tmp.dbPath };
  }

  it('copies committed pages into the database file soon after the commits, though the WAL is far below the automatic checkpoint', async () => {
    const { engine, dbPath } = await open();
    const fileBefore = statSync(dbPath).size;
    // About 2,000 jobs: a few thousand WAL pages, under the 10,000 of the backstop.
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 100 }, (_, index) => engine.acceptJob(acceptRequest(`k-${batch}-${index}`))));
    }
    await waitFor('the database file to grow with the checkpointed pages', () => (statSync(dbPath).size > fileBefore ? true : undefined), 5000);
    expect(statSync(dbPath).size).toBeGreaterThan(fileBefore + 100 * 1024);
  });

  it('keeps the WAL bounded under a steady writer', async () => {
    const { engine, dbPath } = await open();
    const deadline = performance.now() + 3000;
    let largest = 0;
    for (let batch = 0; performance.now() < deadline; batch++) {
      await Promise.all(Array.from({ length: 50 }, (_, index) => engine.acceptJob(acceptRequest(`k-${batch}-${index}`))));
      largest = Math.max(largest, statSync(`${dbPath}-wal`).size);
    }
    // The backstop is 10,000 pages of 4 KiB (plus frame headers); the thread normally keeps it far below.
    expect(largest).toBeLessThan(10_000 * 4120 + 1024 * 1024);
  });
});
