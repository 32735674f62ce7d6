// npm run bench [-- --quick] [--only=acceptance,replay,drain,telemetry,latency,scale,rss,profile] [--baseline=<commit>] [--out=dir] [--note="…"]
//
// Full run, all parts: prints one table, writes bench/RESULTS.md and bench/chart.svg.
// --quick: every part in a few seconds; asserts each part ran and produced numbers (not speed),
// exits non-zero otherwise; writes its report to a temporary folder, never over bench/RESULTS.md.
// --only or --out: the report goes to --out (default: a temporary folder) as well.
// Every run also saves its numbers as JSON (the path is printed); --render=<that file> [--out=dir]
// writes RESULTS.md and chart.svg from it again without measuring (after editing the report code).
// --baseline=<commit>: that commit is checked out into a temporary git worktree (sharing this
// repository's node_modules), and its SQLite acceptance server and drain child take turns with the
// current ones; the report shows both ("before and after"). The worktree is removed at the end.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addBaseline, type Baseline, removeBaseline } from './lib/baseline.js';
import { killAllChildren } from './lib/children.js';
import type { BenchContext } from './lib/context.js';
import { describeMachine, postgresSettings, probeFsync, reachable, redisSettings } from './lib/machine.js';
import { dropLeftoverSchemas } from './lib/postgres.js';
import { bullmqUnavailable } from './lib/redis.js';
import { type BenchResults, chartSvg, consoleTable, judgeGoals, markdown, PART_NAMES, type PartName } from './lib/report.js';
import { PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT } from './lib/shared.js';
import { isMeasured } from './lib/stats.js';
import { runDrain } from './parts/drain.js';
import { type HttpTarget, runHttp } from './parts/http.js';
import { runLatency } from './parts/latency.js';
import { BASELINE_PROFILES, POSTGRES_PROFILES, runProfile } from './parts/profile.js';
import { runRss } from './parts/rss.js';
import { runScale } from './parts/scale.js';
import { runTelemetry, TELEMETRY_SETTINGS } from './parts/telemetry.js';

const BENCH_DIR = fileURLToPath(new URL('./', import.meta.url));

function flag(name: string): string | undefined {
  const prefix = `--${name}=`;
  return process.argv.find((argument) => argument.startsWith(prefix))?.slice(prefix.length);
}

const render = flag('render');
if (render) {
  const saved = JSON.parse(readFileSync(render, 'utf8')) as BenchResults;
  const target = flag('out') ?? BENCH_DIR;
  mkdirSync(target, { recursive: true });
  writeFileSync(join(target, 'chart.svg'), chartSvg(saved));
  writeFileSync(join(target, 'RESULTS.md'), markdown(saved, 'chart.svg'));
  console.log(`${consoleTable(saved)}\n\nwrote ${join(target, 'RESULTS.md')} and ${join(target, 'chart.svg')} from ${render}`);
  process.exit(0);
}

const quick = process.argv.includes('--quick');
const only = flag('only');
const parts: PartName[] = only ? (only.split(',').map((name) => name.trim()) as PartName[]) : [...PART_NAMES];
for (const part of parts) {
  if (!(PART_NAMES as readonly string[]).includes(part)) {
    console.error(`unknown part "${part}"; parts: ${PART_NAMES.join(', ')}`);
    process.exit(2);
  }
}
const writesCommittedResults = !quick && !only && !flag('out');
const outDir = flag('out') ?? (writesCommittedResults ? BENCH_DIR : join(tmpdir(), `asyncfirst-bench-${quick ? 'quick' : 'partial'}`));

// Folders left by a run that was killed (SIGKILL cannot be cleaned up after) go first.
for (const name of readdirSync(tmpdir())) {
  const pid = Number(/^asyncfirst-bench-(\d+)-/.exec(name)?.[1]);
  if (!pid || pid === process.pid) continue;
  try {
    process.kill(pid, 0);
  } catch {
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}
// No child outlives this process, whatever ends it.
const tmpRoot = mkdtempSync(join(tmpdir(), `asyncfirst-bench-${process.pid}-`));
let baseline: Baseline | undefined;
const cleanup = () => {
  killAllChildren();
  if (baseline) removeBaseline(baseline);
  rmSync(tmpRoot, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping the children`);
    process.exit(130);
  });
}
process.on('uncaughtException', (error) => {
  console.error(error);
  process.exit(1);
});
process.on('unhandledRejection', (error) => {
  console.error(error);
  process.exit(1);
});

const log = (line: string) => console.log(line);
const began = performance.now();
const startedAt = new Date().toISOString();
log(`asyncfirst bench: ${quick ? 'quick' : 'full'} run of ${parts.join(', ')}`);

const fsync = probeFsync(tmpRoot, 1);
const machine = describeMachine(fsync);
log(
  `machine: ${machine.cores} × ${machine.cpuModel}, Node ${machine.node}; ${Math.round(fsync.fdatasyncPerSec)} fdatasync/s, ${Math.round(fsync.fsyncPerSec)} fsync/s in ${tmpRoot}`,
);

// Peers whose server cannot be reached are skipped, with a line saying so.
const skip: BenchContext['skip'] = {};
const redisDown = await reachable(REDIS_HOST, REDIS_PORT);
if (redisDown) skip.bullmq = `Redis at ${REDIS_HOST}:${REDIS_PORT} cannot be reached (${redisDown})`;
else {
  const missing = await bullmqUnavailable();
  if (missing) skip.bullmq = missing;
}
const pgDown = await reachable(PG_HOST, PG_PORT);
if (pgDown) skip.postgres = skip.pgboss = `PostgreSQL at ${PG_HOST}:${PG_PORT} cannot be reached (${pgDown})`;
else {
  // Schemas of children an earlier run's SIGKILL left behind.
  const dropped = await dropLeftoverSchemas().catch((error: unknown) => {
    skip.postgres = skip.pgboss = `PostgreSQL at ${PG_HOST}:${PG_PORT} does not serve the benchmark (${(error as Error).message})`;
    return [];
  });
  if (dropped.length) log(`dropped ${dropped.length} schema(s) left by an earlier run: ${dropped.join(', ')}`);
}
const services = {
  redis: skip.bullmq ? `not used: ${skip.bullmq}` : await redisSettings().catch((error: unknown) => `settings unknown (${(error as Error).message})`),
  postgres: skip.pgboss ? `not used: ${skip.pgboss}` : await postgresSettings().catch((error: unknown) => `settings unknown (${(error as Error).message})`),
};
if (skip.bullmq) log(`skipping BullMQ: ${skip.bullmq}`);
if (skip.pgboss) log(`skipping pg-boss: ${skip.pgboss}`);
if (skip.postgres) log(`skipping asyncfirst on PostgreSQL and graphile-worker: ${skip.postgres}`);

const baselineCommit = flag('baseline');
if (baselineCommit) {
  try {
    baseline = addBaseline(baselineCommit, tmpRoot);
    log(`baseline: ${baseline.short} "${baseline.subject}" checked out in a temporary worktree (node_modules linked)`);
  } catch (error) {
    console.error(`--baseline=${baselineCommit}: ${(error as Error).message}`);
    process.exit(2);
  }
}

const context: BenchContext = { quick, tmpRoot, skip, log, ...(baseline ? { baseline } : {}) };
const note = flag('note');
// The options that decide what was measured, as the report's command line (not --out or --note).
const options = process.argv
  .slice(2)
  .filter((argument) => argument === '--quick' || argument.startsWith('--only=') || argument.startsWith('--baseline='))
  .join(' ');
const results: BenchResults = {
  mode: quick ? 'quick' : 'full',
  ...(options ? { options } : {}),
  parts,
  startedAt,
  seconds: 0,
  machine,
  services,
  failures: [],
  ...(note ? { note } : {}),
  ...(baseline ? { baseline: { requested: baseline.requested, commit: baseline.commit, short: baseline.short, subject: baseline.subject } } : {}),
};

async function attempt(part: PartName, run: () => Promise<void>): Promise<void> {
  const partStart = performance.now();
  try {
    await run();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    results.failures.push({ part, message });
    log(`[${part}] FAILED: ${message}`);
  }
  log(`[${part}] ${((performance.now() - partStart) / 1000).toFixed(1)} s`);
}

if (parts.includes('acceptance') || parts.includes('replay')) {
  const targets: HttpTarget[] = [];
  if (parts.includes('acceptance'))
    targets.push('bare', 'asyncfirst', ...(baseline ? (['asyncfirst-baseline'] as const) : []), 'asyncfirst-v7', 'bullmq', 'pgboss', 'asyncfirst-pg');
  if (parts.includes('replay')) targets.push('replay');
  await attempt(parts.includes('acceptance') ? 'acceptance' : 'replay', async () => {
    results.http = await runHttp(context, targets);
  });
}
if (parts.includes('drain'))
  await attempt('drain', async () => {
    results.drain = await runDrain(context);
  });
if (parts.includes('telemetry'))
  await attempt('telemetry', async () => {
    results.telemetry = await runTelemetry(context);
  });
if (parts.includes('latency'))
  await attempt('latency', async () => {
    results.latency = await runLatency(context, 'sqlite');
    if (context.skip.postgres) {
      results.latencyPostgresSkipped = context.skip.postgres;
      log(`[latency] PostgreSQL skipped: ${context.skip.postgres}`);
    } else {
      results.latencyPostgres = await runLatency(context, 'postgres');
      results.latencyPostgresConcurrent = await runLatency(context, 'postgres', 50);
    }
  });
if (parts.includes('scale'))
  await attempt('scale', async () => {
    results.scale = await runScale(context);
  });
if (parts.includes('rss'))
  await attempt('rss', async () => {
    results.rss = await runRss(context);
  });
if (parts.includes('profile'))
  await attempt('profile', async () => {
    mkdirSync(outDir, { recursive: true });
    results.profile = await runProfile(context, writesCommittedResults || flag('out') ? outDir : undefined);
  });
results.seconds = (performance.now() - began) / 1000;
// A child killed before it could drop its schema (a SIGKILL after the grace period) leaves it behind.
if (!skip.postgres) {
  const dropped = await dropLeftoverSchemas().catch(() => []);
  if (dropped.length) log(`dropped ${dropped.length} schema(s) left by this run's children: ${dropped.join(', ')}`);
}

/** Quick mode's check: every selected part ran and produced numbers. */
function problems(): string[] {
  const found = results.failures.map((failure) => `${failure.part} failed: ${failure.message}`);
  if (parts.includes('acceptance') || parts.includes('replay')) {
    for (const row of results.http?.rows ?? []) {
      if (row.skipped) continue;
      if (row.runs.length === 0) found.push(`${row.label}: no run`);
      for (const run of row.runs) {
        if (!isMeasured(run.rps, true)) found.push(`${row.label}: req/s is ${run.rps}`);
        if (!isMeasured(run.p50) || !isMeasured(run.p99)) found.push(`${row.label}: latency is not a number`);
      }
    }
  }
  if (parts.includes('drain')) {
    for (const row of results.drain?.rows ?? []) {
      if (row.skipped) continue;
      if (row.failed) found.push(`drain ${row.label}: ${row.failed}`);
      if (row.runs.length === 0) found.push(`drain ${row.label}: no run`);
      for (const run of row.runs) {
        if (run.drained !== run.jobs) found.push(`drain ${row.label} (${run.config}): ${run.drained} of ${run.jobs} jobs done`);
        if (!isMeasured(run.jobsPerSec, true)) found.push(`drain ${row.label}: jobs/s is ${run.jobsPerSec}`);
      }
    }
  }
  if (parts.includes('telemetry') && results.telemetry) {
    for (const setting of TELEMETRY_SETTINGS) {
      const { acceptance, drain } = results.telemetry;
      if (acceptance[setting].length === 0 || drain[setting].length === 0) found.push(`telemetry ${setting}: no run`);
      for (const run of acceptance[setting])
        if (!isMeasured(run.rps, true) || run.errors + run.non2xx > 0)
          found.push(`telemetry acceptance ${setting}: ${run.rps} req/s, ${run.errors + run.non2xx} errors`);
      for (const run of drain[setting])
        if (run.drained !== run.jobs || !isMeasured(run.jobsPerSec, true)) found.push(`telemetry drain ${setting}: ${run.drained} of ${run.jobs} jobs done`);
    }
  }
  if (parts.includes('latency')) {
    if (!results.latencyPostgres && !results.latencyPostgresSkipped && !results.failures.some((failure) => failure.part === 'latency'))
      found.push('latency on PostgreSQL: not measured');
    for (const latency of [results.latency, results.latencyPostgres, results.latencyPostgresConcurrent]) {
      if (!latency) continue;
      const name = `latency (${latency.database})`;
      if (latency.fromResponse.count === 0) found.push(`${name}: no job was both answered and started`);
      if (!isMeasured(latency.fromResponse.p50) || !isMeasured(latency.fromResponse.p99)) found.push(`${name}: percentiles are not numbers`);
    }
  }
  if (parts.includes('scale') && results.scale) {
    for (const level of results.scale.levels) {
      if (!isMeasured(level.accept.rps, true) || !isMeasured(level.acceptV7.rps, true) || !isMeasured(level.get.rps, true))
        found.push(`scale ${level.prefilled}: req/s missing`);
      if (!isMeasured(level.accept.p99) || !isMeasured(level.acceptV7.p99) || !isMeasured(level.get.p99))
        found.push(`scale ${level.prefilled}: latency is not a number`);
      if (!isMeasured(level.bytesPerJob, true)) found.push(`scale ${level.prefilled}: bytes per job missing`);
    }
  }
  if (parts.includes('rss') && results.rss) {
    if (results.rss.samples.length < 2 || !isMeasured(results.rss.end, true)) found.push('rss: fewer than two samples');
  }
  if (parts.includes('profile') && results.profile) {
    for (const run of results.profile.runs) {
      const onPostgres = POSTGRES_PROFILES.includes(run.name);
      if (run.summary.functions.length === 0) found.push(`profile ${run.name}: no samples`);
      if (!isMeasured(run.rate, true)) found.push(`profile ${run.name}: throughput is ${run.rate}`);
      if (run.name !== 'replay' && !onPostgres && !run.summary.sqliteByCaller.some((entry) => entry.name.includes('BEGIN/COMMIT')))
        found.push(`profile ${run.name}: no BEGIN/COMMIT among the SQLite calls`);
      if (onPostgres && !(isMeasured(run.database?.queries, true) && isMeasured(run.units, true))) found.push(`profile ${run.name}: no round trips counted`);
    }
    const expected = 4 + (context.skip.postgres ? 0 : POSTGRES_PROFILES.length) + (context.baseline ? BASELINE_PROFILES.length : 0);
    if (results.profile.runs.length < expected) found.push(`profile: ${results.profile.runs.length} of ${expected} profiles`);
    const commits = results.profile.commits;
    if (!context.skip.postgres && !(commits && Object.values(commits.rates).every((rate) => isMeasured(rate.median, true))))
      found.push('profile: the PostgreSQL commit probe produced no rates');
  }
  return found;
}

console.log(`\n${consoleTable(results)}\n`);
for (const goal of judgeGoals(results)) log(`goal: ${goal.status.padEnd(12)} ${goal.goal}: ${goal.measured}${goal.by ? ` (by ${goal.by})` : ''}`);
mkdirSync(outDir, { recursive: true });
const resultsFile = join(outDir, 'RESULTS.md');
const chartFile = join(outDir, 'chart.svg');
const jsonFile = join(tmpdir(), `asyncfirst-bench-results-${results.mode}.json`);
writeFileSync(jsonFile, JSON.stringify(results, null, 1));
writeFileSync(chartFile, chartSvg(results));
writeFileSync(resultsFile, markdown(results, 'chart.svg'));
log(`\nwrote ${resultsFile} and ${chartFile} (${Math.round(results.seconds)} s); the numbers are in ${jsonFile}`);

const found = problems();
if (found.length) {
  console.error(`\nbench: ${found.length} problem(s):\n${found.map((line) => `  - ${line}`).join('\n')}`);
  process.exit(1);
}
if (quick) log('bench --quick: every part ran and produced numbers');
process.exit(0);
