import { firstJobIdAt, newJobId } from '../core/ids.js';
import { isFinished } from '../core/job-states.js';
import { type ProblemDetails, ProblemError, problem } from '../core/problems.js';
import type { AcceptResult, AcceptWrite, Driver, Finish, NewNotification, RecordedChange } from '../store/driver.js';
import type {
  AcceptOutcome,
  AcceptRequest,
  ActivityMinute,
  CancelOutcome,
  ClaimedJob,
  ClaimPolicy,
  ClaimRequest,
  DeclaredSchedule,
  DeliveryClaim,
  DeliveryOutcome,
  EventQuery,
  EventSlice,
  FollowUpRequest,
  IdempotencyRecord,
  JobCount,
  JobEvent,
  JobOutcome,
  JobPage,
  JobProgress,
  JobQuery,
  JobRecord,
  LeaseState,
  NotificationRoutes,
  RetryEndedOutcome,
  ScheduleRecord,
  ScheduleTake,
  ScheduleTaken,
  Store,
  StoreFault,
  WebhookDelivery,
} from '../store/store.js';
import { isLimited, limitedRoom, startsAfter } from './claim-limits.js';
import { cursorOf, isAfter, logReadOf, positionOf, sliceOf } from './event-log.js';
import { listingOf, pageOf } from './job-listing.js';
import { acceptedJobBody, jobBody } from './job-view.js';
import { TurnBatcher } from './turn-batcher.js';

export interface JobEngineOptions {
  /** Attempts per webhook delivery before it is marked failed. */
  webhookMaxAttempts?: number;
  /** Jobs (or key records) deleted per sweep batch; the event loop is free between batches. */
  sweepBatchSize?: number;
}

// The problems the engine has jobs end with (from the one catalogue).
const ENDINGS = {
  canceledBeforeRunning: problem('jobCanceled', 'DELETE /jobs/{id} canceled the job before it ran.'),
  canceledWhileRunning: problem('jobCanceled', 'DELETE /jobs/{id} canceled the job while it was running.'),
  abandoned: problem('jobLeaseExpired', 'The job was running when its worker stopped renewing the lease, and it has no attempts left.'),
};

/**
 * The job engine: every rule about jobs, over a storage driver that only does I/O. It decides
 * replays against reused keys, chooses job and webhook ids, says what each change records (the
 * job's snapshot as its event, and the webhook envelope when a job with a callback finishes),
 * which problems abandoned and canceled jobs end with, and sweeps in batches; it fans the
 * driver's commit announcements out to the worker, the dispatcher and the waiters.
 */
export class JobEngine implements Store {
  private readonly queuedListeners: Array<() => void> = [];
  private readonly changedListeners: Array<(jobIds: Set<string>) => void> = [];
  private readonly everythingListeners: Array<() => void> = [];
  private readonly deliveryListeners: Array<() => void> = [];
  private readonly faultListeners: Array<(fault: StoreFault) => void> = [];
  private readonly webhookMaxAttempts: number;
  private readonly sweepBatchSize: number;
  private notificationRoutes: NotificationRoutes = { byOperation: new Map(), maxAttempts: 8 };
  // The hot writes go to the driver a turn's worth at a time.
  private readonly accepts: TurnBatcher<AcceptWrite, AcceptResult>;
  private readonly finishes: TurnBatcher<Finish, boolean>;
  /** Operations with a priority or a limit; empty: every claim is the plain one. */
  private claimPolicies: ReadonlyMap<string, ClaimPolicy> = new Map();
  /** Limited operations, claimed one after another (in turn, first) after or before the plain claim. */
  private limitedOperations: Array<[string, ClaimPolicy]> = [];
  private anyPriority = false;
  /** Counts claims, to alternate which lane a claim fills first. */
  private claims = 0;

  private constructor(
    readonly driver: Driver,
    options: JobEngineOptions,
  ) {
    this.webhookMaxAttempts = options.webhookMaxAttempts ?? 8;
    this.sweepBatchSize = options.sweepBatchSize ?? 500;
    this.accepts = new TurnBatcher((writes) => driver.acceptJobs(writes));
    this.finishes = new TurnBatcher((finishes) => driver.finishJobs(finishes));
  }

  /** Starts the driver (connects, migrates) under a new engine. */
  static async start(driver: Driver, options: JobEngineOptions = {}): Promise<JobEngine> {
    const engine = new JobEngine(driver, options);
    await driver.start({
      recordChange: (job, type, now) => engine.recordChange(job, type, now),
      notifies: (operation) => engine.notificationRoutes.byOperation.has(operation),
      problems: ENDINGS,
      events: {
        jobsQueued: () => {
          for (const listener of engine.queuedListeners) listener();
        },
        jobsChanged: (jobIds) => {
          for (const listener of engine.changedListeners) listener(jobIds);
        },
        everythingChanged: () => {
          for (const listener of engine.everythingListeners) listener();
        },
        deliveriesQueued: () => {
          for (const listener of engine.deliveryListeners) listener();
        },
        fault: (fault) => {
          for (const listener of engine.faultListeners) listener(fault);
        },
      },
    });
    return engine;
  }

  get announcesOtherProcesses(): boolean {
    return this.driver.announcesOtherProcesses;
  }

  routeNotifications(routes: NotificationRoutes): void {
    this.notificationRoutes = routes;
  }

  /**
   * What a change records: the job as GET /jobs/{id} shows it, as the event's data; when a job
   * with a Callback-URL reaches a terminal state, the webhook delivery of that event; and when a
   * job of an operation with notifiers does, a notification for each notifier that listens for it.
   */
  private recordChange(job: JobRecord, type: string, now: number): RecordedChange {
    const data = jobBody(job);
    if (!isFinished(job.status)) return { data };
    const routes = this.notificationRoutes.byOperation.get(job.operation);
    if (!job.callbackUrl && !routes) return { data };
    const timestamp = JSON.stringify(new Date(now).toISOString());
    const recorded: RecordedChange = { data };
    if (job.callbackUrl) {
      const payload = `{"type":${JSON.stringify(type)},"timestamp":${timestamp},"data":${data}}`;
      recorded.delivery = { id: `msg_${newJobId(now)}`, url: job.callbackUrl, eventType: type, payload, maxAttempts: this.webhookMaxAttempts };
    }
    const notifications: NewNotification[] = [];
    for (const route of routes ?? []) {
      if (!route.on.has(type)) continue;
      const id = `ntf_${newJobId(now)}`;
      const payload = `{"id":${JSON.stringify(id)},"notifier":${JSON.stringify(route.notifier)},"type":${JSON.stringify(type)},"timestamp":${timestamp},"principal":${JSON.stringify(job.principal)},"job":${data}}`;
      notifications.push({ id, notifier: route.notifier, eventType: type, payload, maxAttempts: this.notificationRoutes.maxAttempts });
    }
    if (notifications.length > 0) recorded.notifications = notifications;
    return recorded;
  }

  useClaimPolicies(policies: ReadonlyMap<string, ClaimPolicy>): void {
    const kept = [...policies].filter(([, policy]) => policy.priority !== 0 || isLimited(policy));
    this.claimPolicies = new Map(kept);
    this.limitedOperations = kept.filter(([, policy]) => isLimited(policy));
    this.anyPriority = kept.some(([, policy]) => policy.priority !== 0);
  }

  /** What the driver stores for a new job: its id, when it is due, and its operation's claim policy. */
  private acceptWrite(request: AcceptRequest): AcceptWrite {
    const jobId = newJobId(request.now);
    const runAt = request.runAt ?? request.now;
    const policy = this.claimPolicies.size === 0 ? undefined : this.claimPolicies.get(request.operation);
    const priority = policy?.priority ?? 0;
    const write: AcceptWrite =
      runAt > request.now
        ? { ...request, jobId, runAt, acceptedEvent: acceptedJobBody({ ...request, id: jobId, createdAt: request.now, runAt, priority }) }
        : { ...request, jobId, runAt: request.now };
    if (policy) {
      write.priority = priority;
      if (isLimited(policy)) write.limited = true;
    }
    return write;
  }

  async acceptJob(request: AcceptRequest): Promise<AcceptOutcome> {
    const result = await this.accepts.add(this.acceptWrite(request));
    if (result.kind === 'created') return result;
    // The key is bound: the same request again is a replay; another request under it is refused.
    return result.fingerprint === request.fingerprint ? { kind: 'replayed', jobId: result.jobId } : { kind: 'mismatch', jobId: result.jobId };
  }

  getJob(principal: string, id: string): Promise<JobRecord | undefined> {
    return this.driver.getJob(principal, id);
  }

  jobPrincipal(id: string): Promise<string | undefined> {
    return this.driver.jobPrincipal(id);
  }

  jobVersions(ids: string[]): Promise<Map<string, number>> {
    return this.driver.jobVersions(ids);
  }

  getJobEvents(principal: string, id: string, afterVersion: number): Promise<{ job: JobRecord; events: JobEvent[] } | undefined> {
    return this.driver.getJobEvents(principal, id, afterVersion);
  }

  async eventCursor(): Promise<string> {
    return cursorOf(await this.driver.eventLogHead());
  }

  async checkEventCursor(cursor: string): Promise<void> {
    const position = positionOf(cursor);
    if (isAfter(position, await this.driver.eventLogHead())) {
      throw new ProblemError('lastEventIdInvalid', 'Last-Event-ID is beyond every event of this database; reconnect without it to start from now.');
    }
  }

  async readEvents(query: EventQuery): Promise<EventSlice> {
    return sliceOf(await this.driver.readEventLog(logReadOf(query)));
  }

  async listJobs(query: JobQuery): Promise<JobPage> {
    const listing = listingOf(query);
    return pageOf(listing, await this.driver.listJobs(listing));
  }

  countJobs(): Promise<JobCount[]> {
    return this.driver.countJobs();
  }

  oldestDueJobs(now: number): Promise<Array<{ operation: string; dueSince: number }>> {
    return this.driver.oldestDueJobs(now);
  }

  async jobActivity(since: number): Promise<ActivityMinute[]> {
    const { accepted, finished } = await this.driver.jobActivity(since, firstJobIdAt(since));
    const minutes = new Map<number, ActivityMinute>();
    const minuteOf = (minute: number) => {
      let entry = minutes.get(minute);
      if (!entry) minutes.set(minute, (entry = { minute, accepted: 0, succeeded: 0, failed: 0, canceled: 0 }));
      return entry;
    };
    for (const row of accepted) minuteOf(row.minute).accepted += row.count;
    for (const row of finished) {
      if (row.status === 'succeeded' || row.status === 'failed' || row.status === 'canceled') minuteOf(row.minute)[row.status] += row.count;
    }
    return [...minutes.values()].sort((a, b) => a.minute - b.minute);
  }

  jobInput(principal: string, id: string): Promise<string | undefined> {
    return this.driver.jobInput(principal, id);
  }

  getIdempotencyRecord(principal: string, operation: string, key: string): Promise<IdempotencyRecord | undefined> {
    return this.driver.getIdempotencyRecord(principal, operation, key);
  }

  countIdempotencyRecords(): Promise<number> {
    return this.driver.countIdempotencyRecords();
  }

  cancelJob(principal: string, id: string, now: number): Promise<CancelOutcome> {
    return this.driver.cancelJob(principal, id, now);
  }

  retryEndedJob(principal: string | undefined, id: string, now: number): Promise<RetryEndedOutcome> {
    return this.driver.retryEndedJob(principal, id, now);
  }

  claimJobs(claim: ClaimRequest): Promise<ClaimedJob[]> {
    // The common path: no operation has a priority or a limit, and the claim is the driver's one statement.
    if (this.claimPolicies.size === 0) return this.driver.claimJobs(claim);
    return this.claimWithPolicies(claim);
  }

  /**
   * A claim when some operation has a priority or a limit: the plain jobs (by priority when some
   * operation has one), and each limited operation's in its own transaction under its limit row.
   * Which comes first alternates from claim to claim, so neither lane starves the other.
   */
  private async claimWithPolicies(claim: ClaimRequest): Promise<ClaimedJob[]> {
    const claimed: ClaimedJob[] = [];
    const plainFirst = this.claims++ % 2 === 0;
    const plain = async () => {
      if (claimed.length < claim.limit)
        claimed.push(...(await this.driver.claimJobs({ ...claim, limit: claim.limit - claimed.length, byPriority: this.anyPriority })));
    };
    if (plainFirst) await plain();
    const count = this.limitedOperations.length;
    for (let i = 0; i < count && claimed.length < claim.limit; i++) {
      const [operation, policy] = this.limitedOperations[(this.claims + i) % count] as [string, ClaimPolicy];
      const wanted = claim.limit - claimed.length;
      claimed.push(
        ...(await this.driver.claimLimitedJobs({
          ...claim,
          limit: wanted,
          operation,
          room: (state) => limitedRoom(policy, state, wanted),
          startsAfter: (state, started) => startsAfter(policy, state, started),
        })),
      );
    }
    if (!plainFirst) await plain();
    return claimed;
  }

  reportProgress(id: string, fence: number, progress: JobProgress, now: number): Promise<boolean> {
    return this.driver.reportProgress(id, fence, progress, now);
  }

  renewLease(id: string, fence: number, leaseMs: number, now: number): Promise<LeaseState> {
    return this.driver.renewLease(id, fence, leaseMs, now);
  }

  finishJob(id: string, fence: number, outcome: JobOutcome, now: number, followUps?: readonly FollowUpRequest[]): Promise<boolean> {
    // Only a success stores follow-ups; a finish without any is the same write as ever.
    if (!followUps?.length || outcome.status !== 'succeeded') return this.finishes.add({ id, fence, outcome, now });
    return this.finishes.add({ id, fence, outcome, now, followUps: followUps.map((followUp) => this.followUpWrite(id, followUp, now)) });
  }

  /**
   * A follow-up as its parent's finish stores it: accepted as any job is (its id, its operation's
   * claim policy), created when the parent finishes, starting then or at its runAt if later, its key
   * binding for the retention from its start, and naming its parent (in its acceptance's event too).
   */
  private followUpWrite(parentId: string, followUp: FollowUpRequest, now: number): AcceptWrite {
    const { keyRetentionMs, ...request } = followUp;
    const runAt = Math.max(now, followUp.runAt ?? now);
    const accepted = { ...request, parentId, now, runAt, keyExpiresAt: runAt + keyRetentionMs };
    return { ...this.acceptWrite(accepted), parentId };
  }

  retryJob(id: string, fence: number, error: ProblemDetails, runAt: number, now: number): Promise<boolean> {
    return this.driver.requeueJob(id, fence, { runAt, error, countsAttempt: true }, now);
  }

  releaseJob(id: string, fence: number, now: number): Promise<boolean> {
    return this.driver.requeueJob(id, fence, { runAt: now, countsAttempt: false }, now);
  }

  claimDeliveries(claim: DeliveryClaim): Promise<WebhookDelivery[]> {
    return this.driver.claimDeliveries(claim);
  }

  recordDelivery(delivery: WebhookDelivery, owner: string, outcome: DeliveryOutcome, now: number): Promise<boolean> {
    return this.driver.recordDelivery(delivery, owner, outcome, now);
  }

  /**
   * Deletes expired key records, then jobs finished before the time (their operation's own, where
   * it has one), a batch at a time: each batch is its own short transaction, and the event loop
   * serves requests between batches.
   */
  async sweep(now: number, jobsFinishedBefore: number, byOperation: ReadonlyMap<string, number> = new Map()): Promise<{ keys: number; jobs: number }> {
    const total = { keys: 0, jobs: 0 };
    for (;;) {
      const batch = await this.driver.sweepBatch(now, { others: jobsFinishedBefore, byOperation }, this.sweepBatchSize);
      total.keys += batch.keys;
      total.jobs += batch.jobs;
      if (batch.keys + batch.jobs === 0) return total;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  declareSchedules(schedules: DeclaredSchedule[], now: number): Promise<Map<string, number>> {
    return this.driver.declareSchedules(schedules, now);
  }

  /** The ticks' jobs are made as acceptJob's are (ids, claim policy); the driver moves the last tick and stores them together. */
  takeScheduleTicks(take: ScheduleTake): Promise<ScheduleTaken> {
    const writes = take.jobs.map((request) => this.acceptWrite(request));
    return this.driver.advanceSchedule({ name: take.name, fromTick: take.fromTick, toTick: take.toTick, writes });
  }

  listSchedules(): Promise<ScheduleRecord[]> {
    return this.driver.listSchedules();
  }

  onJobsQueued(listener: () => void): void {
    this.queuedListeners.push(listener);
  }

  onJobsChanged(listener: (jobIds: Set<string>) => void): void {
    this.changedListeners.push(listener);
  }

  onEverythingChanged(listener: () => void): void {
    this.everythingListeners.push(listener);
  }

  onDeliveriesQueued(listener: () => void): void {
    this.deliveryListeners.push(listener);
  }

  onFault(listener: (fault: StoreFault) => void): void {
    this.faultListeners.push(listener);
  }

  checkReady(): Promise<void> {
    return this.driver.checkReady();
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}
