import { DEFAULT_CONFIG } from '../../src/config.js';
import { startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, freshDatabase } from '../lib/context.js';
import { type PacedResult, runPaced } from '../lib/paced.js';
import type { DatabaseWindow } from '../lib/postgres.js';
import { BENCH_API_KEYS } from '../lib/shared.js';
import type { Summary } from '../lib/stats.js';

/*
 * 202-to-handler-start: an asyncfirst child with the worker on and a no-op handler, under a
 * steady, evenly paced request rate (see lib/paced.ts for why not autocannon's overallRate). Inside the child, per job id: when the 202 was sent (Fastify onResponse),
 * when the request arrived (onRequest) and when the handler started (performance.now()).
 * Run on an SQLite file and on PostgreSQL (a schema of the child's own), with the default
 * worker concurrency; on PostgreSQL also with 50 concurrent jobs, which tells a delay per job
 * from a backlog of a worker that cannot keep up.
 */

export interface LatencyPart {
  database: 'sqlite' | 'postgres';
  rate: number;
  durationS: number;
  workerConcurrency: number;
  load: PacedResult;
  accepted: number;
  started: number;
  /** Handler start minus 202 sent, ms (negative: the handler started before the 202 left). */
  fromResponse: Summary;
  /** Handler start minus request arrival, ms. */
  fromArrival: Summary;
  handlerBeforeResponse: number;
  /** p50 of 202 → handler start over the first and the last third of the jobs, ms. */
  p50FirstThird: number;
  p50LastThird: number;
  /** On PostgreSQL: the round trips the child sent over the measured run, and what they cost (see lib/postgres.ts). */
  cost?: DatabaseWindow;
}

/** asyncfirst's default WORKER_CONCURRENCY, at which the goal is judged (as users run it). */
export const DEFAULT_WORKER_CONCURRENCY = DEFAULT_CONFIG.workerConcurrency;

export async function runLatency(
  context: BenchContext,
  on: LatencyPart['database'] = 'sqlite',
  workerConcurrency = DEFAULT_WORKER_CONCURRENCY,
): Promise<LatencyPart> {
  const rate = context.quick ? 200 : 500;
  const durationS = context.quick ? 2 : 15;
  const database = freshDatabase(context, 'latency');
  const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
    env: {
      BENCH_MODE: 'latency',
      BENCH_DB: on === 'postgres' ? 'postgres' : database.dbPath,
      BENCH_WORKER_CONCURRENCY: String(workerConcurrency),
      API_KEYS: BENCH_API_KEYS,
    },
  });
  try {
    // A short warm-up first (JIT, SQLite page cache), then the measured, evenly paced run.
    await runPaced({ url, rate, durationS: context.quick ? 0.5 : 2 });
    await child.command('reset');
    if (on === 'postgres') await child.command('db-start');
    const load = await runPaced({ url, rate, durationS });
    const database = on === 'postgres' ? await child.command<DatabaseWindow>('db-stop') : undefined;
    await new Promise((resolve) => setTimeout(resolve, 500)); // the last jobs start
    const stats = await child.command<Omit<LatencyPart, 'database' | 'rate' | 'durationS' | 'workerConcurrency' | 'load'>>('latency');
    const part: LatencyPart = { database: on, rate, durationS, workerConcurrency, load, ...stats, ...(database ? { cost: database } : {}) };
    context.log(
      `[latency] ${on === 'postgres' ? 'PostgreSQL' : 'SQLite'}, worker concurrency ${workerConcurrency}, ${rate} req/s for ${durationS} s: 202 → handler start p50 ${formatFixed(part.fromResponse.p50, 2)} ms, p99 ${formatFixed(part.fromResponse.p99, 2)} ms (${part.fromResponse.count} jobs; p50 first third ${formatFixed(part.p50FirstThird, 2)} ms, last third ${formatFixed(part.p50LastThird, 2)} ms)`,
    );
    return part;
  } finally {
    await child.stop();
    database.cleanup();
  }
}
