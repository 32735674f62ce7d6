import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { JobMetrics } from '../metrics/job-metrics.js';
import type { Store, WebhookDelivery } from '../store/store.js';
import type { JobTracing } from '../tracing/job-tracing.js';
import { retryDelayMs } from '../worker/backoff.js';
import { ClaimLoop } from '../worker/claim-loop.js';
import type { CallbackPolicy } from './callback-url.js';
import { sendWebhook } from './webhook-sender.js';
import { signWebhook } from './webhook-signature.js';

export interface DispatcherOptions {
  store: Store;
  secrets: string[];
  policy: CallbackPolicy;
  timeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  pollIntervalMs: number;
  /** Deliveries sent at once. */
  concurrency: number;
  log: FastifyBaseLogger;
  /** Counts the attempts recorded (GET /metrics). */
  metrics?: JobMetrics;
  /** Traces each attempt as a CLIENT span whose traceparent the request carries (absent: TRACING=off). */
  tracing?: JobTracing;
}

/**
 * Sends the webhook deliveries stored with finished jobs: claims due ones with a lease (so
 * several processes can share the work), signs and POSTs each, and records success, a retry
 * with backoff (at least the receiver's Retry-After), or failure after the last attempt.
 */
export class WebhookDispatcher {
  readonly owner = `webhooks-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly sending = new Set<Promise<void>>();
  private readonly loop: ClaimLoop<WebhookDelivery>;

  constructor(private readonly options: DispatcherOptions) {
    this.loop = new ClaimLoop({
      free: () => options.concurrency - this.sending.size,
      // The lease outlasts one attempt, so a live sender is never doubled; a dead one's is taken over.
      claim: (limit) => options.store.claimDeliveries({ owner: this.owner, limit, now: Date.now(), leaseMs: options.timeoutMs * 2 + 1000 }),
      start: (delivery) => this.track(this.deliver(delivery)),
      pollIntervalMs: options.pollIntervalMs,
      onError: (error) => options.log.warn({ err: error }, 'claiming webhook deliveries failed; will try again'),
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Deliveries may be due: send what the free capacity allows. */
  notify(): void {
    this.loop.notify();
  }

  /** Stops claiming and waits for the attempts under way (each is bounded by the timeout). */
  async stop(): Promise<void> {
    await this.loop.stop();
    await Promise.all(this.sending);
  }

  private track(sending: Promise<void>): void {
    this.sending.add(sending);
    void sending.finally(() => {
      this.sending.delete(sending);
      this.notify();
    });
  }

  private async deliver(delivery: WebhookDelivery): Promise<void> {
    const { store, log } = this.options;
    const timestamp = Math.floor(Date.now() / 1000);
    const span = this.options.tracing?.startDelivery(delivery);
    const headers = { ...signWebhook(this.options.secrets, delivery.id, timestamp, delivery.payload), ...span?.headers };
    const outcome = await sendWebhook(delivery.url, headers, delivery.payload, { policy: this.options.policy, timeoutMs: this.options.timeoutMs });
    span?.end(outcome);
    const now = Date.now();
    try {
      if (outcome.kind === 'delivered') {
        if (await store.recordDelivery(delivery, this.owner, { status: 'succeeded', httpStatus: outcome.status }, now))
          this.options.metrics?.deliveryRecorded('succeeded');
        return;
      }
      const last = outcome.kind === 'give-up' || delivery.attempts >= delivery.maxAttempts;
      const delay = Math.max(
        retryDelayMs(delivery.attempts, this.options.retryBaseMs, this.options.retryMaxMs),
        outcome.kind === 'retry' ? (outcome.retryAfterMs ?? 0) : 0,
      );
      const recorded = await store.recordDelivery(
        delivery,
        this.owner,
        { status: last ? 'failed' : 'pending', httpStatus: outcome.status, error: outcome.error, nextAttemptAt: now + delay },
        now,
      );
      if (recorded) this.options.metrics?.deliveryRecorded(last ? 'failed' : 'pending');
      log[last ? 'warn' : 'info'](
        { deliveryId: delivery.id, jobId: delivery.jobId, attempt: delivery.attempts, error: outcome.error },
        last ? 'webhook delivery failed' : 'webhook delivery will be retried',
      );
      if (!last) setTimeout(() => this.notify(), delay).unref();
    } catch (error) {
      // The lease lapses and another claim sends it again; receivers dedupe by webhook-id.
      log.error({ err: error, deliveryId: delivery.id }, 'recording a webhook delivery failed');
    }
  }
}
