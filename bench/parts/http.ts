import { randomUUID } from 'node:crypto';
import { type BenchChild, startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, formatInt, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, type LoadResult, postReport, runLoad, sameKeyRequests } from '../lib/load.js';
import { BENCH_API_KEYS } from '../lib/shared.js';
import { median } from '../lib/stats.js';

/*
 * Acceptance and replay: every target is a server child; autocannon runs here. Targets take
 * turns (bare, asyncfirst, replay, bullmq, pgboss, bare, …) for several rounds so that drift of
 * the machine hits all of them alike; each turn is a fresh child (fresh database, empty queue),
 * a warm-up run that is thrown away, then the measured run. The median per target is reported.
 *
 * Replay is compared with bare Fastify sent the same fixed request ("bare-same"): a new key per
 * request costs the load generator a setupRequest() and a request rebuild each time (about a
 * quarter more of its CPU here), so the two request patterns are not equally cheap to send.
 */

export type HttpTarget = 'bare' | 'bare-same' | 'asyncfirst' | 'asyncfirst-baseline' | 'asyncfirst-v7' | 'replay' | 'bullmq' | 'pgboss' | 'asyncfirst-pg';

export const HTTP_LABELS: Record<HttpTarget, string> = {
  bare: 'bare Fastify',
  'bare-same': 'bare Fastify, one key',
  asyncfirst: 'asyncfirst',
  'asyncfirst-baseline': 'asyncfirst at the baseline',
  'asyncfirst-v7': 'asyncfirst, UUIDv7 keys',
  replay: 'asyncfirst replay',
  bullmq: 'Fastify + BullMQ',
  pgboss: 'Fastify + pg-boss',
  'asyncfirst-pg': 'asyncfirst on PostgreSQL',
};

export interface HttpRow {
  target: HttpTarget;
  label: string;
  runs: LoadResult[];
  /** Medians over the rounds. */
  rps: number;
  p50: number;
  p99: number;
  /** Sums over the rounds. */
  errors: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** Median req/s and p99 over the baseline's: bare Fastify's (replay: bare Fastify's with one key; on PostgreSQL: pg-boss's). */
  ratio: number;
  p99Ratio: number;
  /** The target the ratios are taken over. */
  baseline: HttpTarget;
  skipped?: string;
}

export interface HttpPart {
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  rows: HttpRow[];
}

// The baseline commit's server runs right after the current one, so that the two take turns.
const ORDER: HttpTarget[] = ['bare', 'asyncfirst', 'asyncfirst-baseline', 'asyncfirst-v7', 'bare-same', 'replay', 'bullmq', 'pgboss', 'asyncfirst-pg'];

async function startTarget(context: BenchContext, target: HttpTarget): Promise<{ child: BenchChild; url: string; cleanup(): void }> {
  if (target === 'asyncfirst-pg') {
    // The child makes its own schema and drops it when it stops.
    const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
      env: { BENCH_MODE: 'demo', BENCH_DB: 'postgres', BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS },
    });
    return { child, url, cleanup: () => {} };
  }
  if (target === 'asyncfirst' || target === 'asyncfirst-baseline' || target === 'asyncfirst-v7' || target === 'replay') {
    const database = freshDatabase(context, target);
    try {
      const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
        env: { BENCH_MODE: 'demo', BENCH_DB: database.dbPath, BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS },
        ...(target === 'asyncfirst-baseline' ? { root: context.baseline?.root ?? '' } : {}),
      });
      return { child, url, cleanup: database.cleanup };
    } catch (error) {
      database.cleanup();
      throw error;
    }
  }
  const { child, url } = await startServer(`bench/servers/${target === 'bare-same' ? 'bare' : target}.ts`);
  return { child, url, cleanup: () => {} };
}

export async function runHttp(context: BenchContext, wanted: HttpTarget[]): Promise<HttpPart> {
  const quick = context.quick;
  const part: HttpPart = { rounds: quick ? 1 : 3, durationS: quick ? 1 : 10, warmupS: quick ? 0.3 : 2, connections: 50, rows: [] };
  const targets = ORDER.filter((target) => wanted.includes(target) || (target === 'bare-same' && wanted.includes('replay')));
  const runs = new Map<HttpTarget, LoadResult[]>(targets.map((target) => [target, []]));
  const skipped = new Map<HttpTarget, string>();
  if (context.skip.bullmq) skipped.set('bullmq', context.skip.bullmq);
  if (context.skip.pgboss) skipped.set('pgboss', context.skip.pgboss);
  if (context.skip.postgres) skipped.set('asyncfirst-pg', context.skip.postgres);
  for (const [target, reason] of skipped) if (targets.includes(target)) context.log(`[acceptance] ${HTTP_LABELS[target]} skipped: ${reason}`);

  for (let round = 1; round <= part.rounds; round++) {
    // The current code and the baseline swap places every other round (neither always follows bare Fastify).
    const order =
      round % 2 === 0 && targets.includes('asyncfirst-baseline') && targets.includes('asyncfirst')
        ? targets.map((target) => (target === 'asyncfirst' ? 'asyncfirst-baseline' : target === 'asyncfirst-baseline' ? 'asyncfirst' : target))
        : targets;
    for (const target of order) {
      if (skipped.has(target)) continue;
      let started: Awaited<ReturnType<typeof startTarget>>;
      try {
        started = await startTarget(context, target);
      } catch (error) {
        if (target === 'bullmq' || target === 'pgboss') {
          const reason = `its server did not start: ${(error as Error).message.split('\n')[0]}`;
          skipped.set(target, reason);
          context.log(`[acceptance] ${HTTP_LABELS[target]} skipped: ${reason}`);
          continue;
        }
        throw error;
      }
      try {
        let requests = freshKeyRequests(target === 'asyncfirst-v7' ? 'uuidv7' : 'uuidv4');
        if (target === 'replay' || target === 'bare-same') {
          const key = `replay-${randomUUID()}`;
          const status = await postReport(started.url, key);
          if (status !== 202) throw new Error(`the first request of the ${target} run answered ${status}, not 202`);
          requests = sameKeyRequests(key);
        }
        await runLoad({ url: started.url, requests, durationS: part.warmupS, connections: part.connections });
        const result = await runLoad({ url: started.url, requests, durationS: part.durationS, connections: part.connections });
        runs.get(target)?.push(result);
        context.log(
          `[acceptance] round ${round}/${part.rounds} ${HTTP_LABELS[target].padEnd(26)} ${formatInt(result.rps).padStart(7)} req/s  p50 ${formatFixed(result.p50, 0)} ms  p99 ${formatFixed(result.p99, 0)} ms  errors ${result.errors + result.non2xx}`,
        );
      } finally {
        await started.child.stop();
        started.cleanup();
      }
    }
  }

  const baselineOf = (target: HttpTarget): HttpTarget =>
    target === 'replay' || target === 'bare-same' ? 'bare-same' : target === 'asyncfirst-pg' && runs.get('pgboss')?.length ? 'pgboss' : 'bare';
  for (const target of targets) {
    const baseline = baselineOf(target);
    const bare = runs.get(baseline) ?? [];
    const bareRps = median(bare.map((run) => run.rps));
    const bareP99 = median(bare.map((run) => run.p99));
    const results = runs.get(target) ?? [];
    const statusCodes: Record<string, number> = {};
    for (const result of results) for (const [code, count] of Object.entries(result.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + count;
    const rps = median(results.map((run) => run.rps));
    const p99 = median(results.map((run) => run.p99));
    const reason = skipped.get(target);
    part.rows.push({
      target,
      label: target === 'asyncfirst-baseline' ? `asyncfirst at ${context.baseline?.short ?? 'the baseline'}` : HTTP_LABELS[target],
      runs: results,
      rps,
      p50: median(results.map((run) => run.p50)),
      p99,
      errors: results.reduce((total, run) => total + run.errors, 0),
      non2xx: results.reduce((total, run) => total + run.non2xx, 0),
      statusCodes,
      ratio: rps / bareRps,
      p99Ratio: p99 / bareP99,
      baseline,
      ...(reason ? { skipped: reason } : {}),
    });
  }
  return part;
}
