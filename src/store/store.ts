import type { JobState } from '../core/job-states.js';
import type { ProblemDetails } from '../core/problems.js';

/**
 * What the HTTP layer, the worker, the dispatcher and the sweeper ask of the jobs: the job
 * engine's interface (src/engine/job-engine.ts implements it over a storage driver, ./driver.ts).
 * Times are milliseconds since the epoch.
 *
 * Terms: a *job* is one accepted submission of an asynchronous operation. A worker *claims*
 * a job by taking a *lease* on it (an owner and an expiry) and bumping its *fence*, a counter
 * that every later write must present; a worker whose lease was taken over holds a stale
 * fence and its writes are refused.
 */
export interface Store {
  /** Stores a job and its idempotency record in one durable transaction, or finds the earlier one. */
  acceptJob(request: AcceptRequest): Promise<AcceptOutcome>;
  /** One job of one principal; undefined for an unknown id or another principal's job. */
  getJob(principal: string, id: string): Promise<JobRecord | undefined>;
  /** Whose job this is (undefined: no such job); operators' requests read and act on a job as its principal. */
  jobPrincipal(id: string): Promise<string | undefined>;
  /** Cancels a queued job, or flags a running one so its handler is aborted. */
  cancelJob(principal: string, id: string, now: number): Promise<CancelOutcome>;
  /**
   * Queues a failed or canceled job again, as new: the same id, a fresh attempt budget, no result or
   * error, due now, and a job.queued event. `principal` undefined: any principal's job (operators).
   */
  retryEndedJob(principal: string | undefined, id: string, now: number): Promise<RetryEndedOutcome>;
  /**
   * Claims up to `limit` runnable jobs (queued and due, or running with an expired lease). Abandoned
   * jobs with no attempts left fail (job-lease-expired); abandoned ones whose cancel was asked end canceled.
   */
  claimJobs(claim: ClaimRequest): Promise<ClaimedJob[]>;
  /**
   * The operations' claim policies (x-asyncfirst priority, concurrency, rateLimit), set once before
   * jobs are accepted or claimed: acceptance stores each job's priority and whether it is limited,
   * and claims order by priority and keep the limits. Operations not in the map have neither.
   */
  useClaimPolicies(policies: ReadonlyMap<string, ClaimPolicy>): void;
  /** Stores a running job's progress (and a job.progress event); false when the fence is stale. */
  reportProgress(id: string, fence: number, progress: JobProgress, now: number): Promise<boolean>;
  /** Extends a lease the worker still holds by `leaseMs` from now (on the store's lease clock); tells whether it is held and whether cancel was asked. */
  renewLease(id: string, fence: number, leaseMs: number, now: number): Promise<LeaseState>;
  /**
   * Records the end of a claimed job; false when the fence is stale (the write is refused). A job
   * that ends succeeded stores its follow-ups (ctx.enqueue) in the same transaction, as its
   * children; a job that ends otherwise (or a refused write) stores none of them.
   */
  finishJob(id: string, fence: number, outcome: JobOutcome, now: number, followUps?: readonly FollowUpRequest[]): Promise<boolean>;
  /** Puts a claimed job back in the queue to run again at `runAt`, keeping the last error. */
  retryJob(id: string, fence: number, error: ProblemDetails, runAt: number, now: number): Promise<boolean>;
  /** Gives a claimed job back without counting the attempt (graceful shutdown). */
  releaseJob(id: string, fence: number, now: number): Promise<boolean>;
  /** The events of one principal's job with a version above `afterVersion`, oldest first (undefined: no such job). */
  getJobEvents(principal: string, id: string, afterVersion: number): Promise<{ job: JobRecord; events: JobEvent[] } | undefined>;
  /** The cursor after every event committed so far: where a stream of every job's events with no Last-Event-ID starts. */
  eventCursor(): Promise<string>;
  /** A client's cursor (Last-Event-ID) checked: one no stream gave out (malformed, or beyond any given out) is ProblemError last-event-id-invalid. */
  checkEventCursor(cursor: string): Promise<void>;
  /** Events of every job (or one principal's) after a cursor, in commit order, filtered; `cursor` is where to read on from. */
  readEvents(query: EventQuery): Promise<EventSlice>;
  /** The current version of each of these jobs that exists; waiters compare them to find changes made by other processes. */
  jobVersions(ids: string[]): Promise<Map<string, number>>;
  /** One page of jobs matching the query, newest (last accepted) first; `nextCursor` asks for the next page. Throws ProblemError cursor-invalid for a cursor no page gave out. */
  listJobs(query: JobQuery): Promise<JobPage>;
  /** How many jobs there are of each operation in each state (pairs with no jobs are left out). */
  countJobs(): Promise<JobCount[]>;
  /** Per operation with due queued jobs, when its longest-due one became due (its run time), for queue lag. */
  oldestDueJobs(now: number): Promise<Array<{ operation: string; dueSince: number }>>;
  /** Per minute since `since`, how many jobs were accepted and how many finished in each end state (the dashboard's chart). */
  jobActivity(since: number): Promise<ActivityMinute[]>;
  /** The canonical JSON input ({body, params, query}) of one principal's job; undefined for an unknown id or another principal's job. */
  jobInput(principal: string, id: string): Promise<string | undefined>;
  /** The idempotency record stored for a key, live or expired (until the sweeper deletes it). */
  getIdempotencyRecord(principal: string, operation: string, key: string): Promise<IdempotencyRecord | undefined>;
  /** How many idempotency records are stored, live or expired. */
  countIdempotencyRecords(): Promise<number>;
  /** True when changes made by other processes are announced (onJobsChanged fires for them); waiters then poll only as a backstop. */
  readonly announcesOtherProcesses: boolean;
  /** Claims due webhook deliveries (or, with kind 'notification', notifications) with a lease; each claim counts as an attempt. */
  claimDeliveries(claim: DeliveryClaim): Promise<WebhookDelivery[]>;
  /** Records how a claimed delivery attempt ended; `nextAttemptAt` applies when it stays pending. */
  recordDelivery(delivery: WebhookDelivery, owner: string, outcome: DeliveryOutcome, now: number): Promise<boolean>;
  /**
   * Deletes expired idempotency records and jobs finished before `jobsFinishedBefore` (with their
   * events and deliveries); a job of an operation in `byOperation` goes when it finished before that operation's time instead.
   */
  sweep(now: number, jobsFinishedBefore: number, byOperation?: ReadonlyMap<string, number>): Promise<{ keys: number; jobs: number }>;
  /** Records the schedules this process ticks (a new one starts from `now`) and marks the others retired; returns each one's last tick. */
  declareSchedules(schedules: DeclaredSchedule[], now: number): Promise<Map<string, number>>;
  /**
   * Moves a schedule's last tick from `fromTick` to `toTick` if it is still `fromTick`, and then
   * accepts the ticks' jobs in the same transaction: of all processes that try one move, one wins.
   */
  takeScheduleTicks(take: ScheduleTake): Promise<ScheduleTaken>;
  /** Every schedule recorded in the database, by name (those no process declares any more too). */
  listSchedules(): Promise<ScheduleRecord[]>;
  /** Called after each commit that made new jobs runnable (wakes the in-process worker). */
  onJobsQueued(listener: () => void): void;
  /** Called after each commit with the ids of the jobs it changed (wakes long-polls and streams); with announcesOtherProcesses, for other processes' commits too. */
  onJobsChanged(listener: (jobIds: Set<string>) => void): void;
  /** Called when changes may have been missed or were too many to name: every waiter should look again. */
  onEverythingChanged(listener: () => void): void;
  /**
   * Which notifiers hear of which operations' jobs (x-asyncfirst.notify, settled at start): a job
   * of a routed operation that ends records one notification per route that listens for its event,
   * in the transaction that ended it. Jobs of other operations record nothing more.
   */
  routeNotifications(routes: NotificationRoutes): void;
  /** Called after each commit that queued webhook deliveries or notifications (wakes the in-process dispatchers). */
  onDeliveriesQueued(listener: () => void): void;
  /** Called once per fault (the database file lost, writes failing for a cause other than a busy lock), for logging. */
  onFault(listener: (fault: StoreFault) => void): void;
  /** Resolves when the store can serve requests now (a round trip); rejects with StoreUnavailableError otherwise. */
  checkReady(): Promise<void>;
  /** Flushes pending writes and closes the store. */
  close(): Promise<void>;
}

export interface AcceptRequest {
  principal: string;
  operation: string;
  key: string;
  fingerprint: string;
  /** The canonical JSON of the job's input ({body, params, query}). */
  input: string;
  maxAttempts: number;
  /** Where to POST the job's terminal event (the submission's Callback-URL). */
  callbackUrl?: string;
  /** The trace context active when the job was submitted, if a trace was being recorded. */
  traceContext?: TraceContext;
  /** When the job may start (Not-Before, enqueue's runAt); omitted: now. Never before `now`. */
  runAt?: number;
  now: number;
  keyExpiresAt: number;
  /** Set on a schedule's tick job: stored with it by advanceSchedule (nothing is written for it otherwise). */
  schedule?: ScheduleTick;
}

/** How an operation's jobs are claimed: their priority, and the limits on their attempts across every process. */
export interface ClaimPolicy {
  priority: number;
  /** The most attempts running at once; undefined: no limit. */
  concurrency?: number | undefined;
  /** At most `max` attempts start in any `perMs` milliseconds; undefined: no limit. */
  rateLimit?: { max: number; perMs: number } | undefined;
}

/**
 * A job a handler asked for with ctx.enqueue, checked against the contract when asked and stored
 * only with its parent's success (a transactional outbox): the parent's principal, its key derived
 * from the parent's id (see src/follow-ups.ts), and the trace context it inherits.
 */
export interface FollowUpRequest {
  principal: string;
  operation: string;
  key: string;
  fingerprint: string;
  /** The canonical JSON of the job's input ({body, params, query}). */
  input: string;
  maxAttempts: number;
  traceContext?: TraceContext;
  /** When the child may start (ctx.enqueue's runAt); omitted or past: when the parent finishes. */
  runAt?: number;
  /** How long the child's key binds after it is stored (IDEMPOTENCY_RETENTION), from its start. */
  keyRetentionMs: number;
}

/** A W3C trace context (https://www.w3.org/TR/trace-context/), as the headers carry it. */
export interface TraceContext {
  traceparent: string;
  tracestate?: string;
}

export type AcceptOutcome =
  | { kind: 'created'; jobId: string }
  | { kind: 'replayed'; jobId: string }
  /** The key was used for another request; the stored record is unchanged. */
  | { kind: 'mismatch'; jobId: string };

export interface JobRecord {
  id: string;
  principal: string;
  operation: string;
  status: JobState;
  attempts: number;
  maxAttempts: number;
  /** Higher is claimed first among due jobs (the operation's x-asyncfirst priority when the job was accepted). */
  priority: number;
  cancelRequested: boolean;
  progress?: JobProgress;
  callbackUrl?: string;
  /** JSON text of the handler's result, when succeeded. */
  result?: string;
  /** When succeeded with a resource location instead of a body (GET /jobs/{id}/result answers 303). */
  resultLocation?: string;
  error?: ProblemDetails;
  /** Webhook deliveries, when the submission asked for a callback. */
  deliveries?: WebhookDelivery[];
  /** Notifications recorded for the job's endings, when its operation has notifiers (x-asyncfirst.notify). */
  notifications?: WebhookDelivery[];
  runAt: number;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number;
  /** Bumped by every change that records an event: the version of the job's newest event (0: none yet). */
  version: number;
  /** Bumped by every claim: the fence the current (or last) attempt's writes present. */
  fence: number;
  /** The worker holding the lease of a running job. */
  leaseOwner?: string;
  /**
   * While a lease is held: how long it had left when the job was read, on the store's lease clock
   * (0 or less: it has lapsed and the next claim takes the job over). Never a time of day: SQLite
   * measures leases on the machine's monotonic clock, PostgreSQL on the database's.
   */
  leaseExpiresInMs?: number;
  /** The canonical JSON of the job's input ({body, params, query}); only when a listing asked for it (`withInput`). */
  input?: string;
  /** The job whose success enqueued this one (ctx.enqueue). */
  parentId?: string;
  /** The jobs this one's success enqueued, oldest first: read by getJob, and given with job.succeeded. */
  children?: string[];
  /** The schedule tick that made the job; read by getJob only (absent elsewhere, and for a job a schedule did not make). */
  schedule?: ScheduleTick;
}

/** A recurring schedule's tick: the schedule's name and the tick's time (ISO 8601), as the handler's context.schedule and the job show it. */
export interface ScheduleTick {
  name: string;
  tick: string;
}

/** Which jobs listJobs returns: the filters combine, and an omitted one does not filter. */
export interface JobQuery {
  /** One principal's jobs; omitted: every principal's (for operators). */
  principal?: string;
  /** Jobs in any of these states (an empty list matches none). */
  statuses?: readonly JobState[];
  operation?: string;
  /** Jobs created after this time (exclusive). */
  createdAfter?: number;
  /** Jobs created before this time (exclusive). */
  createdBefore?: number;
  /** Jobs per page: 50 when omitted, at most 200. */
  limit?: number;
  /** The `nextCursor` of the page before: this page starts after its last job. */
  cursor?: string;
  /** Each job's input too (it can be large: only when the caller reads it). */
  withInput?: boolean;
}

/** Which events of the log across jobs to read (GET /jobs/events). */
export interface EventQuery {
  /** One principal's jobs' events; omitted: every principal's (for operators). */
  principal?: string;
  operation?: string;
  /** Events that leave a job in one of these states (running: job.running and job.progress). */
  statuses?: readonly JobState[];
  /** The cursor to read after (an event's, or the one `eventCursor` or a read gave). */
  after: string;
  /** Events per read: 100 when omitted. */
  limit?: number;
}

/** One event of the log across jobs, as a stream sends it. */
export interface StreamedEvent {
  /** Its position, opaque: the SSE id. */
  cursor: string;
  jobId: string;
  principal: string;
  type: string;
  /** The job as JSON, as it was after the change. */
  data: string;
}

export interface EventSlice {
  events: StreamedEvent[];
  /** Read on from here: past every event returned, and past the ones that did not match. */
  cursor: string;
  /** Committed events wait for an older transaction still running: read again soon (nothing announces it). */
  heldBack: boolean;
}

/**
 * A page of a listing, newest first. Paging with `nextCursor` neither repeats nor skips a job that
 * existed when the first page was read; a job accepted meanwhile may or may not appear.
 */
export interface JobPage {
  jobs: JobRecord[];
  /** Absent on the last page. */
  nextCursor?: string;
}

/** How many jobs of one operation are in one state. */
export interface JobCount {
  operation: string;
  status: JobState;
  count: number;
}

/** One minute of activity: `minute` is its first millisecond; minutes with nothing accepted or finished are left out. */
export interface ActivityMinute {
  minute: number;
  accepted: number;
  succeeded: number;
  failed: number;
  canceled: number;
}

/** What binds an Idempotency-Key: the request it was first used with, and the job that request made. */
export interface IdempotencyRecord {
  principal: string;
  operation: string;
  key: string;
  /** The fingerprint of that first request (a replay has the same one). */
  fingerprint: string;
  jobId: string;
  createdAt: number;
  /** From this time on, the key binds nothing: the same key makes a new job. */
  expiresAt: number;
}

/** A running job's progress, as its handler last reported it. */
export interface JobProgress {
  percent: number;
  message?: string;
}

/** One change of a job, as event streams send it. */
export interface JobEvent {
  /** The job's version after the change: 1, 2, 3… per job (the job as accepted is 0). */
  id: number;
  type: string;
  /** The job as JSON, as it was after the change. */
  data: string;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

/**
 * A delivery: a webhook to POST (to `url`), or a notification to hand to the notifier `notifier`
 * names. Both are stored alike, claimed with a lease and retried with backoff.
 */
export interface WebhookDelivery {
  /** The webhook-id (or the notification's id): stable across retries. */
  id: string;
  jobId: string;
  /** The callback URL; empty for a notification. */
  url: string;
  /** The notifier a notification is for; absent for a webhook delivery. */
  notifier?: string;
  eventType: string;
  /** The exact body that is signed and sent. */
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  maxAttempts: number;
  nextAttemptAt: number;
  lastStatus?: number;
  lastError?: string;
  createdAt: number;
  updatedAt: number;
}

/** Which deliveries a dispatcher claims: webhooks (the default) or notifications. */
export type DeliveryKind = 'webhook' | 'notification';

export interface DeliveryClaim {
  owner: string;
  limit: number;
  now: number;
  leaseMs: number;
  /** Omitted: webhook deliveries. */
  kind?: DeliveryKind;
}

/** The events a notifier can be told of: a job's endings. */
export const NOTIFY_EVENTS = ['job.succeeded', 'job.failed', 'job.canceled'] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** One notifier an operation's ending jobs are reported to, and which endings. */
export interface NotificationRoute {
  notifier: string;
  on: ReadonlySet<string>;
}

export interface NotificationRoutes {
  /** Per operation, its routes (an operation without notify has none). */
  byOperation: ReadonlyMap<string, readonly NotificationRoute[]>;
  /** Attempts per notification before it is marked failed. */
  maxAttempts: number;
}

/** A schedule as the database records it for the CLI and the dashboard (its definition is the contract's or code's). */
export interface DeclaredSchedule {
  name: string;
  operation: string;
  cron: string;
  timezone: string;
  windowMs: number;
}

export interface ScheduleRecord extends DeclaredSchedule {
  /** The time of the last tick taken (or skipped), or of the schedule's first declaration. */
  lastTick: number;
  /** The job of the last tick that ran (undefined: none yet). */
  lastJobId?: string;
  declaredAt: number;
  /** When a process with a worker started without this schedule (undefined: declared by the last one). */
  retiredAt?: number;
}

/** One move of a schedule's last tick, with the jobs of the ticks it runs (oldest first; the last tick's is recorded). */
export interface ScheduleTake {
  name: string;
  fromTick: number;
  toTick: number;
  jobs: AcceptRequest[];
}

/** Whether this take won; `lastTick` is the schedule's last tick after it (another process's when it lost). */
export interface ScheduleTaken {
  won: boolean;
  lastTick: number;
  jobIds: string[];
}

export type DeliveryOutcome =
  | { status: 'succeeded'; httpStatus?: number }
  | { status: 'pending' | 'failed'; httpStatus?: number; error: string; nextAttemptAt: number };

export type CancelOutcome =
  | { kind: 'canceled'; job: JobRecord }
  | { kind: 'signalled'; job: JobRecord }
  | { kind: 'finished'; job: JobRecord }
  | { kind: 'not-found' };

/** How a retry of an ended job went: queued again, refused (it is queued, running or succeeded: `job` says), or no such job for this principal. */
export type RetryEndedOutcome = { kind: 'queued'; job: JobRecord } | { kind: 'not-retryable'; job: JobRecord } | { kind: 'not-found' };

export interface ClaimRequest {
  owner: string;
  limit: number;
  /** Wall-clock now: which jobs are due. Leases are measured on the store's own lease clock. */
  now: number;
  leaseMs: number;
}

export interface ClaimedJob {
  id: string;
  principal: string;
  operation: string;
  /** Canonical JSON of {body, params, query}. */
  input: string;
  attempts: number;
  maxAttempts: number;
  fence: number;
  /** When the job was accepted. */
  createdAt: number;
  /** The trace context of the submission, stored at acceptance (the worker's span links to it). */
  traceContext?: TraceContext;
  /** Set when this claim took the job over from a worker whose lease expired: that worker's owner id. */
  takenOverFrom?: string;
}

export interface LeaseState {
  held: boolean;
  cancelRequested: boolean;
}

export type JobOutcome =
  /** `location`: the handler answered with a resource location instead of a body. */
  { status: 'succeeded'; result: string; location?: string } | { status: 'failed'; error: ProblemDetails } | { status: 'canceled'; error: ProblemDetails };

/** A fault of the store worth an operator's attention (each is reported once, not per request). */
export interface StoreFault {
  /**
   * file-lost, sync-failed and write-failed: writes answer 503 (the first two until a restart);
   * notifications-lost: other processes' changes are found by polling until the listener reconnects.
   */
  kind: 'file-lost' | 'sync-failed' | 'write-failed' | 'notifications-lost';
  error: StoreUnavailableError;
}

/** Thrown by a store that cannot serve a request right now (busy past its timeout, closed, I/O error). */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
