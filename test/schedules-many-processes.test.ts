import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';
import { freshSchema, queryPostgres, TEST_DATABASE_URL } from './postgres-support.js';
import { type DemoProcess, killDemoProcess, sleep, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * A schedule ticking every second, taken by three real worker processes on one database: each
 * tick makes exactly one job (no gaps, no duplicates) and each job runs once. Then every process
 * stops, and the one started later runs the missed ticks inside the backfill window once each and
 * logs how many older ones it skipped.
 */

const SCRIPT = 'test/fixtures/scheduled-service.ts';
const BACKFILL_SECONDS = 3;
const SECOND = 1000;

interface Database_ {
  name: string;
  env: Record<string, string>;
  /** Each job of the schedule: its id, status and the tick its input carries. */
  jobs(): Promise<Array<{ id: string; status: string; tick: number }>>;
  cleanup(): Promise<void>;
}

function sqlite(): Database_ {
  const tmp = tempDir();
  return {
    name: 'SQLite',
    env: { DATABASE_URL: tmp.dbPath },
    async jobs() {
      const db = new Database(tmp.dbPath, { readonly: true });
      try {
        return (
          db.prepare(`SELECT id, status, input FROM jobs WHERE operation = 'createReport'`).all() as Array<{ id: string; status: string; input: string }>
        ).map(tickOf);
      } finally {
        db.close();
      }
    },
    cleanup: async () => tmp.cleanup(),
  };
}

function postgres(): Database_ {
  const { schema, drop } = freshSchema('af_sched');
  return {
    name: 'PostgreSQL',
    env: { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema },
    async jobs() {
      return (
        await queryPostgres<{ id: string; status: string; input: string }>(schema, `SELECT id, status, input FROM jobs WHERE operation = 'createReport'`, [])
      ).map(tickOf);
    },
    cleanup: drop,
  };
}

function tickOf(row: { id: string; status: string; input: string }): { id: string; status: string; tick: number } {
  const input = JSON.parse(row.input) as { schedule: { name: string; tick: string } };
  expect(input.schedule.name).toBe('every-second');
  return { id: row.id, status: row.status, tick: Date.parse(input.schedule.tick) };
}

/** The ticks, sorted, each once: fails on a duplicate. */
function distinctTicks(jobs: Array<{ tick: number }>): number[] {
  const ticks = jobs.map((job) => job.tick).sort((a, b) => a - b);
  const duplicates = ticks.filter((tick, index) => index > 0 && ticks[index - 1] === tick);
  expect(duplicates.map((tick) => new Date(tick).toISOString())).toEqual([]);
  return ticks;
}

function expectConsecutiveSeconds(ticks: number[]): void {
  const gaps = ticks.slice(1).flatMap((tick, index) => (tick - (ticks[index] as number) === SECOND ? [] : [new Date(tick).toISOString()]));
  expect(gaps).toEqual([]);
}

async function stop(processes: DemoProcess[]): Promise<void> {
  for (const process of processes) process.child.kill('SIGTERM');
  await Promise.all(processes.map((process) => process.exited));
}

describe.each([sqlite, postgres])('a schedule across processes (%o)', (open) => {
  const database = open();
  const { dir, cleanup } = tempDir();
  const runLog = join(dir, 'runs.log');
  const started: DemoProcess[] = [];
  const start = async () => {
    const process = await startDemoProcess(
      'worker',
      { ...database.env, RUN_LOG: runLog, WORKER_CONCURRENCY: '4', WORKER_POLL_MS: '200', SCHEDULE_BACKFILL: String(BACKFILL_SECONDS), LOG_LEVEL: 'info' },
      { script: SCRIPT },
    );
    started.push(process);
    return process;
  };

  afterAll(async () => {
    for (const process of started) await killDemoProcess(process);
    await database.cleanup();
    cleanup();
  });

  it(`${database.name}: three processes make exactly one job per tick, and a restart backfills the window and skips older ticks`, async () => {
    const cluster = await Promise.all([start(), start(), start()]);
    await sleep(10 * SECOND);
    await stop(cluster);

    const ticking = await database.jobs();
    const ticks = distinctTicks(ticking);
    expect(ticks.length).toBeGreaterThanOrEqual(8);
    expectConsecutiveSeconds(ticks);
    // Each job ran once (SIGTERM let the handlers finish), in whichever process claimed it.
    const runs = readFileSync(runLog, 'utf8').trim().split('\n');
    expect(ticking.every((job) => job.status === 'succeeded')).toBe(true);
    expect(runs.map((line) => line.split(' ')[0]).sort()).toEqual(ticking.map((job) => job.id).sort());

    // Down for longer than the backfill window.
    const lastTick = ticks.at(-1) as number;
    await sleep((BACKFILL_SECONDS + 4) * SECOND);
    const later = await start();
    const skippedLine = await waitFor('the skipped ticks to be logged', () => later.logs().find((line) => /skipped \d+ missed ticks?/.test(line.msg)));
    const firstTake = await waitFor('the first take', () => later.logs().find((line) => line.msg === 'schedule ticked'));
    await sleep(1500);
    await stop([later]);

    const after = distinctTicks((await database.jobs()).filter((job) => job.tick > lastTick));
    expectConsecutiveSeconds(after);
    const skipped = skippedLine.skipped as number;
    expect(skipped).toBeGreaterThanOrEqual(2);
    expect(skippedLine.schedule).toBe('every-second');
    // The skipped ticks are exactly the gap after the last tick taken before the stop: none ran.
    expect(((after[0] as number) - lastTick) / SECOND).toBe(skipped + 1);
    // The first take ran the ticks of the backfill window (3 s: three or four ticks), once each.
    const backfilled = (firstTake.jobIds as string[]).length;
    expect(backfilled).toBeGreaterThanOrEqual(BACKFILL_SECONDS);
    expect(backfilled).toBeLessThanOrEqual(BACKFILL_SECONDS + 1);
  }, 60_000);
});
