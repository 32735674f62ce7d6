import { readFileSync } from 'node:fs';

/**
 * The clock leases are measured on. Every process that opens one SQLite file runs on one
 * machine, so leases use that machine's monotonic clock (milliseconds since boot, which no
 * wall-clock jump or skewed process clock moves) tagged with the boot they were taken in: a
 * lease from an earlier boot has expired, whatever its number says. Where no boot id can be
 * read, the wall clock is used instead, tagged "wall".
 */
export interface LeaseClock {
  /** Identifies the clock: the boot id, or "wall". Leases taken on another clock have expired. */
  readonly epoch: string;
  /** Now, in milliseconds on this clock. */
  now(): number;
}

function readBootId(): string | undefined {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return id === '' ? undefined : `boot:${id}`;
  } catch {
    return undefined;
  }
}

/** The machine's lease clock (see LeaseClock). */
export function machineLeaseClock(): LeaseClock {
  const boot = readBootId();
  if (boot === undefined) return { epoch: 'wall', now: () => Date.now() };
  // process.hrtime is CLOCK_MONOTONIC on Linux: shared by every process of one boot.
  return { epoch: boot, now: () => Number(process.hrtime.bigint() / 1_000_000n) };
}
