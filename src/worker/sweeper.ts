import type { FastifyBaseLogger } from 'fastify';
import type { Store } from '../store/store.js';

/**
 * Deletes expired idempotency records and finished jobs past their retention on a timer,
 * so the database file does not grow without bound.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly options: {
      intervalMs: number;
      /** JOB_RETENTION_MS: how long a finished job is kept, unless its operation has its own. */
      jobRetentionMs: number;
      /** The operations with their own retention (x-asyncfirst retention.jobs), in ms. */
      jobRetentionByOperation?: ReadonlyMap<string, number>;
      log: FastifyBaseLogger;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweepNow(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One sweep; returns how many rows it deleted. */
  async sweepNow(now: number = Date.now()): Promise<{ keys: number; jobs: number }> {
    try {
      const byOperation = new Map<string, number>();
      for (const [operation, retentionMs] of this.options.jobRetentionByOperation ?? []) byOperation.set(operation, now - retentionMs);
      const deleted = await this.store.sweep(now, now - this.options.jobRetentionMs, byOperation);
      // Reading the counts folds what the store keeps of them (on PostgreSQL a delta per changing
      // statement), so they stay small where no dashboard or scrape reads them.
      await this.store.countJobs();
      if (deleted.keys + deleted.jobs > 0) this.options.log.info(deleted, 'swept expired idempotency records and finished jobs');
      return deleted;
    } catch (error) {
      this.options.log.warn({ err: error }, 'sweep failed; will try again');
      return { keys: 0, jobs: 0 };
    }
  }
}
