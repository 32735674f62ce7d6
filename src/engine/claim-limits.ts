import type { LimitState } from '../store/driver.js';
import type { ClaimPolicy } from '../store/store.js';

/*
 * The rules of an operation's concurrency and rate limit, applied in the claim under the lock of
 * the operation's limit row (the drivers only find the state and write what these return). The
 * rate limit is a sliding window: no `perMs` span holds more than `max` starts. Its log is the
 * latest starts, at most `max` of them, on the clock of the driver's `now`.
 */

/** How many of the operation's jobs a claim wanting `wanted` may start: takeovers (already counted as running) and new starts. */
export function limitedRoom(policy: ClaimPolicy, state: LimitState, wanted: number): { takeOver: number; start: number } {
  let starts = wanted;
  if (policy.rateLimit) starts = Math.min(starts, policy.rateLimit.max - startsInWindow(policy.rateLimit.perMs, state));
  const takeOver = Math.max(0, starts);
  const start = policy.concurrency === undefined ? takeOver : Math.max(0, Math.min(takeOver, policy.concurrency - state.running));
  return { takeOver, start };
}

/** The rate limit's log after `started` more starts at `state.now`; undefined for an operation with no rate limit. */
export function startsAfter(policy: ClaimPolicy, state: LimitState, started: number): number[] | undefined {
  if (!policy.rateLimit) return undefined;
  const { perMs, max } = policy.rateLimit;
  const kept = state.recentStarts.filter((at) => at > state.now - perMs);
  for (let i = 0; i < started; i++) kept.push(state.now);
  return kept.slice(-max);
}

function startsInWindow(perMs: number, state: LimitState): number {
  let count = 0;
  for (const at of state.recentStarts) if (at > state.now - perMs) count++;
  return count;
}

/** True when the policy limits its operation's attempts (its jobs then go through the limited claim). */
export function isLimited(policy: ClaimPolicy | undefined): boolean {
  return policy !== undefined && (policy.concurrency !== undefined || policy.rateLimit !== undefined);
}
