import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { JobState } from '../core/job-states.js';
import type { CachedCounts } from '../engine/cached-counts.js';
import type { DeliveryStatus, Store } from '../store/store.js';

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
  private readonly accepted = new Counter({
    name: 'asyncfirst_jobs_accepted_total',
    registers: [this.registry],
    help: 'Jobs accepted (202) by this process.',
    labelNames: ['operation'],
  });
  private readonly replayed = new Counter({
    name: 'asyncfirst_jobs_replayed_total',
    registers: [this.registry],
    help: 'Submissions answered with an earlier job (the same Idempotency-Key and request) by this process.',
    labelNames: ['operation'],
  });
  private readonly finished = new Counter({
    name: 'asyncfirst_jobs_finished_total',
    registers: [this.registry],
    help: "Jobs this process's worker ended, by their final state.",
    labelNames: ['operation', 'status'],
  });
  private readonly duration = new Histogram({
    name: 'asyncfirst_job_duration_seconds',
    registers: [this.registry],
    help: 'How long a handler ran, per attempt.',
    labelNames: ['operation'],
    buckets: SECONDS_BUCKETS,
  });
  private readonly wait = new Histogram({
    name: 'asyncfirst_job_wait_seconds',
    registers: [this.registry],
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
  private readonly requests = new Histogram({
    name: 'asyncfirst_http_request_duration_seconds',
    registers: [this.registry],
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
    (replayed ? this.replayed : this.accepted).inc({ operation });
  }

  /** An attempt started; the first one's wait since acceptance is observed. */
  attemptStarted(operation: string, attempt: number, acceptedAt: number): void {
    if (attempt === 1) this.wait.observe({ operation }, Math.max(0, Date.now() - acceptedAt) / 1000);
  }

  /** An attempt's handler returned or threw after `seconds`. */
  attemptRan(operation: string, seconds: number): void {
    this.duration.observe({ operation }, seconds);
  }

  /** A job ended in a final state. */
  jobFinished(operation: string, status: Extract<JobState, 'succeeded' | 'failed' | 'canceled'>): void {
    this.finished.inc({ operation, status });
  }

  /** A webhook delivery attempt was recorded. */
  deliveryRecorded(status: DeliveryStatus): void {
    this.deliveries.inc({ status });
  }

  /** An HTTP request was answered; `route` is its pattern (never a job id). */
  requestServed(method: string, route: string, statusCode: number, seconds: number): void {
    this.requests.observe({ method, route, status_code: String(statusCode) }, seconds);
  }

  /** The text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
