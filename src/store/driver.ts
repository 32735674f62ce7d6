import type { JobState } from '../core/job-states.js';
import type { ProblemDetails } from '../core/problems.js';
import type { Settled } from '../engine/turn-batcher.js';
import type {
  AcceptRequest,
  CancelOutcome,
  ClaimedJob,
  DeclaredSchedule,
  DeliveryClaim,
  DeliveryOutcome,
  IdempotencyRecord,
  JobCount,
  JobEvent,
  JobOutcome,
  JobProgress,
  JobRecord,
  LeaseState,
  RetryEndedOutcome,
  ScheduleRecord,
  StoreFault,
  WebhookDelivery,
} from './store.js';

/*
 * The storage driver: one per database. A driver only does I/O — transactions, the statements,
 * migrations, notifications — and decides no policy: the job engine (src/engine/) says what a
 * change records (the event and webhook rows it builds with `RecordChange`), which problems an
 * abandoned or canceled job ends with, and how replays are told from reused keys. Every driver
 * passes the same conformance suite (test/driver-conformance.test.ts).
 *
 * Each method that changes a job bumps the job's version under the row's lock and records the
 * change as the job's event with that version, in the transaction that made the change. An
 * acceptance records the job's job.queued of version 0 (with no data: the job row says it all)
 * in the same transaction or statement as the job, so the log across jobs has every job's start.
 */

/** How many jobs something happened to in one minute (its first millisecond). */
export interface MinuteCount {
  minute: number;
  count: number;
}

/**
 * What a change of a job records: its event's data; for a finished job with a callback, a webhook
 * delivery; and for a finished job of an operation with notifiers, its notifications.
 */
export interface RecordedChange {
  data: string;
  delivery?: NewDelivery;
  notifications?: NewNotification[];
}

/** A notification to store with the change that caused it, for the notifier it names. */
export interface NewNotification {
  id: string;
  notifier: string;
  eventType: string;
  payload: string;
  maxAttempts: number;
}

/** A webhook delivery to store with the change that caused it. */
export interface NewDelivery {
  id: string;
  url: string;
  eventType: string;
  payload: string;
  maxAttempts: number;
}

/** Supplied by the engine: builds what a change records, from the job as the change left it. Pure; runs inside the driver's transaction. */
export type RecordChange = (job: JobRecord, type: string, now: number) => RecordedChange;

/** A schedule's tick taken (advanceSchedule): its last tick moved from `fromTick` to `toTick`, with the tick jobs to accept. */
export interface ScheduleAdvance {
  name: string;
  fromTick: number;
  toTick: number;
  writes: AcceptWrite[];
}

/** Whether the tick was this process's (its last tick matched), the last tick after it, and the jobs accepted. */
export interface ScheduleAdvanced {
  won: boolean;
  lastTick: number;
  jobIds: string[];
}

/** What the engine gives a driver at start. */
export interface DriverHooks {
  recordChange: RecordChange;
  /** Whether jobs of this operation may have notifications (getJob reads them only then). */
  notifies: (operation: string) => boolean;
  events: DriverEvents;
  problems: EndingProblems;
}

/** What a driver announces, after each commit (its own, and with `announcesOtherProcesses` those of other processes). */
export interface DriverEvents {
  jobsQueued(): void;
  jobsChanged(jobIds: Set<string>): void;
  /** Changes may have been missed, or were too many to name (a notification lost across a reconnect, a commit of hundreds of jobs). */
  everythingChanged(): void;
  deliveriesQueued(): void;
  fault(fault: StoreFault): void;
}

/**
 * A submission to store: the job (its id chosen by the engine) and its idempotency record. A job
 * that starts later has its acceptance's event data given (`acceptedEvent`): the job row's run
 * time changes with its attempts, so that event could not be built from the row afterwards.
 */
export type AcceptWrite = AcceptRequest & {
  jobId: string;
  acceptedEvent?: string;
  /** The operation's priority (omitted: 0). */
  priority?: number;
  /** True when the operation has a concurrency or rate limit: its jobs are claimed only by claimLimitedJobs. */
  limited?: boolean;
  /** A follow-up's parent (ctx.enqueue): the job whose success stores this one. */
  parentId?: string;
};

/**
 * How an acceptance went: the job was created, or a live record already binds the key (the
 * engine compares fingerprints). A record past its expiry, or whose job was swept, binds nothing.
 */
export type AcceptResult = { kind: 'created'; jobId: string } | { kind: 'bound'; jobId: string; fingerprint: string };

/** The problems the engine has jobs end with when the driver finds them so. */
export interface EndingProblems {
  /** A job whose cancel was asked and whose attempt ends (or was abandoned). */
  canceledWhileRunning: ProblemDetails;
  /** A queued job canceled before it ran. */
  canceledBeforeRunning: ProblemDetails;
  /** An abandoned job with no attempts left. */
  abandoned: ProblemDetails;
}

/** The end of one claimed job's attempt. */
export interface Finish {
  id: string;
  fence: number;
  outcome: JobOutcome;
  now: number;
  /**
   * The jobs to store, with this job as their parent, when it ends succeeded (not when a cancel
   * asked meanwhile wins, nor when the fence is stale): in the transaction of the finish. A write
   * whose key a live record binds is skipped, as a replayed acceptance makes no second job.
   */
  followUps?: AcceptWrite[];
}

export interface DriverClaim {
  owner: string;
  limit: number;
  /** Wall-clock now: which jobs are due. */
  now: number;
  /** Lease length, measured on the driver's lease clock (the database's, or the machine's monotonic clock). */
  leaseMs: number;
  /**
   * Due jobs by priority (highest first), then run time and insertion: set when some operation
   * has a priority. Unset, only jobs of priority 0 are claimed, through the plain queue's index.
   */
  byPriority?: boolean;
}

/** What a limited operation's claim finds, under the lock of the operation's limit row. */
export interface LimitState {
  /** Attempts of the operation running now (leases lapsed included: they end or are taken over). */
  running: number;
  /** The start times the rate limit keeps (the log the claim wrote last), on `now`'s clock. */
  recentStarts: number[];
  /** Now on the clock that start times are kept on (the database's, on PostgreSQL). */
  now: number;
}

/**
 * A claim of one limited operation's jobs, in one transaction that holds the operation's row of
 * operation_limits: the engine's `room` says how many may start from what the claim found, and
 * `startsAfter` what the rate limit keeps once `started` have (undefined: nothing to keep).
 * Takeovers of its abandoned jobs come first (they count as starts but were running already).
 */
export interface LimitedClaim extends DriverClaim {
  operation: string;
  room(state: LimitState): { takeOver: number; start: number };
  startsAfter(state: LimitState, started: number): number[] | undefined;
}

/** Puts a claimed job back in the queue: a retry (the attempt counts, the error is kept) or a release (it does not). */
export interface Requeue {
  runAt: number;
  /** The attempt's problem, kept on the job while it waits (retries). */
  error?: ProblemDetails;
  /** False for a release: the interrupted attempt is given back. */
  countsAttempt: boolean;
}

/** Which jobs to list: the engine's query with its cursor read as a position and its page size settled. */
export interface JobListing {
  principal?: string;
  statuses?: readonly JobState[];
  operation?: string;
  createdAfter?: number;
  createdBefore?: number;
  /** Only jobs accepted before the one at this position; omitted: from the newest. */
  beforePosition?: number;
  limit: number;
  withInput: boolean;
}

/** A listed job and its position: where it was accepted in the database's insertion order (what a cursor encodes). */
export interface ListedJob {
  position: number;
  job: JobRecord;
}

/**
 * Where an event sits in the order the log across jobs is read in, which is commit order:
 * compared by `transaction`, then `row`. SQLite: transaction 0 and the row's id (one writer
 * commits at a time, so ids are handed out in commit order). PostgreSQL: the id of the
 * transaction that wrote the event (xid8) and the row's id; a read returns only events of
 * transactions older than every transaction still running, so no event can later commit
 * before a position already read (see the PostgreSQL driver's statements).
 */
export interface EventPosition {
  transaction: bigint;
  row: number;
}

/** A read of the event log across jobs: the events after a position that match, oldest first. */
export interface EventLogRead {
  after: EventPosition;
  /** One principal's jobs' events; omitted: every principal's. */
  principal?: string;
  operation?: string;
  /** Events of these types (job.running, job.progress…); omitted: every type. */
  types?: readonly string[];
  limit: number;
}

/** One event of the log across jobs, with what the engine needs of its job. */
export interface LoggedEvent {
  position: EventPosition;
  jobId: string;
  principal: string;
  operation: string;
  /** The job's version after the change (0: its acceptance). */
  version: number;
  type: string;
  /** The job as JSON after the change; null for the acceptance, which is built from the job's own fields. */
  data: string | null;
  maxAttempts: number;
  jobCreatedAt: number;
}

export interface EventLogPage {
  events: LoggedEvent[];
  /** Where the read stopped: no event up to here that matches is missing from `events`; the next read starts here. */
  scannedTo: EventPosition;
  /** Committed events after `scannedTo` wait for an older transaction still running (PostgreSQL): read again soon. */
  heldBack: boolean;
}

export interface Driver {
  /** Which database: "sqlite" or "postgres". */
  readonly kind: string;
  /** True when changes committed by other processes are announced through DriverEvents (LISTEN/NOTIFY); otherwise waiters poll jobVersions. */
  readonly announcesOtherProcesses: boolean;

  /** Connects, applies migrations, and starts announcing. Called once, before anything else. */
  start(hooks: DriverHooks): Promise<void>;

  // --- acceptance and reading -----------------------------------------------------------
  /**
   * Stores each job and its key record durably, unless a live record binds the key; a batch (the
   * submissions of one event-loop turn) in one transaction or statement. One outcome per write, in order.
   */
  acceptJobs(writes: AcceptWrite[]): Promise<Settled<AcceptResult>[]>;
  /** One principal's job with its webhook deliveries and notifications; undefined for an unknown id or another principal's job. */
  getJob(principal: string, id: string): Promise<JobRecord | undefined>;
  /** The principal a job belongs to; undefined for an unknown id. */
  jobPrincipal(id: string): Promise<string | undefined>;
  /** The current version of each job that exists (for waiters' change checks). */
  jobVersions(ids: string[]): Promise<Map<string, number>>;
  /** The job and its events with a version above `afterVersion`, oldest first. */
  getJobEvents(principal: string, id: string, afterVersion: number): Promise<{ job: JobRecord; events: JobEvent[] } | undefined>;
  /** The events of every job after a position, in commit order (see EventPosition), filtered and at most `read.limit`. */
  readEventLog(read: EventLogRead): Promise<EventLogPage>;
  /** A position after every event committed so far: where a stream with no cursor starts; no position ever given out lies beyond it. */
  eventLogHead(): Promise<EventPosition>;
  /** Up to `limit` jobs that match, latest position first (an index the acceptance already writes serves the order). */
  listJobs(listing: JobListing): Promise<ListedJob[]>;
  /** The number of jobs per operation and state, ordered by operation then state. */
  countJobs(): Promise<JobCount[]>;
  /** Per operation with queued jobs due at `now`, the earliest run time among them, ordered by operation. */
  oldestDueJobs(now: number): Promise<Array<{ operation: string; dueSince: number }>>;
  /**
   * Per minute (its first millisecond), the jobs accepted at or after `since` (the id range from
   * `firstIdSince`: ids begin with their acceptance time) and the jobs finished since then per state.
   */
  jobActivity(since: number, firstIdSince: string): Promise<{ accepted: MinuteCount[]; finished: Array<MinuteCount & { status: JobState }> }>;
  /** One principal's job's input JSON. */
  jobInput(principal: string, id: string): Promise<string | undefined>;
  /** The stored record of a key, live or expired. */
  getIdempotencyRecord(principal: string, operation: string, key: string): Promise<IdempotencyRecord | undefined>;
  countIdempotencyRecords(): Promise<number>;

  // --- the life of a job ----------------------------------------------------------------
  /** Cancels a queued job (it ends canceled), or flags a running one (`signalled`). */
  cancelJob(principal: string, id: string, now: number): Promise<CancelOutcome>;
  /** Queues a failed or canceled job again (attempts 0, no result, error or progress, due now), recording job.queued. `principal` undefined: any principal's. */
  retryEndedJob(principal: string | undefined, id: string, now: number): Promise<RetryEndedOutcome>;
  /**
   * Ends abandoned jobs that were being canceled (canceled) or have no attempts left (failed),
   * then claims up to `limit`: abandoned jobs first (their lease expired), then due queued jobs,
   * highest-due first by run time and insertion. Every claim bumps the job's fence.
   */
  claimJobs(claim: DriverClaim): Promise<ClaimedJob[]>;
  /**
   * Claims jobs of one limited operation (accepted with `limited`): locks the operation's limit
   * row, counts its running attempts, and takes over or claims as many as `claim.room` allows,
   * then stores `claim.startsAfter`. claimJobs never claims or takes over a limited job.
   */
  claimLimitedJobs(claim: LimitedClaim): Promise<ClaimedJob[]>;
  /** Extends a lease still held (fence matches and running) by `leaseMs` from now on the lease clock. */
  renewLease(id: string, fence: number, leaseMs: number, now: number): Promise<LeaseState>;
  /** Stores a running job's progress; false when the fence is stale. */
  reportProgress(id: string, fence: number, progress: JobProgress, now: number): Promise<boolean>;
  /**
   * Ends claimed jobs, a batch at once; a job whose cancel was asked meanwhile ends canceled instead
   * (cancel wins). A job that ends succeeded stores its follow-ups with it, and its change records
   * their ids (`children`). One outcome per finish, in order: false when its fence is stale.
   */
  finishJobs(finishes: Finish[]): Promise<Settled<boolean>[]>;
  /** Puts a claimed job back in the queue, or ends it canceled when its cancel was asked. False when the fence is stale. */
  requeueJob(id: string, fence: number, requeue: Requeue, now: number): Promise<boolean>;

  // --- webhook deliveries and notifications ---------------------------------------------
  /** Fails abandoned deliveries with no attempts left, then claims due ones of the claim's kind with a lease; each claim counts as an attempt. */
  claimDeliveries(claim: DeliveryClaim): Promise<WebhookDelivery[]>;
  /** Records a claimed attempt's outcome; false when the claim is no longer this owner's. */
  recordDelivery(delivery: WebhookDelivery, owner: string, outcome: DeliveryOutcome, now: number): Promise<boolean>;

  // --- schedules ------------------------------------------------------------------------
  /** Upserts the declared schedules (a new one's last tick is `now`; a known one keeps its own), marks the others retired; returns every declared one's last tick. */
  declareSchedules(schedules: DeclaredSchedule[], now: number): Promise<Map<string, number>>;
  /**
   * In one transaction: `UPDATE schedules SET last_tick = toTick WHERE name = … AND last_tick = fromTick`,
   * and only if it matched, accepts each write (as acceptJobs does) and records the last job's id.
   * Returns whether it matched, and the schedule's last tick after it.
   */
  advanceSchedule(advance: ScheduleAdvance): Promise<ScheduleAdvanced>;
  listSchedules(): Promise<ScheduleRecord[]>;

  // --- retention and health -------------------------------------------------------------
  /**
   * Deletes up to `limit` expired key records, or else up to `limit` finished jobs (with their
   * events and deliveries): an operation's finished before its time in `finishedBefore.byOperation`, every other one's before `finishedBefore.others`.
   */
  sweepBatch(now: number, finishedBefore: FinishedBefore, limit: number): Promise<{ keys: number; jobs: number }>;
  /** Resolves when the database answers a round trip now; rejects with StoreUnavailableError otherwise. */
  checkReady(): Promise<void>;
  /** Flushes what is pending and disconnects. */
  close(): Promise<void>;
}

/** One migration as a driver applies it: its number, how many there are, its name where it has one, and how long it took once it has run. */
export interface MigrationStep {
  version: number;
  of: number;
  name?: string;
  /** Absent when the migration is about to run; its run time once it has. */
  ms?: number;
}

/** The times before which finished jobs are swept: per operation with its own retention, and for every other operation. */
export interface FinishedBefore {
  others: number;
  byOperation: ReadonlyMap<string, number>;
}
