import { decodeTime } from 'ulid';
import { describe, expect, it } from 'vitest';
import { JOB_ID_PATTERN, newJobId } from '../src/core/ids.js';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The 80 random bits of an id (its last 16 characters) as a BigInt. */
function randomPart(id: string): bigint {
  let value = 0n;
  for (const char of id.slice(10)) value = value * 32n + BigInt(CROCKFORD.indexOf(char));
  return value;
}

describe('job ids', () => {
  it('are ULIDs whose time part is the millisecond they were made in', () => {
    const now = Date.UTC(2026, 11, 3, 12, 0, 0, 123);
    const id = newJobId(now);
    expect(id).toMatch(JOB_ID_PATTERN);
    expect(decodeTime(id)).toBe(now);
  });

  it('made in the same millisecond are not adjacent: each has 80 fresh random bits', () => {
    const now = Date.now();
    const ids = Array.from({ length: 2000 }, () => newJobId(now));
    expect(new Set(ids).size).toBe(ids.length);
    const parts = ids.map(randomPart).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    // 2000 uniform draws from 2^80 values: the closest pair is ~2^80 / 2000^2 apart; anything
    // within 2^40 of each other would be a counter, not randomness.
    let closest = 2n ** 80n;
    for (let i = 1; i < parts.length; i++) {
      const gap = (parts[i] as bigint) - (parts[i - 1] as bigint);
      if (gap < closest) closest = gap;
    }
    expect(closest > 2n ** 40n).toBe(true);
    // Consecutive ids differ in their random part by far more than one step either way.
    for (let i = 1; i < ids.length; i++) {
      const step = randomPart(ids[i] as string) - randomPart(ids[i - 1] as string);
      expect(step === 1n || step === -1n).toBe(false);
    }
  });

  it('use every one of the 80 random bits', () => {
    let seen = 0n;
    for (let i = 0; i < 200; i++) seen |= randomPart(newJobId(0));
    expect(seen).toBe(2n ** 80n - 1n);
  });

  it('sort by their millisecond', () => {
    const ids = [newJobId(1_000), newJobId(1_001), newJobId(2 ** 40), newJobId(2 ** 47)];
    expect([...ids].sort()).toEqual(ids);
  });
});
