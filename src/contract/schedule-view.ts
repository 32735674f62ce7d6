import type { ScheduleRecord } from '../store/store.js';
import { cronOf } from './schedules.js';

/*
 * A recorded schedule as asyncfirst schedules and the dashboard show it: what the database holds
 * of it, with its next runs computed from its cron.
 */

/** A schedule as the CLI and the dashboard show it: its next runs computed from its cron; none once retired. */
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
