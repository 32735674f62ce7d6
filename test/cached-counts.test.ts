import { describe, expect, it } from 'vitest';
import { CachedCounts } from '../src/engine/cached-counts.js';
import type { JobCount } from '../src/store/store.js';

describe('CachedCounts', () => {
  it('reads the store once per max age, and concurrent readers share the read in flight', async () => {
    let now = 1000;
    let reads = 0;
    let release: (() => void) | undefined;
    const read = async (): Promise<JobCount[]> => {
      reads++;
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      return [{ operation: 'op', status: 'queued', count: reads }];
    };
    const counts = new CachedCounts(read, 2000, () => now);

    const together = [counts.current(), counts.current(), counts.current()];
    expect(reads).toBe(1);
    release?.();
    const [a, b, c] = await Promise.all(together);
    expect(a).toEqual({ counts: [{ operation: 'op', status: 'queued', count: 1 }], asOf: 1000 });
    expect(b).toBe(a);
    expect(c).toBe(a);

    now = 2999;
    expect(await counts.current()).toBe(a);
    expect(reads).toBe(1);

    now = 3000;
    const next = counts.current();
    expect(reads).toBe(2);
    release?.();
    expect(await next).toEqual({ counts: [{ operation: 'op', status: 'queued', count: 2 }], asOf: 3000 });
  });

  it('lets a failed read fail its readers and tries again on the next call', async () => {
    let fail = true;
    const counts = new CachedCounts(async () => {
      if (fail) throw new Error('store unavailable');
      return [];
    }, 2000);
    await expect(counts.current()).rejects.toThrow('store unavailable');
    fail = false;
    expect((await counts.current()).counts).toEqual([]);
  });
});
