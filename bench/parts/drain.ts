import { runOnce } from '../lib/children.js';
import { type BenchContext, formatInt } from '../lib/context.js';

/*
 * Drain: N jobs already stored, a no-op handler, one process per run (bench/drain/*.ts): the
 * time from starting the worker until every job is recorded as done. Each system is tried at
 * several concurrency settings, taking turns; the best is reported with what was tried.
 */

export type DrainSystem = 'asyncfirst' | 'bullmq' | 'pgboss';

export const DRAIN_LABELS: Record<DrainSystem, string> = { asyncfirst: 'asyncfirst worker', bullmq: 'BullMQ Worker', pgboss: 'pg-boss work()' };

export interface DrainRun {
  system: DrainSystem;
  config: string;
  concurrency: number;
  jobs: number;
  drained: number;
  seconds: number;
  jobsPerSec: number;
  fillJobsPerSec: number;
}

export interface DrainRow {
  system: DrainSystem;
  label: string;
  runs: DrainRun[];
  best?: DrainRun;
  skipped?: string;
  failed?: string;
}

export interface DrainPart {
  jobs: number;
  rows: DrainRow[];
}

interface Plan {
  system: DrainSystem;
  args: string[];
}

function plans(quick: boolean): Plan[][] {
  const concurrency = quick ? [8] : [16, 64, 256];
  const pgboss = quick
    ? [{ workers: 4, batch: 100 }]
    : [
        { workers: 4, batch: 100 },
        { workers: 4, batch: 500 },
        { workers: 8, batch: 500 },
      ];
  // Turn by turn: asyncfirst, BullMQ, pg-boss at the first setting, then at the second, …
  return concurrency.map((value, index) => {
    const boss = pgboss[index] ?? pgboss[0];
    return [
      { system: 'asyncfirst', args: [`--concurrency=${value}`] },
      { system: 'bullmq', args: [`--concurrency=${value}`] },
      { system: 'pgboss', args: [`--workers=${boss?.workers ?? 4}`, `--batch=${boss?.batch ?? 100}`] },
    ];
  });
}

export async function runDrain(context: BenchContext): Promise<DrainPart> {
  const jobs = context.quick ? 500 : 20_000;
  const timeoutS = context.quick ? 60 : 180;
  const rows = new Map<DrainSystem, DrainRow>(
    (['asyncfirst', 'bullmq', 'pgboss'] as const).map((system) => [system, { system, label: DRAIN_LABELS[system], runs: [] }]),
  );
  const bullmqRow = rows.get('bullmq');
  const pgbossRow = rows.get('pgboss');
  if (context.skip.bullmq && bullmqRow) bullmqRow.skipped = context.skip.bullmq;
  if (context.skip.pgboss && pgbossRow) pgbossRow.skipped = context.skip.pgboss;
  for (const row of rows.values()) if (row.skipped) context.log(`[drain] ${row.label} skipped: ${row.skipped}`);

  for (const turn of plans(context.quick)) {
    for (const plan of turn) {
      const row = rows.get(plan.system);
      if (!row || row.skipped || row.failed) continue;
      try {
        const message = await runOnce(
          `bench/drain/${plan.system}.ts`,
          { args: [`--jobs=${jobs}`, `--timeout=${timeoutS}`, `--dir=${context.tmpRoot}`, ...plan.args] },
          (timeoutS + 60) * 1000,
        );
        const run = message as unknown as DrainRun;
        row.runs.push(run);
        context.log(
          `[drain] ${row.label.padEnd(18)} ${run.config.padEnd(26)} ${formatInt(run.jobsPerSec).padStart(7)} jobs/s  (${run.drained}/${run.jobs} in ${run.seconds.toFixed(2)} s; filled at ${formatInt(run.fillJobsPerSec)} jobs/s)`,
        );
      } catch (error) {
        row.failed = (error as Error).message.split('\n').slice(0, 3).join(' ');
        context.log(`[drain] ${row.label} failed: ${row.failed}`);
      }
    }
  }
  for (const row of rows.values()) {
    const complete = row.runs.filter((run) => run.drained === run.jobs);
    const best = [...complete].sort((a, b) => b.jobsPerSec - a.jobsPerSec)[0];
    if (best) row.best = best;
  }
  return { jobs, rows: [...rows.values()] };
}
