import { runOnce, startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, formatInt, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, type LoadResult, runLoad } from '../lib/load.js';
import { BENCH_API_KEYS } from '../lib/shared.js';
import type { DrainRun } from './drain.js';

/*
 * What metrics and tracing cost when no OpenTelemetry SDK is registered: asyncfirst's SQLite
 * acceptance and drain with both on (the defaults) and with METRICS=off TRACING=off, the two
 * settings taking turns in one run (on, off; then off, on; …) so that the machine's drift hits
 * both alike. Acceptance is the demo server with its worker off, as in the acceptance part; the
 * drain is the no-op handler at one concurrency, where the worker's own cost per job, and so what
 * metrics and tracing add to it, is largest.
 *
 * Each acceptance turn is paired with the other setting's turn of the same round, and the i-th
 * drain of one setting in a round with the other's i-th: the report judges the paired ratios, so
 * that a slow stretch of the machine, which hits both turns of a pair, cancels out. Each turn also
 * measures the process's CPU time per request or job: metrics and tracing add only work on the
 * CPU, so what they cost the throughput is at most what they add to the CPU time per request
 * (all of it when the process is CPU-bound, less when it waits for the disk), and the CPU time
 * does not swing with the disk's latency, which moves the req/s of acceptance by ±20% from one
 * turn to the next on a busy machine.
 */

export type TelemetrySetting = 'on' | 'off';
export const TELEMETRY_SETTINGS: readonly TelemetrySetting[] = ['on', 'off'];

/** Set explicitly both ways, so that the benchmark's own environment cannot turn either off. */
const ENV: Record<TelemetrySetting, Record<string, string>> = {
  on: { METRICS: 'on', TRACING: 'on' },
  off: { METRICS: 'off', TRACING: 'off' },
};

export const TELEMETRY_LABELS: Record<TelemetrySetting, string> = {
  on: 'metrics and tracing on (the default, no SDK)',
  off: 'METRICS=off TRACING=off',
};

export interface TelemetryPart {
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  drainJobs: number;
  drainConcurrency: number;
  /** Drains per setting in each round (a drain lasts about a second: one is too short to be steady). */
  drainsPerRound: number;
  acceptance: Record<TelemetrySetting, LoadResult[]>;
  /** The server's CPU time (user + system, all its threads) per answered request over each measured acceptance turn, µs. */
  acceptanceCpuUs: Record<TelemetrySetting, number[]>;
  drain: Record<TelemetrySetting, DrainRun[]>;
}

export async function runTelemetry(context: BenchContext): Promise<TelemetryPart> {
  const quick = context.quick;
  const part: TelemetryPart = {
    rounds: quick ? 1 : 8,
    durationS: quick ? 1 : 6,
    warmupS: quick ? 0.3 : 2,
    connections: 50,
    drainJobs: quick ? 500 : 20_000,
    drainConcurrency: 64,
    drainsPerRound: quick ? 1 : 4,
    acceptance: { on: [], off: [] },
    acceptanceCpuUs: { on: [], off: [] },
    drain: { on: [], off: [] },
  };
  const timeoutS = quick ? 60 : 180;
  for (let round = 1; round <= part.rounds; round++) {
    const order: TelemetrySetting[] = round % 2 === 1 ? ['on', 'off'] : ['off', 'on'];
    for (const setting of order) {
      const database = freshDatabase(context, `telemetry-${setting}`);
      try {
        const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
          env: { BENCH_MODE: 'demo', BENCH_DB: database.dbPath, BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS, ...ENV[setting] },
        });
        try {
          const requests = freshKeyRequests('uuidv4');
          await runLoad({ url, requests, durationS: part.warmupS, connections: part.connections });
          const cpuBefore = await child.command<NodeJS.CpuUsage>('cpu');
          const result = await runLoad({ url, requests, durationS: part.durationS, connections: part.connections });
          const cpuAfter = await child.command<NodeJS.CpuUsage>('cpu');
          part.acceptance[setting].push(result);
          part.acceptanceCpuUs[setting].push((cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system) / Math.max(1, result.ok));
          context.log(
            `[telemetry] round ${round}/${part.rounds} acceptance, ${TELEMETRY_LABELS[setting].padEnd(44)} ${formatInt(result.rps).padStart(7)} req/s  p99 ${formatFixed(result.p99, 0)} ms  CPU ${formatFixed(part.acceptanceCpuUs[setting].at(-1), 1)} µs/request  errors ${result.errors + result.non2xx}`,
          );
        } finally {
          await child.stop();
        }
      } finally {
        database.cleanup();
      }
    }
    for (const setting of Array.from({ length: part.drainsPerRound }, () => order).flat()) {
      const message = await runOnce(
        'bench/drain/asyncfirst.ts',
        {
          args: [`--jobs=${part.drainJobs}`, `--timeout=${timeoutS}`, `--dir=${context.tmpRoot}`, `--concurrency=${part.drainConcurrency}`],
          env: ENV[setting],
        },
        (timeoutS + 60) * 1000,
      );
      const run = message as unknown as DrainRun;
      part.drain[setting].push(run);
      context.log(
        `[telemetry] round ${round}/${part.rounds} drain, ${TELEMETRY_LABELS[setting].padEnd(49)} ${formatInt(run.jobsPerSec).padStart(7)} jobs/s  CPU ${formatFixed(run.cpuUsPerJob, 1)} µs/job  (${run.drained}/${run.jobs} in ${run.seconds.toFixed(2)} s)`,
      );
    }
  }
  return part;
}
