import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { JobState } from '../core/job-states.js';
import type { CachedCounts } from '../engine/cached-counts.js';
import type { DeliveryStatus, Store } from '../store/store.js';
import { FastCounter, FastHistogram } from './fast-series.js';

/** Seconds: from a few milliseconds (a no-op handler, a job started at once) to an hour. */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The Prometheus metrics of one process, under names that dashboards and alerts rely on (the
 * README lists them): counters and histograms of what this process did, and gauges read from the
 * database at scrape time (the counts as GET /jobs/counts serves them, and the queue lag), so they
 * are right however many processes share it. No job id is ever a label.
 */
export class JobMetrics {
  readonly registry = new Registry();
  // The series observed per request or per job are fast-series.ts's; the rest are prom-client's own.
  private readonly accepted = new FastCounter(this.registry, {
    name: 'asyncfirst_jobs_accepted_total',
    help: 'Jobs accepted (202) by this process.',
    labelNames: ['operation'],
  });
  private readonly replayed = new FastCounter(this.registry, {
    name: 'asyncfirst_jobs_replayed_total',
    help: 'Submissions answered with an earlier job (the same Idempotency-Key and request) by this process.',
    labelNames: ['operation'],
  });
  private readonly finished = new FastCounter(this.registry, {
    name: 'asyncfirst_jobs_finished_total',
    help: "Jobs this process's worker ended, by their final state.",
    labelNames: ['operation', 'status'],
  });
  private readonly duration = new FastHistogram(this.registry, {
    name: 'asyncfirst_job_duration_seconds',
    help: 'How long a handler ran, per attempt.',
    labelNames: ['operation'],
    buckets: SECONDS_BUCKETS,
  });
  private readonly wait = new FastHistogram(this.registry, {
    name: 'asyncfirst_job_wait_seconds',
    help: "From a job's acceptance (202) to the start of its first attempt.",
    labelNames: ['operation'],
    buckets: SECONDS_BUCKETS,
  });
  private readonly deliveries = new Counter({
    name: 'asyncfirst_webhook_deliveries_total',
    registers: [this.registry],
    help: 'Webhook delivery attempts recorded by this process, by the delivery state they left (pending: to be retried).',
    labelNames: ['status'],
  });
  private readonly requests = new FastHistogram(this.registry, {
    name: 'asyncfirst_http_request_duration_seconds',
    help: 'HTTP requests served, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'],
    buckets: HTTP_BUCKETS,
  });

  constructor(store: Store, counts: CachedCounts) {
    const registers = [this.registry];
    new Gauge({
      name: 'asyncfirst_jobs',
      help: 'Jobs in the database per operation and state (all processes), as of the last reading (COUNTS_CACHE_MS).',
      labelNames: ['operation', 'status'],
      registers,
      async collect() {
        this.reset();
        for (const count of (await counts.current()).counts) this.set({ operation: count.operation, status: count.status }, count.count);
      },
    });
    new Gauge({
      name: 'asyncfirst_queue_lag_seconds',
      help: 'Per operation, how long its longest-due queued job has been waiting to start (0 or absent: none is waiting).',
      labelNames: ['operation'],
      registers,
      async collect() {
        this.reset();
        const now = Date.now();
        for (const oldest of await store.oldestDueJobs(now)) this.set({ operation: oldest.operation }, Math.max(0, now - oldest.dueSince) / 1000);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** A submission made a job (`replayed`: it was answered with an earlier one). */
  submission(operation: string, replayed: boolean): void {
    (replayed ? this.replayed : this.accepted).inc(operation);
  }

  /** An attempt started; the first one's wait since acceptance is observed. */
  attemptStarted(operation: string, attempt: number, acceptedAt: number): void {
    if (attempt === 1) this.wait.observe(Math.max(0, Date.now() - acceptedAt) / 1000, operation);
  }

  /** An attempt's handler returned or threw after `seconds`. */
  attemptRan(operation: string, seconds: number): void {
    this.duration.observe(seconds, operation);
  }

  /** A job ended in a final state. */
  jobFinished(operation: string, status: Extract<JobState, 'succeeded' | 'failed' | 'canceled'>): void {
    this.finished.inc(operation, status);
  }

  /** A webhook delivery attempt was recorded. */
  deliveryRecorded(status: DeliveryStatus): void {
    this.deliveries.inc({ status });
  }

  /** An HTTP request was answered; `route` is its pattern (never a job id). */
  requestServed(method: string, route: string, statusCode: number, seconds: number): void {
    this.requests.observe(seconds, method, route, String(statusCode));
  }

  /** The text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
