import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startServer } from '../lib/children.js';
import { type BenchContext, formatFixed, formatInt, freshDatabase } from '../lib/context.js';
import { freshKeyRequests, type LoadResult, runLoad } from '../lib/load.js';
import { type ProfileSummary, summarizeProfile } from '../lib/profile.js';
import { BENCH_API_KEYS } from '../lib/shared.js';

/*
 * Where asyncfirst's acceptance time goes: the demo child (worker off) under the acceptance
 * load, CPU-profiled by V8 (the same sampler as `node --cpu-prof`, 1 ms interval) for the
 * measured window only: started after the warm-up, stopped before the load ends.
 */

export interface ProfilePart {
  durationS: number;
  load: LoadResult;
  summary: ProfileSummary;
  /** Where the .cpuprofile was kept (open it in Chrome DevTools or speedscope). */
  file?: string;
}

export async function runProfile(context: BenchContext, keepIn: string | undefined): Promise<ProfilePart> {
  const durationS = context.quick ? 1 : 10;
  const database = freshDatabase(context, 'profile');
  const profileFile = join(database.dir, 'acceptance.cpuprofile');
  try {
    const { child, url } = await startServer('bench/servers/asyncfirst.ts', {
      env: { BENCH_MODE: 'demo', BENCH_DB: database.dbPath, BENCH_WORKER_CONCURRENCY: '0', API_KEYS: BENCH_API_KEYS, BENCH_PROFILE_FILE: profileFile },
    });
    let load: LoadResult;
    try {
      await runLoad({ url, requests: freshKeyRequests(), durationS: context.quick ? 0.5 : 2, connections: 50 });
      await child.command('profile-start');
      load = await runLoad({ url, requests: freshKeyRequests(), durationS, connections: 50 });
      await child.command('profile-stop', 60_000);
    } finally {
      await child.stop();
    }
    if (!existsSync(profileFile)) throw new Error('the asyncfirst child wrote no profile');
    const summary = summarizeProfile(profileFile);
    let file: string | undefined;
    if (keepIn) {
      file = join(keepIn, 'asyncfirst-acceptance.cpuprofile');
      copyFileSync(profileFile, file);
    }
    context.log(`[profile] ${formatInt(load.rps)} req/s while profiled; top self time:`);
    for (const entry of summary.functions.slice(0, 12)) context.log(`[profile]   ${formatFixed(entry.percent, 1).padStart(5)}%  ${entry.name}`);
    context.log('[profile] the busiest frames by caller:');
    for (const entry of summary.busiestWithCallers.slice(0, 6)) context.log(`[profile]   ${formatFixed(entry.percent, 1).padStart(5)}%  ${entry.name}`);
    return { durationS, load, summary, ...(file ? { file } : {}) };
  } finally {
    database.cleanup();
  }
}
