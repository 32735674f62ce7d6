import { monotonicFactory } from 'ulid';

const nextUlid = monotonicFactory();

/**
 * A new job id: a ULID — 48 bits of millisecond time then 80 random bits (crypto-grade),
 * so ids are unguessable and sort by creation time (monotonic within one process).
 */
export function newJobId(now: number = Date.now()): string {
  return nextUlid(now);
}

/** The shape of a job id; anything else is answered 404 without touching the store. */
export const JOB_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;
