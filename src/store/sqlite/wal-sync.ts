import { closeSync, fdatasync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';

/** Makes what was written so far durable, then calls `done` (with the error, if it failed). */
export type Sync = (done: (error: Error | null) => void) => void;

/**
 * The fsync of a WAL-mode database's commits, done here instead of inside SQLite's COMMIT, so it
 * runs in libuv's thread pool instead of blocking the event loop. With synchronous=NORMAL, COMMIT
 * writes the transaction's frames into the -wal file (into the page cache) and SQLite syncs only
 * around checkpoints; an fdatasync of that file afterwards puts every commit before it on disk,
 * which is what synchronous=FULL does inside COMMIT (SQLite syncs the WAL with fdatasync too).
 * The driver checks the file's identity after every commit, so a WAL removed or replaced is never
 * synced in place of the file SQLite writes.
 */
export class WalSync {
  private fd: number | undefined;

  constructor(databasePath: string) {
    this.fd = openSync(`${databasePath}-wal`, 'r');
    // Once, for the WAL's name: a new file's directory entry survives power loss only once its folder is synced.
    const folder = openSync(dirname(databasePath), 'r');
    try {
      fsyncSync(folder);
    } finally {
      closeSync(folder);
    }
  }

  readonly sync: Sync = (done) => {
    if (this.fd === undefined) {
      done(new Error('the WAL sync was closed'));
      return;
    }
    fdatasync(this.fd, done);
  };

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
