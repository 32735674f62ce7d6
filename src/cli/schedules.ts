import { openJobEngine } from '../engine/open-engine.js';
import type { ScheduleRecord } from '../store/store.js';
import { databaseTarget } from './database.js';

/*
 * asyncfirst schedules: the recurring schedules the database records (as the processes with a
 * worker last declared them), with their last tick and next runs.
 */

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
