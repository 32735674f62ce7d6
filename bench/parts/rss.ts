import { startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, type LoadResult, runLoad } from '../lib/load.js';
import { BENCH_API_KEYS } from '../lib/shared.js';
import { slope } from '../lib/stats.js';
import { DEFAULT_WORKER_CONCURRENCY } from './latency.js';

/*
 * Memory: the demo server (worker on, default concurrency) under full acceptance load for
 * several minutes; its RSS is sampled from outside every second (/proc/<pid>/status).
 */

export interface RssPart {
  durationS: number;
  warmupS: number;
  workerConcurrency: number;
  load: LoadResult;
  /** Seconds since the load started, bytes. */
  samples: Array<{ t: number; rss: number }>;
  idle: number;
  start: number;
  afterWarmup: number;
  end: number;
  max: number;
  /** Least-squares slope after warm-up, MiB per minute. */
  slopeMiBPerMin: number;
  /** End over after-warm-up, percent. */
  growthPercent: number;
}

const MiB = 2 ** 20;

export async function runRss(context: BenchContext): Promise<RssPart> {
  const durationS = context.quick ? 3 : 180;
  const warmupS = context.quick ? 1 : 30;
  const intervalMs = context.quick ? 250 : 1000;
  const workerConcurrency = DEFAULT_WORKER_CONCURRENCY;
  const database = freshDatabase(context, 'rss');
  const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
    env: { BENCH_MODE: 'demo', BENCH_DB: database.dbPath, BENCH_WORKER_CONCURRENCY: String(workerConcurrency), API_KEYS: BENCH_API_KEYS },
  });
  try {
    const idle = await child.rss();
    const samples: Array<{ t: number; rss: number }> = [];
    const began = performance.now();
    const sample = async () => {
      try {
        samples.push({ t: (performance.now() - began) / 1000, rss: await child.rss() });
      } catch {
        // a missed sample is not a result
      }
    };
    await sample();
    const timer = setInterval(() => void sample(), intervalMs);
    let load: LoadResult;
    try {
      load = await runLoad({ url, requests: freshKeyRequests(), durationS, connections: 50 });
    } finally {
      clearInterval(timer);
    }
    await sample();
    const after = samples.filter((point) => point.t >= warmupS);
    const afterWarmup = after[0]?.rss ?? Number.NaN;
    const end = samples[samples.length - 1]?.rss ?? Number.NaN;
    const part: RssPart = {
      durationS,
      warmupS,
      workerConcurrency,
      load,
      samples,
      idle,
      start: samples[0]?.rss ?? Number.NaN,
      afterWarmup,
      end,
      max: Math.max(...samples.map((point) => point.rss)),
      slopeMiBPerMin: slope(after.map((point) => ({ x: point.t / 60, y: point.rss / MiB }))),
      growthPercent: (100 * (end - afterWarmup)) / afterWarmup,
    };
    context.log(
      `[rss] ${durationS} s at ${Math.round(load.rps)} req/s: idle ${formatFixed(idle / MiB, 1)} MiB, start ${formatFixed(part.start / MiB, 1)}, after warm-up ${formatFixed(afterWarmup / MiB, 1)}, end ${formatFixed(end / MiB, 1)} MiB, slope ${formatFixed(part.slopeMiBPerMin, 2)} MiB/min`,
    );
    return part;
  } finally {
    await child.stop();
    database.cleanup();
  }
}
