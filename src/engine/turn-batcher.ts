/** One item's outcome in a batch: its value, or the error that item alone met. */
export type Settled<Result> = { ok: true; value: Result } | { ok: false; error: unknown };

/** Turns Promise.allSettled's outcomes into Settled values. */
export function settledOf<Result>(outcomes: PromiseSettledResult<Result>[]): Settled<Result>[] {
  return outcomes.map((outcome) => (outcome.status === 'fulfilled' ? { ok: true, value: outcome.value } : { ok: false, error: outcome.reason }));
}

/**
 * Collects the calls made in one event-loop turn and hands them to the driver as one batch: on
 * SQLite one transaction and one fsync, on PostgreSQL one multi-row statement, so neither pays
 * per item what it can pay per batch. Each call still gets its own result (or error).
 */
export class TurnBatcher<Item, Result> {
  private pending: Array<{ item: Item; resolve: (value: Result) => void; reject: (error: unknown) => void }> = [];
  private scheduled = false;

  constructor(private readonly runBatch: (items: Item[]) => Promise<Settled<Result>[]>) {}

  add(item: Item): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    this.runBatch(batch.map((entry) => entry.item)).then(
      (outcomes) =>
        batch.forEach((entry, index) => {
          const outcome = outcomes[index];
          if (outcome?.ok) entry.resolve(outcome.value);
          else entry.reject(outcome ? outcome.error : new Error('the batch returned no outcome for this item'));
        }),
      (error: unknown) => {
        for (const entry of batch) entry.reject(error);
      },
    );
  }
}
