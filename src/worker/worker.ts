import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { type ProblemDetails, problem } from '../core/problems.js';
import type { EnqueueInput } from '../enqueue.js';
import { AttemptFollowUps, type PlanFollowUp } from '../follow-ups.js';
import { type AnyHandler, type FollowUpOptions, HttpProblem, PermanentJobError, ResourceLocation } from '../handlers.js';
import type { JobMetrics } from '../metrics/job-metrics.js';
import { type ClaimedJob, type FollowUpRequest, type Store, StoreUnavailableError } from '../store/store.js';
import type { AttemptEnding, AttemptSpan, JobTracing } from '../tracing/job-tracing.js';
import { retryDelayMs } from './backoff.js';
import { ClaimLoop } from './claim-loop.js';

/** What the worker knows about one asynchronous operation. */
export interface JobOperation {
  handler: AnyHandler;
  maxAttempts: number;
  /** How long one attempt may run (x-asyncfirst timeout); undefined: as long as its handler does. */
  timeoutMs?: number | undefined;
  /** This operation's retry delays (x-asyncfirst backoff); undefined: the worker's RETRY_BASE_MS and RETRY_MAX_MS. */
  retry?: { baseMs: number; maxMs: number } | undefined;
  /** Checks a handler's result against the operation's result schema: the JSON to store (what the schema declares), or the violations. */
  writeResult: (result: unknown) => { json: string; violations?: undefined } | { json?: undefined; violations: string };
}

export interface WorkerOptions {
  store: Store;
  operations: Map<string, JobOperation>;
  /** Jobs run at once by this worker. */
  concurrency: number;
  leaseMs: number;
  /** How often to look for due jobs when nothing woke the worker (retries, other processes' jobs, takeovers). */
  pollIntervalMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  log: FastifyBaseLogger;
  /** Observes attempts and endings (GET /metrics). */
  metrics?: JobMetrics;
  /** Traces each attempt (absent: TRACING=off). */
  tracing?: JobTracing;
  /** Checks and shapes handlers' ctx.enqueue calls (absent: ctx.enqueue throws). */
  planFollowUp?: PlanFollowUp;
}

/** How an attempt's recorded outcome ended its job (a cancel asked meanwhile still ends it canceled in the store). */
type EndedAs = 'succeeded' | 'failed' | 'canceled';

interface RunningJob {
  job: ClaimedJob;
  /** Made when the handler first reads `signal`: most handlers never do, and each costs an allocation in the drain loop. */
  controller?: AbortController;
  /** Why the attempt was aborted, if it was (a signal read later starts out aborted with it). */
  abortReason?: Error;
  cancelRequested: boolean;
  leaseLost: boolean;
  released: boolean;
  /**
   * The attempt's outcome has been asked to be recorded: a renewal that then finds the job no longer
   * running sees that write (committed, its sync not yet finished), not another worker's claim. A
   * stale fence is the outcome write's to report.
   */
  outcomeAsked?: boolean;
  /** performance.now() when the lease was last known to be extended (the claim was asked, then each renewal asked). */
  leaseRenewedAt: number;
  /** Fires at SELF_FENCE_SHARE of the lease after leaseRenewedAt: the attempt is given up. */
  selfFence?: NodeJS.Timeout;
  /** What the handler asked for with ctx.enqueue, made at its first call; stored only with the attempt's success. */
  followUps?: AttemptFollowUps;
  done: Promise<void>;
}

/**
 * A worker that could not renew a lease for this share of JOB_LEASE_MS gives the attempt up
 * itself (aborts the handler, writes nothing), before any other worker may take the job over:
 * two handlers never run one job at once, even when renewals stall.
 */
const SELF_FENCE_SHARE = 0.8;

/**
 * Why an attempt's signal fired when it ran past its operation's timeout. Named TimeoutError, as
 * AbortSignal.timeout's reason is, so fetch and other APIs given the signal reject with it.
 */
export class JobTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the attempt ran past its timeout of ${timeoutMs / 1000} s (x-asyncfirst timeout)`);
    this.name = 'TimeoutError';
  }
}

/**
 * The embedded worker: claims due jobs with a lease and a fence, runs their handlers, renews
 * the lease while they run, and records success, a retry with backoff, or failure.
 */
export class Worker {
  readonly owner = `worker-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly running = new Map<string, RunningJob>();
  /**
   * Handlers running now (at most `concurrency`). A job whose handler has returned stays in
   * `running`, its lease renewed, until its outcome is recorded; its slot is free already, so the
   * next claim is asked in the same turn as the outcome and, on SQLite, shares its commit.
   */
  private handlersRunning = 0;
  private readonly claimAskedAt = new WeakMap<ClaimedJob, number>();
  private readonly loop: ClaimLoop<ClaimedJob>;
  /** One timer renews the leases of every running job (the renewals share a commit). */
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WorkerOptions) {
    this.loop = new ClaimLoop({
      free: () => options.concurrency - this.handlersRunning,
      claim: async (limit) => {
        // The lease runs from before the claim was asked: the database may have started it at any point since.
        const askedAt = performance.now();
        const jobs = await options.store.claimJobs({ owner: this.owner, limit, now: Date.now(), leaseMs: options.leaseMs });
        for (const job of jobs) this.claimAskedAt.set(job, askedAt);
        return jobs;
      },
      start: (job) => this.run(job),
      pollIntervalMs: options.pollIntervalMs,
      onError: (error) => options.log.error({ err: error }, 'claiming jobs failed; will try again at the next poll'),
    });
  }

  /** Starts polling, and claims what is due now. */
  start(): void {
    this.loop.start();
    this.renewTimer = setInterval(
      () => {
        for (const entry of this.running.values()) {
          if (entry.released || entry.leaseLost) continue;
          if (!entry.selfFence) this.armSelfFence(entry);
          void this.renew(entry);
        }
      },
      // Several renewals fit before the self-fencing point, so one slow renewal does not give a job up.
      Math.max(20, Math.min(this.options.leaseMs / 5, 5000)),
    );
  }

  /** Jobs may be due: claim up to the free capacity now (called after an acceptance commits). */
  notify(): void {
    this.loop.notify();
  }

  /**
   * Why this worker cannot be counted on to start due jobs, or undefined: its last claim failed,
   * or a claim has been under way for longer than a lease (no statement or lock wait takes that long).
   */
  claimProblem(): string | undefined {
    return this.loop.problem(Math.max(this.options.leaseMs, 30_000));
  }

  /** Number of jobs this worker holds now: handlers running, and outcomes being recorded. */
  get activeJobs(): number {
    return this.running.size;
  }

  /** Aborts a job this worker is running, because DELETE /jobs/{id} asked; false if it runs elsewhere. */
  cancel(jobId: string): boolean {
    const entry = this.running.get(jobId);
    if (!entry) return false;
    entry.cancelRequested = true;
    abort(entry, new Error('the job was canceled'));
    return true;
  }

  /**
   * Stops claiming, lets running handlers finish for up to `graceMs`, then aborts the rest and
   * gives their jobs back to the queue (the interrupted attempt is not counted).
   */
  async stop(graceMs: number): Promise<void> {
    await this.loop.stop();
    const settled = Promise.all([...this.running.values()].map((entry) => entry.done));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([settled, graceOver]);
    clearTimeout(timer);
    // Leases were renewed through the grace period; from here every job has ended or is released.
    clearInterval(this.renewTimer);
    if (outcome !== 'timeout') return;
    const left = [...this.running.values()];
    for (const entry of left) {
      entry.released = true;
      abort(entry, new Error('the server is shutting down'));
    }
    const now = Date.now();
    await Promise.all(left.map((entry) => this.options.store.releaseJob(entry.job.id, entry.job.fence, now).catch(() => false)));
    this.options.log.warn({ jobs: left.map((entry) => entry.job.id) }, 'shutdown grace period over: released running jobs back to the queue');
  }

  private run(job: ClaimedJob): void {
    const leaseRenewedAt = this.claimAskedAt.get(job) ?? performance.now();
    // The self-fencing timer is armed at the first renewal tick (within JOB_LEASE_MS/5, well before
    // its deadline), so the many jobs that finish sooner never pay for a timer.
    const entry = { job, cancelRequested: false, leaseLost: false, released: false, leaseRenewedAt } as RunningJob;
    if (job.takenOverFrom !== undefined) {
      this.options.log.warn(
        { jobId: job.id, attempt: job.attempts, previousOwner: job.takenOverFrom },
        'took over a job whose worker stopped renewing its lease (it crashed, hung, or lost the database)',
      );
    }
    this.running.set(job.id, entry);
    this.handlersRunning++;
    entry.done = this.execute(entry).finally(() => {
      clearTimeout(entry.selfFence);
      this.running.delete(job.id);
      this.notify();
    });
  }

  /** Runs one attempt inside its span (when tracing), which ends with how the attempt ended. */
  private async execute(entry: RunningJob): Promise<void> {
    const span = this.options.tracing?.startAttempt(entry.job);
    let ending: AttemptEnding = 'not-recorded';
    try {
      ending = await this.runAttempt(entry, span);
    } finally {
      span?.end(ending);
    }
  }

  /** Runs the handler and records its outcome; says how the attempt ended. */
  private async runAttempt(entry: RunningJob, span: AttemptSpan | undefined): Promise<AttemptEnding> {
    const { job } = entry;
    const { store, log, metrics } = this.options;
    metrics?.attemptStarted(job.operation, job.attempts, job.createdAt);
    log.info({ jobId: job.id, operation: job.operation, attempt: job.attempts }, 'job started');
    const startedAt = performance.now();
    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      const operation = this.options.operations.get(job.operation);
      if (!operation) throw new PermanentJobError(`no handler is registered for operation "${job.operation}"`);
      const { params, query, body, schedule } = JSON.parse(job.input) as {
        params: unknown;
        query: unknown;
        body: unknown;
        schedule?: { name: string; tick: string };
      };
      const input = { params, query, body };
      let childLog: FastifyBaseLogger | undefined;
      const context = {
        principal: job.principal,
        get signal() {
          return signalOf(entry);
        },
        // The child logger is made only for handlers that log: creating one per job costs in the drain loop.
        get log() {
          childLog ??= log.child({ jobId: job.id });
          return childLog;
        },
        job: { id: job.id, attempt: job.attempts, maxAttempts: job.maxAttempts },
        schedule: schedule && { name: schedule.name, tick: new Date(schedule.tick) },
        progress: (percent: number, message?: string) => this.reportProgress(entry, percent, message),
        enqueue: (operationId: string, input?: EnqueueInput, options?: FollowUpOptions) => this.followUpsOf(entry).enqueue(operationId, input, options),
      };
      // In the attempt's span, the handler's own spans are its children.
      const running = span ? span.run(() => operation.handler(input, context)) : operation.handler(input, context);
      outcome = { ok: true, value: await (operation.timeoutMs === undefined ? running : this.withinTimeout(entry, running, operation.timeoutMs)) };
    } catch (error) {
      outcome = { ok: false, error };
      span?.handlerFailed(error);
    }
    const ranMs = performance.now() - startedAt;
    metrics?.attemptRan(job.operation, ranMs / 1000);
    // The slot is free: claim more now (the claim is asked before the outcome below, so that both
    // are written in one turn: on SQLite one transaction, on PostgreSQL side by side).
    this.handlersRunning--;
    this.notify();
    if (entry.released) return 'released';
    if (entry.leaseLost) return 'lease-lost';

    // While the store is unavailable the outcome is recorded again and again (the lease is still
    // renewed meanwhile), so a database that comes back finds the work done instead of running it
    // again after the lease; past the self-fencing point the attempt is given up to the next claim.
    entry.outcomeAsked = true;
    for (let attempt = 1; ; attempt++) {
      const now = Date.now();
      try {
        let ended: EndedAs | 'retrying' | undefined;
        if (entry.cancelRequested) {
          const recorded = await store.finishJob(
            job.id,
            job.fence,
            { status: 'canceled', error: problem('jobCanceled', 'DELETE /jobs/{id} canceled the job while it was running.') },
            now,
          );
          ended = recorded ? 'canceled' : undefined;
        } else if (outcome.ok) {
          ended = await this.succeed(job, outcome.value, now, ranMs, entry.followUps?.requests);
        } else {
          ended = await this.fail(job, outcome.error, now, ranMs);
        }
        if (ended && ended !== 'retrying') {
          metrics?.jobFinished(job.operation, ended);
          // Failures are logged where they are decided (with their error); these are the other endings.
          if (ended !== 'failed') log.info({ jobId: job.id, operation: job.operation, attempt: job.attempts, durationMs: Math.round(ranMs) }, `job ${ended}`);
        }
        // Undefined: a stale fence refused the write (another claim holds the job now).
        return ended ?? 'lease-lost';
      } catch (error) {
        const lastChance = performance.now() - entry.leaseRenewedAt > this.options.leaseMs * SELF_FENCE_SHARE;
        if (!(error instanceof StoreUnavailableError) || entry.leaseLost || entry.released || lastChance) {
          // The lease expires and another claim takes the job over; nothing acknowledged is lost.
          log.error({ err: error, jobId: job.id, attempts: attempt }, 'recording the job outcome failed');
          return 'not-recorded';
        }
        if (attempt === 1) log.warn({ err: error, jobId: job.id }, 'recording the job outcome failed; trying again while the lease holds');
        await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 50 * 2 ** attempt)));
      }
    }
  }

  /**
   * The handler's outcome, or JobTimeoutError once `timeoutMs` has passed: then the signal fires
   * with that reason and the attempt ends at once (its slot is freed, and it is retried by the
   * usual rules). A handler that ignores its signal runs on unobserved; its outcome is discarded.
   */
  private async withinTimeout(entry: RunningJob, running: unknown, timeoutMs: number): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const reason = new JobTimeoutError(timeoutMs);
        abort(entry, reason);
        reject(reason);
      }, timeoutMs);
    });
    try {
      return await Promise.race([running, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The attempt's follow-ups, collected from its first ctx.enqueue on (most handlers never call it). */
  private followUpsOf(entry: RunningJob): AttemptFollowUps {
    if (!this.options.planFollowUp) throw new TypeError('ctx.enqueue: this worker was started without the contract to check follow-ups against');
    entry.followUps ??= new AttemptFollowUps(this.options.planFollowUp, entry.job);
    return entry.followUps;
  }

  private async reportProgress(entry: RunningJob, percent: number, message?: string): Promise<void> {
    if (!Number.isFinite(percent)) throw new TypeError('progress percent must be a number from 0 to 100');
    if (entry.released || entry.leaseLost) return;
    const progress = { percent: Math.min(100, Math.max(0, percent)), ...(message === undefined ? {} : { message: String(message).slice(0, 200) }) };
    await this.options.store.reportProgress(entry.job.id, entry.job.fence, progress, Date.now());
  }

  /**
   * Records a handler's result, and with it the follow-ups it asked for (a result that does not
   * match the contract fails the job, and drops them); says how the job ended when the write was not refused.
   */
  private async succeed(job: ClaimedJob, value: unknown, now: number, ranMs: number, followUps: FollowUpRequest[] | undefined): Promise<EndedAs | undefined> {
    if (value instanceof ResourceLocation) {
      return (await this.options.store.finishJob(job.id, job.fence, { status: 'succeeded', result: 'null', location: value.location }, now, followUps))
        ? 'succeeded'
        : undefined;
    }
    const written = this.options.operations.get(job.operation)?.writeResult(value) ?? { json: JSON.stringify(value ?? null) };
    const violations = written.violations;
    if (violations !== undefined) {
      this.options.log.error(
        { jobId: job.id, operation: job.operation, attempt: job.attempts, durationMs: Math.round(ranMs), violations },
        'job failed: its handler returned a result that does not match the contract',
      );
      const recorded = await this.options.store.finishJob(
        job.id,
        job.fence,
        {
          status: 'failed',
          error: problem(
            'jobResultInvalid',
            `The ${job.operation} handler returned a result that does not match the operation's response schema: ${violations}`,
          ),
        },
        now,
      );
      return recorded ? 'failed' : undefined;
    }
    return (await this.options.store.finishJob(job.id, job.fence, { status: 'succeeded', result: written.json }, now, followUps)) ? 'succeeded' : undefined;
  }

  /** Records a handler's error: the job fails, or waits for its retry; undefined when the write was refused. */
  private async fail(job: ClaimedJob, error: unknown, now: number, ranMs: number): Promise<EndedAs | 'retrying' | undefined> {
    const message = error instanceof Error ? error.message : String(error);
    // An HttpProblem is the handler's own answer: the job fails at once with the problem it chose.
    const details: ProblemDetails =
      error instanceof HttpProblem
        ? { ...error.problem, attempt: job.attempts }
        : error instanceof JobTimeoutError
          ? problem('jobTimeout', `The attempt ran longer than the operation's timeout of ${error.timeoutMs / 1000} s; its signal was aborted.`, {
              attempt: job.attempts,
            })
          : problem('jobHandlerFailed', message, { attempt: job.attempts });
    const permanent = error instanceof PermanentJobError || error instanceof HttpProblem;
    if (permanent || job.attempts >= job.maxAttempts) {
      this.options.log.warn({ jobId: job.id, operation: job.operation, attempt: job.attempts, durationMs: Math.round(ranMs), err: error }, 'job failed');
      return (await this.options.store.finishJob(job.id, job.fence, { status: 'failed', error: details }, now)) ? 'failed' : undefined;
    }
    const retry = this.options.operations.get(job.operation)?.retry;
    const delay = retryDelayMs(job.attempts, retry?.baseMs ?? this.options.retryBaseMs, retry?.maxMs ?? this.options.retryMaxMs);
    this.options.log.info(
      { jobId: job.id, operation: job.operation, attempt: job.attempts, durationMs: Math.round(ranMs), retryInMs: delay, err: error },
      'job retried',
    );
    const retried = await this.options.store.retryJob(job.id, job.fence, details, now + delay, now);
    setTimeout(() => this.notify(), delay).unref();
    return retried ? 'retrying' : undefined;
  }

  /** (Re)arms the timer that gives the attempt up if no renewal succeeds by SELF_FENCE_SHARE of the lease. */
  private armSelfFence(entry: RunningJob): void {
    clearTimeout(entry.selfFence);
    const due = entry.leaseRenewedAt + this.options.leaseMs * SELF_FENCE_SHARE - performance.now();
    entry.selfFence = setTimeout(() => this.giveUp(entry), Math.max(0, due));
    entry.selfFence.unref();
  }

  private giveUp(entry: RunningJob): void {
    // Once its outcome is asked to be recorded the handler is done; that write's fence, and its own
    // retry limit (the same share of the lease), decide the rest.
    if (entry.released || entry.leaseLost || entry.outcomeAsked || !this.running.has(entry.job.id)) return;
    entry.leaseLost = true;
    abort(entry, new Error('the lease on this job could not be renewed in time; the attempt was given up'));
    this.options.log.warn(
      { jobId: entry.job.id, sinceRenewalMs: Math.round(performance.now() - entry.leaseRenewedAt), leaseMs: this.options.leaseMs },
      'could not renew a lease in time; gave the attempt up so that no two workers run the job at once',
    );
  }

  private async renew(entry: RunningJob): Promise<void> {
    const now = Date.now();
    const askedAt = performance.now();
    try {
      const lease = await this.options.store.renewLease(entry.job.id, entry.job.fence, this.options.leaseMs, now);
      if (lease.held && !entry.leaseLost) {
        entry.leaseRenewedAt = askedAt;
        this.armSelfFence(entry);
      }
      if (!lease.held && !entry.released && !entry.outcomeAsked) {
        entry.leaseLost = true;
        abort(entry, new Error('the lease on this job was lost to another worker'));
        this.options.log.warn({ jobId: entry.job.id }, 'lease lost; the job is another worker’s now');
      } else if (lease.cancelRequested && !entry.cancelRequested) {
        this.cancel(entry.job.id);
      }
    } catch (error) {
      this.options.log.warn({ err: error, jobId: entry.job.id }, 'renewing a lease failed; will try again');
    }
  }
}

/** Aborts a running attempt: its signal fires now, or starts out aborted if the handler reads it later. */
function abort(entry: RunningJob, reason: Error): void {
  entry.abortReason ??= reason;
  entry.controller?.abort(reason);
}

/** The attempt's AbortSignal, made on first use. */
function signalOf(entry: RunningJob): AbortSignal {
  if (!entry.controller) {
    entry.controller = new AbortController();
    if (entry.abortReason) entry.controller.abort(entry.abortReason);
  }
  return entry.controller.signal;
}
