import { cronOf } from '../contract/schedules.js';
import { openJobEngine } from '../engine/open-engine.js';
import type { ScheduleRecord } from '../store/store.js';
import { databaseTarget } from './database.js';

/*
 * asyncfirst schedules: the recurring schedules the database records (as the processes with a
 * worker last declared them), with their last tick and next runs.
 */

/** A schedule as the CLI (and the dashboard) shows it: its next runs computed from its cron; none once retired. */
export function scheduleView(schedule: ScheduleRecord, now: number = Date.now(), runs = 1): Record<string, unknown> {
  const next = schedule.retiredAt === undefined ? cronOf(schedule.cron, schedule.timezone).nextRuns(runs, new Date(Math.max(schedule.lastTick, now))) : [];
  return {
    name: schedule.name,
    operation: schedule.operation,
    cron: schedule.cron,
    timezone: schedule.timezone,
    backfillSeconds: schedule.windowMs / 1000,
    lastTick: new Date(schedule.lastTick).toISOString(),
    ...(schedule.lastJobId === undefined ? {} : { lastJobId: schedule.lastJobId }),
    nextRuns: next.map((run) => run.toISOString()),
    ...(schedule.retiredAt === undefined ? {} : { retiredAt: new Date(schedule.retiredAt).toISOString() }),
  };
}

/** One line per schedule: name, operation, cron and zone, then its next run or since when it is retired. */
export function scheduleLine(view: Record<string, unknown>): string {
  const when =
    view.retiredAt === undefined ? `next ${(view.nextRuns as string[])[0] ?? 'never'}` : `retired ${view.retiredAt as string} (no process declares it)`;
  return `${view.name as string}  ${view.operation as string}  "${view.cron as string}" ${view.timezone as string}  last tick ${view.lastTick as string}  ${when}`;
}

/** schedules: every schedule the database records, by name. */
export async function listSchedules(database: string | undefined): Promise<ScheduleRecord[]> {
  const { config } = databaseTarget(database);
  const store = await openJobEngine({ ...config, logLevel: 'silent' });
  try {
    return await store.listSchedules();
  } finally {
    await store.close();
  }
}
