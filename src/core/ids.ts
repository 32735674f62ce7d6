import { randomFillSync } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

// Random bytes are drawn from the CSPRNG 4 KiB at a time: one crypto call per 409 ids instead of
// one each (the benchmark's profile showed per-id calls at ~4% of the acceptance path).
const pool = Buffer.alloc(4096);
let offset = pool.length;

function randomBytes10(): Buffer {
  if (offset + 10 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const bytes = pool.subarray(offset, offset + 10);
  offset += 10;
  return bytes;
}

/**
 * A new job id in ULID form: 48 bits of millisecond time, then 80 fresh random bits from the
 * CSPRNG, in Crockford base32 (26 characters). Ids sort by their millisecond; within one
 * millisecond their order is random. Deliberately not a "monotonic" ULID: those increment the
 * random part within a millisecond, so a fresh id ±1 would name another client's job.
 */
export function newJobId(now: number = Date.now()): string {
  let text = '';
  let time = Math.floor(now);
  for (let i = 0; i < 10; i++) {
    text = CROCKFORD[time % 32] + text;
    time = Math.floor(time / 32);
  }
  const bytes = randomBytes10();
  // 80 bits = 16 characters of 5 bits, read as two 40-bit halves (exact in a double).
  for (let half = 0; half < 2; half++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) bits = bits * 256 + (bytes[half * 5 + i] as number);
    let chunk = '';
    for (let i = 0; i < 8; i++) {
      chunk = CROCKFORD[bits % 32] + chunk;
      bits = Math.floor(bits / 32);
    }
    text += chunk;
  }
  return text;
}

/** The smallest job id made at or after `ms`: its time part, then the lowest random part (ids sort by their millisecond). */
export function firstJobIdAt(ms: number): string {
  return newJobId(ms).slice(0, 10) + '0'.repeat(16);
}

/** The shape of a job id; anything else is answered 404 without touching the store. */
export const JOB_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;
