import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/*
 * WAL checkpoints off the event loop. By default SQLite checkpoints inside the COMMIT that takes
 * the WAL past 1,000 pages: it copies those pages into the database file and fsyncs both files,
 * on the thread that committed — for better-sqlite3 the event loop, which then stands still for
 * all of it (about half of the commits' time in a drain). Here a worker thread with a connection
 * of its own runs PASSIVE checkpoints on a timer: they copy what no reader still needs, take no
 * lock a writer waits for, and the committing connection only appends to the WAL.
 *
 * A PASSIVE checkpoint cannot finish while commits keep appending, and SQLite restarts the WAL
 * from its start only after one has: so the committing connection keeps its own automatic
 * checkpoint, at a larger size (BACKSTOP_PAGES), which bounds the WAL under any load. When it
 * runs, the background checkpoints have already copied nearly everything, so it costs little.
 */

/** How often the checkpoint thread checkpoints (a checkpoint with nothing to copy costs microseconds). */
const CHECKPOINT_EVERY_MS = 25;
/** The committing connection's own automatic checkpoint: past this many WAL pages (40 MiB), in its COMMIT. */
export const BACKSTOP_PAGES = 10_000;

// CommonJS, evaluated in the worker: it loads the same better-sqlite3 as the driver (by its resolved path).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true, timeout: 0 });
// NORMAL: the checkpoint syncs the WAL before copying and the database file after.
db.pragma('synchronous = NORMAL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
function run() {
  try {
    checkpoint.get();
  } catch (error) {
    // Busy or locked: another connection checkpoints, or holds what this one needs; next time.
    if (!/^SQLITE_(BUSY|LOCKED)/.test(String(error && error.code))) throw error;
  }
}
const timer = setInterval(run, workerData.everyMs);
parentPort.on('message', (message) => {
  if (message !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export class Checkpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private closed = false;

  /** `fallBack` runs if the thread fails: the committing connection then checkpoints as SQLite does by default. */
  constructor(path: string, fallBack: (error: Error) => void) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver, everyMs: CHECKPOINT_EVERY_MS } });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    // The thread keeps no process alive on its own: the driver's close() ends it.
    this.worker.unref();
    this.worker.on('error', (error) => {
      if (!this.closed) fallBack(error);
    });
  }

  /** Stops the thread and closes its connection (before the driver closes its own, the last, which checkpoints all). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Held while it ends: an unreferenced thread's exit would not keep the process waiting for it.
    this.worker.ref();
    this.worker.postMessage('close');
    await this.exited;
  }
}
