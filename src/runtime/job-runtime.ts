import type { FastifyBaseLogger } from 'fastify';
import type { AsyncFirstConfig } from '../config.js';
import { ProblemError } from '../core/problems.js';
import type { CallbackPolicy } from '../delivery/callback-url.js';
import { JobEventStreams } from '../delivery/event-stream.js';
import { JobWatch } from '../delivery/job-watch.js';
import { NotificationDispatcher } from '../delivery/notification-dispatcher.js';
import type { Notifier } from '../delivery/notifiers.js';
import { WebhookDispatcher } from '../delivery/webhook-dispatcher.js';
import { CachedCounts } from '../engine/cached-counts.js';
import type { PlanFollowUp } from '../follow-ups.js';
import { JobMetrics } from '../metrics/job-metrics.js';
import type { Store } from '../store/store.js';
import { JobTracing } from '../tracing/job-tracing.js';
import { Scheduler, type SchedulerOptions } from '../worker/scheduler.js';
import { Sweeper } from '../worker/sweeper.js';
import { type JobOperation, Worker } from '../worker/worker.js';

export interface JobRuntimeOptions {
  config: AsyncFirstConfig;
  /** The job engine (over its storage driver). */
  store: Store;
  log: FastifyBaseLogger;
  /** The asynchronous operations this process's worker runs. */
  operations: Map<string, JobOperation>;
  /** The recurring schedules; their ticks are taken where the worker runs. */
  schedules?: Omit<SchedulerOptions, 'store' | 'log'>;
  /** The operations whose finished jobs are kept for their own time (x-asyncfirst retention.jobs, ms) rather than JOB_RETENTION_MS. */
  jobRetentionByOperation?: ReadonlyMap<string, number>;
  /** Present when webhooks are configured (WEBHOOK_SECRET). */
  webhooks?: { secrets: string[]; policy: CallbackPolicy };
  /** Present when the service has notifiers: them by name, and the SSRF guard their postJson goes through. */
  notifiers?: { byName: ReadonlyMap<string, Notifier>; policy: CallbackPolicy };
  /** Checks handlers' ctx.enqueue calls against the contract; given the runtime's tracing (TRACING=on) to carry the attempt's trace context. */
  planFollowUp?: (tracing: JobTracing | undefined) => PlanFollowUp;
}

/**
 * The one owner of a process's moving parts: the job engine, the worker (unless
 * WORKER_CONCURRENCY is 0) with the scheduler of the recurring schedules, the webhook dispatcher
 * (when webhooks are configured), the notification dispatcher (when there are notifiers), the sweeper,
 * and the waiters (long-polls and event streams). It wires the engine's commit announcements to
 * them, starts them, answers readiness, and stops them in order. An API process puts an HTTP
 * server in front of it; a worker-only process runs it alone.
 */
export class JobRuntime {
  readonly store: Store;
  readonly watch: JobWatch;
  readonly streams: JobEventStreams;
  readonly worker: Worker | undefined;
  readonly dispatcher: WebhookDispatcher | undefined;
  /** Hands notifications to the notifiers; present when the service has notifiers. */
  readonly notificationDispatcher: NotificationDispatcher | undefined;
  readonly sweeper: Sweeper;
  /** Takes the schedules' ticks; present where the worker runs. */
  readonly scheduler: Scheduler | undefined;
  /** The job counts by operation and state, read at most once per COUNTS_CACHE_MS (GET /jobs/counts). */
  readonly counts: CachedCounts;
  /** This process's Prometheus metrics (GET /metrics); undefined with METRICS=off. */
  readonly metrics: JobMetrics | undefined;
  /** The jobs' OpenTelemetry traces; undefined with TRACING=off. */
  readonly tracing: JobTracing | undefined;
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;

  constructor(private readonly options: JobRuntimeOptions) {
    const { config, store, log } = options;
    this.store = store;
    // Where the database announces other processes' changes, the version check is only a backstop.
    this.watch = new JobWatch(
      (ids) => store.jobVersions(ids),
      store.announcesOtherProcesses ? config.changeCheckMs * 8 : config.changeCheckMs,
      () => store.eventCursor(),
    );
    store.onJobsChanged((jobIds) => this.watch.changed(jobIds));
    store.onEverythingChanged(() => this.watch.changedAll());
    this.counts = new CachedCounts(() => store.countJobs(), config.countsCacheMs);
    this.metrics = config.metrics ? new JobMetrics(store, this.counts) : undefined;
    this.tracing = config.tracing ? new JobTracing() : undefined;
    this.streams = new JobEventStreams({
      store,
      watch: this.watch,
      maxStreamsPerPrincipal: config.sseMaxStreamsPerPrincipal,
      heartbeatMs: config.sseHeartbeatMs,
    });
    store.onFault((fault) => {
      const details = { cause: fault.error.message, fault: fault.kind };
      if (fault.kind === 'notifications-lost') log.warn(details, 'lost the connection that listens for other processes; reconnecting, and polling meanwhile');
      else if (fault.kind === 'file-lost')
        log.error(details, 'the database file is gone: every write now answers 503 until it is restored and the server restarted');
      else if (fault.kind === 'sync-failed')
        log.error(details, 'the disk failed to sync the database: every write now answers 503 until the server is restarted');
      else log.error(details, 'the database refuses writes; answering 503 until it accepts them again');
    });

    if (config.workerConcurrency > 0) {
      const worker = new Worker({
        store,
        operations: options.operations,
        concurrency: config.workerConcurrency,
        leaseMs: config.leaseMs,
        pollIntervalMs: config.pollIntervalMs,
        retryBaseMs: config.retryBaseMs,
        retryMaxMs: config.retryMaxMs,
        log: log.child({ component: 'worker' }),
        ...(this.metrics ? { metrics: this.metrics } : {}),
        ...(this.tracing ? { tracing: this.tracing } : {}),
        ...(options.planFollowUp ? { planFollowUp: options.planFollowUp(this.tracing) } : {}),
      });
      // A job accepted (or retried) anywhere the engine hears of starts at once, without waiting for a poll.
      store.onJobsQueued(() => worker.notify());
      this.worker = worker;
      // Even with none declared: its start marks the schedules recorded in the database retired.
      if (options.schedules) this.scheduler = new Scheduler({ ...options.schedules, store, log: log.child({ component: 'scheduler' }) });
    }
    if (options.webhooks) {
      const dispatcher = new WebhookDispatcher({
        store,
        secrets: options.webhooks.secrets,
        policy: options.webhooks.policy,
        timeoutMs: config.webhookTimeoutMs,
        retryBaseMs: config.webhookRetryBaseMs,
        retryMaxMs: config.webhookRetryMaxMs,
        pollIntervalMs: config.pollIntervalMs,
        concurrency: 8,
        log: log.child({ component: 'webhooks' }),
        ...(this.metrics ? { metrics: this.metrics } : {}),
        ...(this.tracing ? { tracing: this.tracing } : {}),
      });
      store.onDeliveriesQueued(() => dispatcher.notify());
      this.dispatcher = dispatcher;
    }
    if (options.notifiers && options.notifiers.byName.size > 0) {
      const dispatcher = new NotificationDispatcher({
        store,
        notifiers: options.notifiers.byName,
        policy: options.notifiers.policy,
        timeoutMs: config.notifyTimeoutMs,
        retryBaseMs: config.notifyRetryBaseMs,
        retryMaxMs: config.notifyRetryMaxMs,
        pollIntervalMs: config.pollIntervalMs,
        concurrency: 8,
        log: log.child({ component: 'notifications' }),
      });
      store.onDeliveriesQueued(() => dispatcher.notify());
      this.notificationDispatcher = dispatcher;
    }
    this.sweeper = new Sweeper(store, {
      intervalMs: config.sweepIntervalMs,
      jobRetentionMs: config.jobRetentionMs,
      ...(options.jobRetentionByOperation ? { jobRetentionByOperation: options.jobRetentionByOperation } : {}),
      log: log.child({ component: 'sweeper' }),
    });
  }

  /** True once stop() began: requests are refused. */
  get isStopping(): boolean {
    return this.stopping;
  }

  /** Starts the worker, the dispatcher and the sweeper (once). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.worker?.start();
    this.scheduler?.start();
    this.dispatcher?.start();
    this.notificationDispatcher?.start();
    this.sweeper.start();
  }

  /** Aborts a job's handler if this process runs it (DELETE /jobs/{id}); other processes see the flag at their next renewal. */
  cancelRunningJob(jobId: string): void {
    this.worker?.cancel(jobId);
  }

  /** Resolves when this process can serve jobs now; throws a ProblemError or StoreUnavailableError when not. */
  async checkReady(): Promise<void> {
    if (this.stopping) throw new ProblemError('shuttingDown', 'The server is shutting down.', { headers: { 'retry-after': '1' } });
    if (!this.started)
      throw new ProblemError('notReady', 'The server is starting; its worker and sweeper are not running yet.', { headers: { 'retry-after': '1' } });
    await this.store.checkReady();
    // Where this process runs a worker, its claim loop must be alive too.
    const claimProblem = this.worker?.claimProblem();
    if (claimProblem) throw new ProblemError('notReady', `The worker cannot claim jobs: ${claimProblem}.`, { headers: { 'retry-after': '5' } });
  }

  /**
   * Graceful stop: the sweeper stops, waiters answer with what they have and streams end; then
   * `drainRequests` (the HTTP server's close), the running handlers (within SHUTDOWN_GRACE_MS,
   * then released to the queue) and the webhook and notifier attempts under way all finish; then the store closes.
   */
  stop(drainRequests: () => Promise<void> = async () => {}): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      this.sweeper.stop();
      this.watch.close();
      this.streams.closeAll();
      await Promise.all([
        drainRequests(),
        this.scheduler?.stop(),
        this.worker?.stop(this.options.config.shutdownGraceMs),
        this.dispatcher?.stop(),
        this.notificationDispatcher?.stop(),
      ]);
      await this.store.close();
    })();
    return this.stopped;
  }
}
