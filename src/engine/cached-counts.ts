import type { JobCount } from '../store/store.js';

/** Counts as of a moment. */
export interface CountsSnapshot {
  counts: JobCount[];
  /** When the store was read (milliseconds since the epoch). */
  asOf: number;
}

/**
 * The job counts, read from the store at most once per `maxAgeMs`: every reader within that time
 * (a dashboard's polls, a metrics scrape) shares one read, and concurrent readers share one in flight.
 */
export class CachedCounts {
  private snapshot: CountsSnapshot | undefined;
  private reading: Promise<CountsSnapshot> | undefined;

  constructor(
    private readonly read: () => Promise<JobCount[]>,
    private readonly maxAgeMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The counts, no older than `maxAgeMs`. */
  current(): Promise<CountsSnapshot> {
    const snapshot = this.snapshot;
    if (snapshot && this.clock() - snapshot.asOf < this.maxAgeMs) return Promise.resolve(snapshot);
    this.reading ??= this.refresh().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async refresh(): Promise<CountsSnapshot> {
    const asOf = this.clock();
    const snapshot = { counts: await this.read(), asOf };
    this.snapshot = snapshot;
    return snapshot;
  }
}
