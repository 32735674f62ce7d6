import { closeSync, copyFileSync, fsyncSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, formatInt, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, getJobRequests, type LoadResult, runLoad } from '../lib/load.js';
import { fileStats, prefill, sampleJobIds } from '../lib/prefill.js';
import { BENCH_API_KEYS } from '../lib/shared.js';
import { median } from '../lib/stats.js';

/*
 * Scale: the acceptance run, and GET /jobs/{id} for random stored jobs, against files that
 * already hold 0, 10,000, 100,000 and 1,000,000 finished jobs (each with its idempotency record).
 * Each size is prefilled once; every turn copies it afresh (and flushes the copy to disk, so
 * write-back of the copy does not compete with the measured fsyncs), and the sizes take turns
 * for several rounds like the acceptance targets, each round starting at the next size. Bytes on disk per job = (file + WAL) / jobs
 * after a turn. Each turn runs the acceptance load twice, with random UUIDv4 keys and then with
 * time-ordered UUIDv7 keys (what asyncfirst's client sends); the prefilled records have v4 keys.
 */

export interface ScaleLevel {
  prefilled: number;
  prefillSeconds: number;
  bytesPerJobPrefilled: number;
  /** Medians over the rounds. */
  accept: LoadResult;
  get: LoadResult;
  acceptRuns: number[];
  /** The same with UUIDv7 keys. */
  acceptV7: LoadResult;
  acceptV7Runs: number[];
  jobsAfter: number;
  bytesAfter: number;
  bytesPerJob: number;
  /** Acceptance req/s over the empty file's (medians), for v4 and for v7 keys. */
  ratio: number;
  ratioV7: number;
}

export interface ScalePart {
  rounds: number;
  durationS: number;
  connections: number;
  levels: ScaleLevel[];
}

/** The run with the median req/s (so its latencies belong to the same run). */
function medianRun(runs: LoadResult[]): LoadResult {
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)] as LoadResult;
}

function flushFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function copyDurably(from: string, to: string): void {
  copyFileSync(from, to);
  flushFile(to);
}

export async function runScale(context: BenchContext): Promise<ScalePart> {
  const sizes = context.quick ? [10_000] : [0, 10_000, 100_000, 1_000_000];
  const rounds = context.quick ? 1 : 3;
  const durationS = context.quick ? 1 : 6;
  const getDurationS = context.quick ? 1 : 5;
  const warmupS = context.quick ? 0.3 : 1;
  const connections = 50;
  const pristine = freshDatabase(context, 'scale-pristine');
  try {
    const prepared: Array<{ size: number; path: string; prefillSeconds: number; bytes: number }> = [];
    for (const size of sizes) {
      const path = join(pristine.dir, `jobs-${size}.db`);
      const prefillSeconds = await prefill(path, size);
      const { bytes } = fileStats(path);
      flushFile(path); // the prefill wrote with synchronous=OFF: get it onto the disk before measuring
      prepared.push({ size, path, prefillSeconds, bytes });
      if (size > 0) context.log(`[scale] ${formatInt(size)} jobs prefilled in ${prefillSeconds.toFixed(1)} s (${formatInt(bytes / size)} bytes/job)`);
    }
    const accepts = new Map<number, LoadResult[]>(sizes.map((size) => [size, []]));
    const acceptsV7 = new Map<number, LoadResult[]>(sizes.map((size) => [size, []]));
    const gets = new Map<number, LoadResult[]>(sizes.map((size) => [size, []]));
    const after = new Map<number, { jobs: number; bytes: number }>();
    for (let round = 1; round <= rounds; round++) {
      // Each round starts at another size, so that no size always follows the same one.
      const order = prepared.map((_, index) => prepared[(index + round - 1) % prepared.length] as (typeof prepared)[number]);
      for (const level of order) {
        const work = freshDatabase(context, `scale-${level.size}`);
        try {
          copyDurably(level.path, work.dbPath);
          const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
            env: { BENCH_MODE: 'demo', BENCH_DB: work.dbPath, BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS },
          });
          try {
            await runLoad({ url, requests: freshKeyRequests(), durationS: warmupS, connections });
            const accept = await runLoad({ url, requests: freshKeyRequests('uuidv4'), durationS, connections });
            await runLoad({ url, requests: freshKeyRequests('uuidv7'), durationS: warmupS, connections });
            const acceptV7 = await runLoad({ url, requests: freshKeyRequests('uuidv7'), durationS, connections });
            const ids = sampleJobIds(work.dbPath, 2000);
            if (ids.length === 0) throw new Error('no job to GET');
            await runLoad({ url, requests: getJobRequests(ids), durationS: warmupS, connections });
            const get = await runLoad({ url, requests: getJobRequests(ids), durationS: getDurationS, connections });
            accepts.get(level.size)?.push(accept);
            acceptsV7.get(level.size)?.push(acceptV7);
            gets.get(level.size)?.push(get);
            const stats = fileStats(work.dbPath);
            after.set(level.size, stats);
            context.log(
              `[scale] round ${round}/${rounds} ${formatInt(level.size).padStart(9)} jobs: POST ${formatInt(accept.rps)} req/s p99 ${formatFixed(accept.p99, 0)} ms (UUIDv7 keys ${formatInt(acceptV7.rps)} req/s), GET ${formatInt(get.rps)} req/s p50 ${formatFixed(get.p50, 0)} ms p99 ${formatFixed(get.p99, 0)} ms, ${formatInt(stats.bytes / Math.max(1, stats.jobs))} bytes/job`,
            );
          } finally {
            await child.stop();
          }
        } finally {
          work.cleanup();
        }
      }
    }
    const levels: ScaleLevel[] = prepared.map((level) => {
      const acceptRuns = accepts.get(level.size) ?? [];
      const acceptV7Runs = acceptsV7.get(level.size) ?? [];
      const stats = after.get(level.size) ?? { jobs: 0, bytes: 0 };
      return {
        prefilled: level.size,
        prefillSeconds: level.prefillSeconds,
        bytesPerJobPrefilled: level.size > 0 ? level.bytes / level.size : Number.NaN,
        accept: medianRun(acceptRuns),
        get: medianRun(gets.get(level.size) ?? []),
        acceptRuns: acceptRuns.map((run) => run.rps),
        acceptV7: medianRun(acceptV7Runs),
        acceptV7Runs: acceptV7Runs.map((run) => run.rps),
        jobsAfter: stats.jobs,
        bytesAfter: stats.bytes,
        bytesPerJob: stats.bytes / Math.max(1, stats.jobs),
        ratio: Number.NaN,
        ratioV7: Number.NaN,
      };
    });
    const empty = levels.find((level) => level.prefilled === 0);
    const emptyRps = empty ? median(empty.acceptRuns) : Number.NaN;
    const emptyV7Rps = empty ? median(empty.acceptV7Runs) : Number.NaN;
    for (const level of levels) {
      level.ratio = median(level.acceptRuns) / emptyRps;
      level.ratioV7 = median(level.acceptV7Runs) / emptyV7Rps;
    }
    return { rounds, durationS, connections, levels };
  } finally {
    pristine.cleanup();
  }
}
