import type { Cron } from 'croner';
import type { FastifyBaseLogger } from 'fastify';
import { cronOf, type Schedule } from '../contract/schedules.js';
import { fingerprintRequest } from '../idempotency/fingerprint.js';
import type { AcceptRequest, Store } from '../store/store.js';
import { planTicks } from './schedule-ticks.js';

/** The longest a timer waits before looking again (a clock set forward, another process's tick taken meanwhile). */
const MAX_WAIT_MS = 60_000;
/** After a failed take (the store unavailable), how long before the next try. */
const RETRY_MS = 1000;

export interface SchedulerOptions {
  store: Store;
  schedules: Schedule[];
  maxAttempts: (operationId: string) => number;
  /** How long a tick's idempotency key binds its job (the operation's retention, else IDEMPOTENCY_RETENTION_MS). */
  keyRetentionMs: (operationId: string) => number;
  log: FastifyBaseLogger;
}

interface Ticking {
  schedule: Schedule;
  cron: Cron;
  lastTick: number;
  timer?: NodeJS.Timeout;
}

/** The idempotency key of a schedule's tick: the same in every process, so a tick's job is one job. */
export function tickKey(name: string, tick: number): string {
  return `schedule:${name}:${new Date(tick).toISOString()}`;
}

/**
 * Takes the ticks of the schedules in a process that runs a worker: at each tick it moves the
 * schedule's last tick in the store (one process wins) together with the tick's job; after
 * downtime, the missed ticks inside the schedule's backfill window run once each, older ones are
 * skipped and logged.
 */
export class Scheduler {
  private readonly ticking: Ticking[] = [];
  private stopped = false;
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly options: SchedulerOptions) {}

  /** Declares the schedules in the store, then takes their ticks; retried while the store is unavailable. */
  start(): void {
    this.track(this.declare());
  }

  private async declare(): Promise<void> {
    const { store, schedules, log } = this.options;
    for (;;) {
      if (this.stopped) return;
      try {
        const declared = schedules.map((schedule) => ({
          name: schedule.name,
          operation: schedule.operationId,
          cron: schedule.cron,
          timezone: schedule.timezone,
          windowMs: schedule.windowMs,
        }));
        const lastTicks = await store.declareSchedules(declared, Date.now());
        for (const schedule of schedules) {
          const entry: Ticking = { schedule, cron: cronOf(schedule.cron, schedule.timezone), lastTick: lastTicks.get(schedule.name) ?? Date.now() };
          this.ticking.push(entry);
          this.track(this.take(entry));
        }
        return;
      } catch (error) {
        log.warn({ err: error }, 'declaring the schedules failed; trying again');
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
      }
    }
  }

  /** Takes what the schedule owes now, then sets the timer for its next tick. */
  private async take(entry: Ticking): Promise<void> {
    const { store, log } = this.options;
    const { schedule } = entry;
    let waitMs: number;
    try {
      for (;;) {
        if (this.stopped) return;
        const now = Date.now();
        const plan = planTicks(entry.cron, entry.lastTick, now, schedule.windowMs);
        if (plan.upTo === entry.lastTick) break;
        const taken = await store.takeScheduleTicks({
          name: schedule.name,
          fromTick: entry.lastTick,
          toTick: plan.upTo,
          jobs: plan.run.map((tick) => this.tickJob(schedule, tick, now)),
        });
        if (taken.won && plan.skipped > 0) {
          log.warn(
            { schedule: schedule.name, skipped: plan.skipped, ...(plan.skippedAtLeast ? { skippedAtLeast: true } : {}), backfillMs: schedule.windowMs },
            `schedule ${schedule.name}: skipped ${plan.skippedAtLeast ? 'at least ' : ''}${plan.skipped} missed tick${plan.skipped === 1 ? '' : 's'} older than its backfill window`,
          );
        }
        if (taken.won && taken.jobIds.length > 0) log.info({ schedule: schedule.name, jobIds: taken.jobIds }, 'schedule ticked');
        // Lost: another process took these ticks; go on from the tick it recorded.
        entry.lastTick = taken.lastTick;
      }
      const next = entry.cron.nextRun(new Date(Math.max(entry.lastTick, Date.now())));
      waitMs = next === null ? MAX_WAIT_MS : Math.min(MAX_WAIT_MS, Math.max(1, next.getTime() - Date.now()));
    } catch (error) {
      log.warn({ err: error, schedule: schedule.name }, 'taking a schedule tick failed; trying again');
      waitMs = RETRY_MS;
    }
    if (this.stopped) return;
    entry.timer = setTimeout(() => this.track(this.take(entry)), waitMs);
  }

  /** A tick's job: the schedule's body, and the tick in the input (the handler's context.schedule). */
  private tickJob(schedule: Schedule, tick: number, now: number): AcceptRequest {
    const scheduled = { name: schedule.name, tick: new Date(tick).toISOString() };
    const { fingerprint, canonicalInput } = fingerprintRequest(schedule.operationId, { params: {}, query: {}, body: schedule.body, schedule: scheduled });
    return {
      principal: schedule.principal,
      operation: schedule.operationId,
      key: tickKey(schedule.name, tick),
      fingerprint,
      input: canonicalInput,
      maxAttempts: this.options.maxAttempts(schedule.operationId),
      now,
      keyExpiresAt: now + this.options.keyRetentionMs(schedule.operationId),
      schedule: scheduled,
    };
  }

  private track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  /** Stops the timers and waits for a take under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const entry of this.ticking) clearTimeout(entry.timer);
    await Promise.all([...this.running]);
  }
}
