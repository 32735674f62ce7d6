import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { runOnce, startServer } from '../lib/children.js';
import { type CommitProbe, probeCommits } from '../lib/commit-probe.js';
import { type BenchContext, formatFixed, formatInt, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, postReport, runLoad, sameKeyRequests } from '../lib/load.js';
import type { DatabaseWindow } from '../lib/postgres.js';
import { prefill } from '../lib/prefill.js';
import { type ProfileSummary, summarizeProfile } from '../lib/profile.js';
import { BENCH_API_KEYS } from '../lib/shared.js';
import { COMPARABLE_CONCURRENCY } from './drain.js';

function keyIndexLeaves(dbPath: string): number {
  const db = new Database(dbPath, { readonly: true });
  try {
    const row = db.prepare<[], { pages: number }>(`SELECT count(*) AS pages FROM dbstat WHERE name = 'idempotency_keys_key' AND pagetype = 'leaf'`).get();
    return row?.pages ?? 0;
  } finally {
    db.close();
  }
}

/*
 * Where asyncfirst's time goes where a goal is missed, each profiled by V8 (the same sampler as
 * `node --cpu-prof`, 1 ms interval) for the measured window only:
 *   acceptance    the demo child (worker off) under the acceptance load on an empty file;
 *   acceptance-1m the same on a file already holding 1,000,000 jobs (quick mode: 10,000);
 *   replay        the same child sent one Idempotency-Key again and again;
 *   drain         the drain child, from the worker's start until every job is done (not the fill);
 *   acceptance-pg the demo child on PostgreSQL under the acceptance load;
 *   drain-pg      the drain child on PostgreSQL at concurrency 50.
 * The PostgreSQL runs also count the round trips the process sent, by statement, and the CPU
 * time of the backends serving it; and a probe (lib/commit-probe.ts) measures what PostgreSQL
 * itself allows for the driver's shapes of write, with and without NOTIFY.
 */

export type ProfileName = 'acceptance' | 'acceptance-1m' | 'replay' | 'drain' | 'acceptance-pg' | 'drain-pg' | 'acceptance-baseline' | 'drain-baseline';

/** The profiles on PostgreSQL. */
export const POSTGRES_PROFILES: readonly ProfileName[] = ['acceptance-pg', 'drain-pg'];
/** The baseline commit's own children, profiled the same way as 'acceptance' and 'drain' (--baseline). */
export const BASELINE_PROFILES: readonly ProfileName[] = ['acceptance-baseline', 'drain-baseline'];

export interface ProfileRun {
  name: ProfileName;
  /** What ran while profiled, in a sentence. */
  what: string;
  /** Jobs in the file before an acceptance profile. */
  prefilled?: number;
  /** Throughput while profiled, e.g. "8,607 req/s", and its number. */
  throughput: string;
  rate: number;
  /** Leaf pages of the idempotency-key index in the prefilled file (SQLite's dbstat). */
  keyIndexLeaves?: number;
  summary: ProfileSummary;
  /** Where the .cpuprofile was kept (open it in Chrome DevTools or speedscope). */
  file?: string;
  /** On PostgreSQL: jobs (or 202s) in the measured window, and what the window cost the database. */
  units?: number;
  database?: DatabaseWindow;
  /** Cores the load generator (autocannon, in the parent) used over the window. */
  loadGeneratorCores?: number;
}

export interface ProfilePart {
  runs: ProfileRun[];
  /** PostgreSQL's own commit rates for the driver's shapes of write (not measured when PostgreSQL is skipped). */
  commits?: CommitProbe;
  commitsSkipped?: string;
}

async function profileAcceptance(context: BenchContext, name: ProfileName, prefilled: number, profileFile: string): Promise<Omit<ProfileRun, 'summary'>> {
  const durationS = context.quick ? 1 : 10;
  const database = freshDatabase(context, `profile-${name}`);
  try {
    let leaves: number | undefined;
    if (prefilled > 0) {
      const seconds = await prefill(database.dbPath, prefilled);
      leaves = keyIndexLeaves(database.dbPath);
      context.log(`[profile] ${formatInt(prefilled)} jobs prefilled in ${seconds.toFixed(1)} s; ${formatInt(leaves)} leaf pages in the key index`);
    }
    const baseline = name === 'acceptance-baseline' ? context.baseline : undefined;
    const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
      env: { BENCH_MODE: 'demo', BENCH_DB: database.dbPath, BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS, BENCH_PROFILE_FILE: profileFile },
      ...(baseline ? { root: baseline.root } : {}),
    });
    try {
      let requests = freshKeyRequests();
      if (name === 'replay') {
        const key = 'profile-replay';
        const status = await postReport(url, key);
        if (status !== 202) throw new Error(`the first request of the replay profile answered ${status}, not 202`);
        requests = sameKeyRequests(key);
      }
      await runLoad({ url, requests, durationS: context.quick ? 0.5 : 2, connections: 50 });
      await child.command('profile-start');
      const load = await runLoad({ url, requests, durationS, connections: 50 });
      await child.command('profile-stop', 60_000);
      return {
        name,
        prefilled,
        ...(leaves === undefined ? {} : { keyIndexLeaves: leaves }),
        rate: load.rps,
        what:
          name === 'replay'
            ? `the asyncfirst child (worker off) during ${durationS} s of replays (one Idempotency-Key sent again and again, 50 connections) after a warm-up`
            : `${baseline ? `the baseline ${baseline.short}'s asyncfirst child` : 'the asyncfirst child'} (worker off) during ${durationS} s of the acceptance load (random UUIDv4 keys, 50 connections) after a warm-up, on ${prefilled ? `a file already holding ${formatInt(prefilled)} jobs` : 'an empty file'}`,
        throughput: `${formatInt(load.rps)} req/s`,
      };
    } finally {
      await child.stop();
    }
  } finally {
    database.cleanup();
  }
}

async function profileDrain(context: BenchContext, name: 'drain' | 'drain-baseline', profileFile: string): Promise<Omit<ProfileRun, 'summary'>> {
  // Quick mode still drains enough jobs for a few hundred samples: at 500 (about 40 ms) the
  // BEGIN/COMMIT of the groups, a few percent of the drain, could get no sample at all.
  const jobs = context.quick ? 5_000 : 20_000;
  const concurrency = 256;
  const baseline = name === 'drain-baseline' ? context.baseline : undefined;
  const message = (await runOnce(
    'bench/drain/asyncfirst.ts',
    {
      args: [`--jobs=${jobs}`, `--concurrency=${concurrency}`, `--dir=${context.tmpRoot}`, `--profile=${profileFile}`],
      ...(baseline ? { root: baseline.root } : {}),
    },
    240_000,
  )) as { jobsPerSec?: number; drained?: number };
  if (message.drained !== jobs) throw new Error(`the profiled drain finished ${message.drained} of ${jobs} jobs`);
  return {
    name,
    what: `${baseline ? `the baseline ${baseline.short}'s drain child` : 'the drain child'} from the worker's start until all ${formatInt(jobs)} stored no-op jobs were done (concurrency ${concurrency}; the fill is not profiled)`,
    throughput: `${formatInt(message.jobsPerSec)} jobs/s`,
    rate: message.jobsPerSec ?? 0,
  };
}

async function profilePostgresAcceptance(context: BenchContext, profileFile: string): Promise<Omit<ProfileRun, 'summary'>> {
  const durationS = context.quick ? 1 : 10;
  const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
    env: { BENCH_MODE: 'demo', BENCH_DB: 'postgres', BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS, BENCH_PROFILE_FILE: profileFile },
  });
  try {
    const requests = freshKeyRequests();
    await runLoad({ url, requests, durationS: context.quick ? 0.5 : 2, connections: 50 });
    await child.command('db-start');
    await child.command('profile-start');
    // The load generator's CPU (this process), beside the server's and the database's.
    const generatorCpu = process.cpuUsage();
    const began = performance.now();
    const load = await runLoad({ url, requests, durationS, connections: 50 });
    const generator = process.cpuUsage(generatorCpu);
    const loadGeneratorCores = (generator.user + generator.system) / 1e6 / ((performance.now() - began) / 1000);
    await child.command('profile-stop', 60_000);
    const database = await child.command<DatabaseWindow>('db-stop');
    return {
      name: 'acceptance-pg',
      rate: load.rps,
      units: load.ok,
      database,
      loadGeneratorCores,
      what: `the asyncfirst child on PostgreSQL (worker off, a pool of 10 connections) during ${durationS} s of the acceptance load (random UUIDv4 keys, 50 connections) after a warm-up`,
      throughput: `${formatInt(load.rps)} req/s`,
    };
  } finally {
    await child.stop();
  }
}

async function profilePostgresDrain(context: BenchContext, profileFile: string): Promise<Omit<ProfileRun, 'summary'>> {
  const jobs = context.quick ? 500 : 20_000;
  const concurrency = COMPARABLE_CONCURRENCY;
  const message = (await runOnce(
    'bench/drain/asyncfirst.ts',
    { args: [`--jobs=${jobs}`, '--database=postgres', `--concurrency=${concurrency}`, `--dir=${context.tmpRoot}`, `--profile=${profileFile}`] },
    300_000,
  )) as { jobsPerSec?: number; drained?: number; database?: DatabaseWindow };
  if (message.drained !== jobs) throw new Error(`the profiled drain on PostgreSQL finished ${message.drained} of ${jobs} jobs`);
  return {
    name: 'drain-pg',
    what: `the drain child on PostgreSQL (a pool of 10 connections) from the worker's start until all ${formatInt(jobs)} stored no-op jobs were done (concurrency ${concurrency}; the fill is not profiled)`,
    throughput: `${formatInt(message.jobsPerSec)} jobs/s`,
    rate: message.jobsPerSec ?? 0,
    units: jobs,
    ...(message.database ? { database: message.database } : {}),
  };
}

export async function runProfile(context: BenchContext, keepIn: string | undefined): Promise<ProfilePart> {
  const scratch = freshDatabase(context, 'profiles');
  const runs: ProfileRun[] = [];
  try {
    // With --baseline, the baseline's children right after the current ones, profiled the same way.
    type Plan = [ProfileName, (file: string) => Promise<Omit<ProfileRun, 'summary'>>];
    const baseline = Boolean(context.baseline);
    const plans: Plan[] = [
      ['acceptance', (file) => profileAcceptance(context, 'acceptance', 0, file)],
      ...(baseline ? [['acceptance-baseline', (file) => profileAcceptance(context, 'acceptance-baseline', 0, file)] satisfies Plan] : []),
      ['acceptance-1m', (file) => profileAcceptance(context, 'acceptance-1m', context.quick ? 10_000 : 1_000_000, file)],
      ['replay', (file) => profileAcceptance(context, 'replay', 0, file)],
      ['drain', (file) => profileDrain(context, 'drain', file)],
      ...(baseline ? [['drain-baseline', (file) => profileDrain(context, 'drain-baseline', file)] satisfies Plan] : []),
    ];
    if (!context.skip.postgres)
      plans.push(['acceptance-pg', (file) => profilePostgresAcceptance(context, file)], ['drain-pg', (file) => profilePostgresDrain(context, file)]);
    else context.log(`[profile] the PostgreSQL profiles skipped: ${context.skip.postgres}`);
    for (const [name, profileOne] of plans) {
      const profileFile = join(scratch.dir, `${name}.cpuprofile`);
      const run = await profileOne(profileFile);
      if (!existsSync(profileFile)) throw new Error(`the ${name} child wrote no profile`);
      const summary = summarizeProfile(profileFile);
      let file: string | undefined;
      if (keepIn) {
        file = join(keepIn, `asyncfirst-${name}.cpuprofile`);
        copyFileSync(profileFile, file);
      }
      runs.push({ ...run, summary, ...(file ? { file } : {}) });
      context.log(`[profile] ${name}: ${run.throughput} while profiled; top self time:`);
      for (const entry of summary.functions.slice(0, 8)) context.log(`[profile]   ${formatFixed(entry.percent, 1).padStart(5)}%  ${entry.name}`);
      context.log('[profile] the busiest frames by caller:');
      for (const entry of summary.busiestWithCallers.slice(0, 6)) context.log(`[profile]   ${formatFixed(entry.percent, 1).padStart(5)}%  ${entry.name}`);
      if (run.database && run.units) {
        const perUnit = (value: number) => formatFixed(value / (run.units ?? 1), 2);
        context.log(
          `[profile] per ${name === 'drain-pg' ? 'job' : '202'}: ${perUnit(run.database.queries)} round trips (${Object.entries(run.database.byStatement)
            .sort((a, b) => b[1] - a[1])
            .map(([statement, count]) => `${statement} ${perUnit(count)}`)
            .join(
              ', ',
            )}); CPU ${perUnit(run.database.processCpuSeconds * 1e6)} µs in the process, ${perUnit(run.database.backendCpuSeconds * 1e6)} µs in ${run.database.backends} PostgreSQL backends`,
        );
      }
    }
    if (context.skip.postgres) return { runs, commitsSkipped: context.skip.postgres };
    const commits = await probeCommits({ seconds: context.quick ? 0.5 : 3, rounds: context.quick ? 1 : 3 });
    context.log(
      `[profile] PostgreSQL commits/s at ${commits.connections} connections, ${commits.callers} callers: ${Object.entries(commits.rates)
        .map(([shape, rate]) => `${shape} ${formatInt(rate.median)}`)
        .join(', ')}`,
    );
    return { runs, commits };
  } finally {
    scratch.cleanup();
  }
}
