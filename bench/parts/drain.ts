import { IO_AT_EXIT, runOnce } from '../lib/children.js';
import { type BenchContext, formatInt } from '../lib/context.js';
import type { DatabaseWindow } from '../lib/postgres.js';

/*
 * Drain: N jobs already stored, a no-op handler, one process per run (bench/drain/*.ts): the
 * time from starting the worker until every job is recorded as done. Each system is tried at
 * several concurrency settings, taking turns; the best is reported with what was tried.
 * On PostgreSQL, asyncfirst and graphile-worker both run at concurrency 50 (the comparable
 * pair), then at other settings. With --baseline, the baseline commit's drain child runs right
 * after the current one at each setting.
 */

export type DrainSystem =
  | 'asyncfirst'
  | 'asyncfirst-baseline'
  | 'bullmq'
  | 'pgboss'
  | 'asyncfirst-pg'
  | 'graphile'
  | 'asyncfirst-report'
  | 'bullmq-report'
  | 'asyncfirst-sleep5'
  | 'bullmq-sleep5';

export const DRAIN_LABELS: Record<DrainSystem, string> = {
  asyncfirst: 'asyncfirst worker',
  'asyncfirst-baseline': 'asyncfirst worker at the baseline',
  bullmq: 'BullMQ Worker',
  pgboss: 'pg-boss work()',
  'asyncfirst-pg': 'asyncfirst worker on PostgreSQL',
  graphile: 'graphile-worker',
  'asyncfirst-report': "asyncfirst worker, the demo's createReport",
  'bullmq-report': "BullMQ Worker, the demo's createReport",
  'asyncfirst-sleep5': 'asyncfirst worker, a 5 ms wait',
  'bullmq-sleep5': 'BullMQ Worker, a 5 ms wait',
};

/** The rows with a real handler (and their BullMQ reference), measured at concurrency 50 and, for asyncfirst, at its default. */
export const HANDLER_ROWS: ReadonlyArray<{ ours: DrainSystem; bull: DrainSystem; handler: 'report' | 'sleep5' }> = [
  { ours: 'asyncfirst-report', bull: 'bullmq-report', handler: 'report' },
  { ours: 'asyncfirst-sleep5', bull: 'bullmq-sleep5', handler: 'sleep5' },
];

/** The setting of the default-settings run of a handler row (bench/drain/asyncfirst.ts). */
export const DEFAULT_SETTING = '--concurrency=default';

/** The concurrency asyncfirst and graphile-worker are compared at on PostgreSQL. */
export const COMPARABLE_CONCURRENCY = 50;

/** What a drain on PostgreSQL cost the database (asyncfirst's child measures it; see lib/postgres.ts). */
export type DrainDatabaseCost = DatabaseWindow;

export interface DrainRun {
  system: DrainSystem;
  config: string;
  concurrency: number;
  jobs: number;
  drained: number;
  seconds: number;
  jobsPerSec: number;
  fillJobsPerSec: number;
  database?: DrainDatabaseCost;
  /** The drain child's CPU time (user + system, all its threads) per job over the drain, µs (asyncfirst's children report it). */
  cpuUsPerJob?: number;
  /** On SQLite: what the whole child wrote (the fill and the drain), from /proc/self/io at its exit. */
  io?: { writeBytes: number; writeCalls: number };
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

/** Each system's settings, tried in turns (the first of each, then the second, …); a system with fewer settings sits the later turns out. */
function settings(quick: boolean): Record<DrainSystem, string[][]> {
  const concurrency = (values: number[]) => values.map((value) => [`--concurrency=${value}`]);
  const sqlite = concurrency(quick ? [8] : [16, 64, 256]);
  return {
    asyncfirst: sqlite,
    'asyncfirst-baseline': sqlite,
    bullmq: sqlite,
    pgboss: (quick
      ? [{ workers: 4, batch: 100 }]
      : [
          { workers: 4, batch: 100 },
          { workers: 4, batch: 500 },
          { workers: 8, batch: 500 },
        ]
    ).map((boss) => [`--workers=${boss.workers}`, `--batch=${boss.batch}`]),
    'asyncfirst-pg': (quick
      ? [[COMPARABLE_CONCURRENCY, 10]]
      : [
          [COMPARABLE_CONCURRENCY, 10],
          [200, 10],
          [1000, 10],
        ]
    ).map(([value, pool]) => ['--database=postgres', `--concurrency=${value}`, `--pool=${pool}`]),
    graphile: (quick
      ? [[COMPARABLE_CONCURRENCY, 0]]
      : [
          [COMPARABLE_CONCURRENCY, 0],
          [COMPARABLE_CONCURRENCY, 500],
        ]
    ).map(([value, localQueue]) => [`--concurrency=${value}`, ...(localQueue ? [`--local-queue=${localQueue}`] : [])]),
    // Real handlers, as users run them: both at concurrency 50, and asyncfirst at its default settings.
    'asyncfirst-report': [
      ['--handler=report', `--concurrency=${COMPARABLE_CONCURRENCY}`],
      ['--handler=report', DEFAULT_SETTING],
    ],
    'bullmq-report': [['--handler=report', `--concurrency=${COMPARABLE_CONCURRENCY}`]],
    'asyncfirst-sleep5': [
      ['--handler=sleep5', `--concurrency=${COMPARABLE_CONCURRENCY}`],
      ['--handler=sleep5', DEFAULT_SETTING],
    ],
    'bullmq-sleep5': [['--handler=sleep5', `--concurrency=${COMPARABLE_CONCURRENCY}`]],
  };
}

/** The drain child each system runs (bench/drain/<name>.ts). */
const CHILD: Record<DrainSystem, string> = {
  asyncfirst: 'asyncfirst',
  'asyncfirst-baseline': 'asyncfirst',
  bullmq: 'bullmq',
  pgboss: 'pgboss',
  'asyncfirst-pg': 'asyncfirst',
  graphile: 'graphile',
  'asyncfirst-report': 'asyncfirst',
  'bullmq-report': 'bullmq',
  'asyncfirst-sleep5': 'asyncfirst',
  'bullmq-sleep5': 'bullmq',
};

const ORDER: DrainSystem[] = [
  'asyncfirst',
  'asyncfirst-baseline',
  'bullmq',
  'pgboss',
  'asyncfirst-pg',
  'graphile',
  'asyncfirst-report',
  'bullmq-report',
  'asyncfirst-sleep5',
  'bullmq-sleep5',
];

function plans(quick: boolean, systems: DrainSystem[]): Plan[][] {
  const all = settings(quick);
  const turns = Math.max(...systems.map((system) => all[system].length));
  return Array.from({ length: turns }, (_, turn) => {
    // The current code and the baseline swap places every other turn: whichever runs first after
    // another part (PostgreSQL still writing out its WAL, say) is not always the same one.
    const order = turn % 2 === 1 ? swapped(systems, 'asyncfirst', 'asyncfirst-baseline') : systems;
    return order.flatMap((system) => {
      const args = all[system][turn];
      return args ? [{ system, args }] : [];
    });
  });
}

/** `list` with `a` and `b` in each other's places (as it is when either is missing). */
function swapped<T>(list: T[], a: T, b: T): T[] {
  if (!list.includes(a) || !list.includes(b)) return list;
  return list.map((item) => (item === a ? b : item === b ? a : item));
}

export async function runDrain(context: BenchContext): Promise<DrainPart> {
  const jobs = context.quick ? 500 : 20_000;
  const timeoutS = context.quick ? 60 : 180;
  const systems = ORDER.filter((system) => system !== 'asyncfirst-baseline' || context.baseline);
  const rows = new Map<DrainSystem, DrainRow>(
    systems.map((system) => [
      system,
      {
        system,
        label: system === 'asyncfirst-baseline' ? `asyncfirst worker at ${context.baseline?.short ?? 'the baseline'}` : DRAIN_LABELS[system],
        runs: [],
      },
    ]),
  );
  const skips: Partial<Record<DrainSystem, string | undefined>> = {
    bullmq: context.skip.bullmq,
    'bullmq-report': context.skip.bullmq,
    'bullmq-sleep5': context.skip.bullmq,
    pgboss: context.skip.pgboss,
    'asyncfirst-pg': context.skip.postgres,
    graphile: context.skip.postgres,
  };
  for (const row of rows.values()) {
    const reason = skips[row.system];
    if (reason) {
      row.skipped = reason;
      context.log(`[drain] ${row.label} skipped: ${reason}`);
    }
  }

  for (const turn of plans(context.quick, systems)) {
    for (const plan of turn) {
      const row = rows.get(plan.system);
      if (!row || row.skipped || row.failed) continue;
      const baseline = plan.system === 'asyncfirst-baseline';
      const entry = `bench/drain/${CHILD[plan.system]}.ts`;
      try {
        const message = await runOnce(
          entry,
          {
            args: [`--jobs=${jobs}`, `--timeout=${timeoutS}`, `--dir=${context.tmpRoot}`, ...plan.args],
            // On SQLite, what the current code and the baseline write per job (fill and drain together).
            ...(plan.system === 'asyncfirst' || baseline ? { nodeArgs: IO_AT_EXIT } : {}),
            ...(baseline ? { root: context.baseline?.root ?? '' } : {}),
          },
          (timeoutS + 60) * 1000,
        );
        const run = { ...(message as unknown as DrainRun), system: plan.system };
        row.runs.push(run);
        context.log(
          `[drain] ${row.label.padEnd(48)} ${run.config.padEnd(30)} ${formatInt(run.jobsPerSec).padStart(7)} jobs/s  (${run.drained}/${run.jobs} in ${run.seconds.toFixed(2)} s; filled at ${formatInt(run.fillJobsPerSec)} jobs/s)`,
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
