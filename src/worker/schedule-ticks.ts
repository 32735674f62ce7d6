import type { Cron } from 'croner';

/** Ticks taken in one transaction at most; a longer backfill is taken a batch after another. */
export const MAX_TICKS_PER_TAKE = 500;
/** Skipped ticks counted at most (an every-second schedule down for a month has millions). */
export const MAX_SKIPPED_COUNTED = 10_000;

/** What a schedule owes at `now`, after its last tick. */
export interface TickPlan {
  /** The ticks to run, oldest first (those inside the window). */
  run: number[];
  /** Missed ticks older than the window (at most MAX_SKIPPED_COUNTED: `skippedAtLeast` then). */
  skipped: number;
  skippedAtLeast: boolean;
  /** The schedule's last tick once this plan is taken (its last tick unchanged: nothing is due). */
  upTo: number;
}

/**
 * The ticks due after `lastTick` up to `now`: those at most `windowMs` old run, older ones are
 * skipped (counted); the run list stops at MAX_TICKS_PER_TAKE, leaving the rest to the next take.
 */
export function planTicks(cron: Cron, lastTick: number, now: number, windowMs: number): TickPlan {
  const windowStart = now - windowMs;
  let skipped = 0;
  let upTo = lastTick;
  let next = cron.nextRun(new Date(lastTick));
  while (next && next.getTime() < windowStart && next.getTime() <= now) {
    upTo = next.getTime();
    if (++skipped >= MAX_SKIPPED_COUNTED) {
      // Too many to count: jump to the window's start (every tick before it is skipped either way).
      const before = cron.previousRuns(1, new Date(windowStart))[0];
      if (before && before.getTime() > upTo && before.getTime() < windowStart) upTo = before.getTime();
      return { ...runFrom(cron, cron.nextRun(new Date(Math.max(upTo, windowStart - 1))), upTo, now), skipped, skippedAtLeast: true };
    }
    next = cron.nextRun(next);
  }
  return { ...runFrom(cron, next, upTo, now), skipped, skippedAtLeast: false };
}

function runFrom(cron: Cron, first: Date | null, upTo: number, now: number): { run: number[]; upTo: number } {
  const run: number[] = [];
  let next = first;
  while (next && next.getTime() <= now && run.length < MAX_TICKS_PER_TAKE) {
    run.push(next.getTime());
    upTo = next.getTime();
    next = cron.nextRun(next);
  }
  return { run, upTo };
}
