import { describe, expect, it } from 'vitest';
import { medianInterval } from '../bench/lib/stats.js';
import { seededRandom } from './helpers.js';

/*
 * The benchmark judges the telemetry goal (and reports its costs) on medianInterval: a
 * distribution-free confidence interval for a median from the sample's order statistics. Its
 * bounds and coverage are checked against the binomial values by hand, and its coverage against
 * samples drawn from a distribution whose median is known.
 */

describe('medianInterval', () => {
  it('gives no interval for fewer than two values, and the range with its coverage for two', () => {
    expect(medianInterval([])).toBeUndefined();
    expect(medianInterval([3])).toBeUndefined();
    // [x(1), x(2)] covers the median unless both values fall on one side of it: 1 − 2 × ¼.
    expect(medianInterval([5, 1])).toEqual({ low: 1, high: 5, coverage: 0.5 });
  });

  it('takes the order statistics the binomial gives: eight values at 90% -> the 2nd and 7th, covering 1 - 2 x 9/256', () => {
    const interval = medianInterval([8, 3, 6, 1, 7, 2, 5, 4], 0.9);
    expect(interval?.low).toBe(2);
    expect(interval?.high).toBe(7);
    expect(interval?.coverage).toBeCloseTo(1 - 18 / 256, 12);
    // At 99% the same eight values need the whole range (1 − 2/256 is the most they can give).
    expect(medianInterval([8, 3, 6, 1, 7, 2, 5, 4], 0.99)).toEqual({ low: 1, high: 8, coverage: 1 - 2 / 256 });
  });

  it('contains the true median at least as often as it promises, for samples of 8 and 32 values', () => {
    const random = seededRandom(20261208);
    for (const size of [8, 32]) {
      const trials = 4000;
      let covered = 0;
      let promised = 0;
      for (let trial = 0; trial < trials; trial++) {
        // Exponential values: skewed, with median ln 2.
        const sample = Array.from({ length: size }, () => -Math.log(1 - random()));
        const interval = medianInterval(sample, 0.9);
        if (!interval) throw new Error('no interval');
        promised = interval.coverage;
        if (interval.low <= Math.LN2 && Math.LN2 <= interval.high) covered++;
      }
      expect(promised).toBeGreaterThanOrEqual(0.9);
      // Three standard errors below the promised coverage, at most.
      const slack = 3 * Math.sqrt((promised * (1 - promised)) / trials);
      expect(covered / trials).toBeGreaterThan(promised - slack);
    }
  });
});
