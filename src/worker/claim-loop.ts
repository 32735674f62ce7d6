/**
 * The loop shared by the job worker and the webhook dispatcher: whenever woken (a commit in this
 * process, a timer, a finished task, the poll interval), claim up to the free capacity, start
 * what was claimed, and claim again while full batches keep coming. Never two claims at once.
 */
export class ClaimLoop<Item> {
  private filling = false;
  private fillAgain = false;
  private scheduled = false;
  private started = false;
  /** The fill under way (resolved when none is). */
  private filled: Promise<void> = Promise.resolve();
  private stopped = false;
  private pollTimer: NodeJS.Timeout | undefined;
  /** performance.now() when the fill under way began. */
  private fillStartedAt = 0;
  /** The last claim's error, until a claim succeeds again. */
  private lastError: unknown;

  constructor(
    private readonly options: {
      /** How many more items may start now. */
      free: () => number;
      /** Claims up to `limit` items. */
      claim: (limit: number) => Promise<Item[]>;
      /** Starts one claimed item (without waiting for it). */
      start: (item: Item) => void;
      pollIntervalMs: number;
      onError: (error: unknown) => void;
    },
  ) {}

  /** Starts polling, and claims what is due now. */
  start(): void {
    this.started = true;
    this.pollTimer = setInterval(() => this.notify(), this.options.pollIntervalMs);
    this.notify();
  }

  /**
   * Something may be due: claim up to the free capacity at the end of this event-loop turn, so
   * the wake-ups of one turn (a group of jobs finishing together) make one claim, not one each.
   */
  notify(): void {
    if (!this.started || this.stopped) return;
    if (this.filling) {
      this.fillAgain = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.stopped) return;
      if (this.filling) this.fillAgain = true;
      else this.filled = this.fill();
    });
  }

  /**
   * Stops claiming for good; resolves once a claim that was under way has returned and its items
   * have been started, so the caller's view of what runs is complete.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    await this.filled;
  }

  /**
   * Why this loop cannot be counted on to start due work (its last claim failed, or a claim has
   * not returned for `stuckAfterMs`), or undefined when it can: readiness reports it.
   */
  problem(stuckAfterMs: number): string | undefined {
    if (!this.started || this.stopped) return undefined;
    if (this.filling && performance.now() - this.fillStartedAt > stuckAfterMs) {
      return `a claim has not returned for ${Math.round((performance.now() - this.fillStartedAt) / 1000)} s`;
    }
    if (this.lastError !== undefined) return `the last claim failed: ${this.lastError instanceof Error ? this.lastError.message : String(this.lastError)}`;
    return undefined;
  }

  private async fill(): Promise<void> {
    this.filling = true;
    this.fillStartedAt = performance.now();
    try {
      do {
        this.fillAgain = false;
        const free = this.options.free();
        if (free <= 0 || this.stopped) break;
        const items = await this.options.claim(free);
        this.lastError = undefined;
        for (const item of items) this.options.start(item);
        if (items.length === free) this.fillAgain = true;
      } while (this.fillAgain);
    } catch (error) {
      this.lastError = error;
      this.options.onError(error);
    } finally {
      this.filling = false;
    }
  }
}
