import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { runOnce, startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, formatInt, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, postReport, runLoad, sameKeyRequests } from '../lib/load.js';
import { prefill } from '../lib/prefill.js';
import { type ProfileSummary, summarizeProfile } from '../lib/profile.js';
import { BENCH_API_KEYS } from '../lib/shared.js';

function keyIndexLeaves(dbPath: string): number {
  const db = new Database(dbPath, { readonly: true });
  try {
    const row = db.prepare<[], { pages: number }>(`SELECT count(*) AS pages FROM dbstat WHERE name = 'idempotency_keys' AND pagetype = 'leaf'`).get();
    return row?.pages ?? 0;
  } finally {
    db.close();
  }
}

/*
 * Where asyncfirst's time goes where a goal is missed, each profiled by V8 (the same sampler as
 * `node --cpu-prof`, 1 ms interval) for the measured window only:
 *   acceptance   the demo child (worker off) under the acceptance load on an empty file;
 *   acceptance-1m the same on a file already holding 1,000,000 jobs (quick mode: 10,000);
 *   replay       the same child sent one Idempotency-Key again and again;
 *   drain        the drain child, from the worker's start until every job is done (not the fill).
 */

export type ProfileName = 'acceptance' | 'acceptance-1m' | 'replay' | 'drain';

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
}

export interface ProfilePart {
  runs: ProfileRun[];
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
    const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
      env: { BENCH_MODE: 'demo', BENCH_DB: database.dbPath, BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS, BENCH_PROFILE_FILE: profileFile },
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
            : `the asyncfirst child (worker off) during ${durationS} s of the acceptance load (random UUIDv4 keys, 50 connections) after a warm-up, on ${prefilled ? `a file already holding ${formatInt(prefilled)} jobs` : 'an empty file'}`,
        throughput: `${formatInt(load.rps)} req/s`,
      };
    } finally {
      await child.stop();
    }
  } finally {
    database.cleanup();
  }
}

async function profileDrain(context: BenchContext, profileFile: string): Promise<Omit<ProfileRun, 'summary'>> {
  const jobs = context.quick ? 500 : 20_000;
  const concurrency = 256;
  const message = (await runOnce(
    'bench/drain/asyncfirst.ts',
    { args: [`--jobs=${jobs}`, `--concurrency=${concurrency}`, `--dir=${context.tmpRoot}`, `--profile=${profileFile}`] },
    240_000,
  )) as { jobsPerSec?: number; drained?: number };
  if (message.drained !== jobs) throw new Error(`the profiled drain finished ${message.drained} of ${jobs} jobs`);
  return {
    name: 'drain',
    what: `the drain child from the worker's start until all ${formatInt(jobs)} stored no-op jobs were done (concurrency ${concurrency}; the fill is not profiled)`,
    throughput: `${formatInt(message.jobsPerSec)} jobs/s`,
    rate: message.jobsPerSec ?? 0,
  };
}

export async function runProfile(context: BenchContext, keepIn: string | undefined): Promise<ProfilePart> {
  const scratch = freshDatabase(context, 'profiles');
  const runs: ProfileRun[] = [];
  try {
    const plans: Array<[ProfileName, (file: string) => Promise<Omit<ProfileRun, 'summary'>>]> = [
      ['acceptance', (file) => profileAcceptance(context, 'acceptance', 0, file)],
      ['acceptance-1m', (file) => profileAcceptance(context, 'acceptance-1m', context.quick ? 10_000 : 1_000_000, file)],
      ['replay', (file) => profileAcceptance(context, 'replay', 0, file)],
      ['drain', (file) => profileDrain(context, file)],
    ];
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
    }
    return { runs };
  } finally {
    scratch.cleanup();
  }
}
