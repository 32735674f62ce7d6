import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { DeliveryKind, DeliveryStatus, Store, WebhookDelivery } from '../store/store.js';
import { retryDelayMs } from '../worker/backoff.js';
import { ClaimLoop } from '../worker/claim-loop.js';
import type { SendOutcome } from './webhook-sender.js';

/** What every dispatcher is given: the store, each attempt's time, the retry delays, how often to look, how many at once. */
export interface DispatchSettings {
  store: Store;
  /** How long one attempt may take: the lease outlasts it. */
  timeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  pollIntervalMs: number;
  /** Deliveries sent at once. */
  concurrency: number;
  log: FastifyBaseLogger;
}

export interface DeliveryDispatcherOptions extends DispatchSettings {
  /** Which deliveries this dispatcher claims. */
  kind: DeliveryKind;
  /** What the log calls one delivery ("webhook delivery", "notification"). */
  noun: string;
  /** Makes one attempt at a claimed delivery; never rejects. */
  send: (delivery: WebhookDelivery) => Promise<SendOutcome>;
  /** Hears of each attempt recorded (the metrics). */
  onRecorded?: (status: DeliveryStatus) => void;
}

/**
 * Sends the stored deliveries of one kind: claims due ones with a lease (so several processes
 * share the work and a dead sender's are taken over), makes one attempt at each, and records
 * success, a retry with backoff (at least the receiver's Retry-After), or failure after the last
 * attempt. The webhook dispatcher and the notification dispatcher are two of these.
 */
export class DeliveryDispatcher {
  readonly owner: string;
  private readonly sending = new Set<Promise<void>>();
  private readonly loop: ClaimLoop<WebhookDelivery>;

  constructor(private readonly options: DeliveryDispatcherOptions) {
    this.owner = `${options.kind}s-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.loop = new ClaimLoop({
      free: () => options.concurrency - this.sending.size,
      // The lease outlasts one attempt, so a live sender is never doubled; a dead one's is taken over.
      claim: (limit) => options.store.claimDeliveries({ owner: this.owner, limit, now: Date.now(), leaseMs: options.timeoutMs * 2 + 1000, kind: options.kind }),
      start: (delivery) => this.track(this.deliver(delivery)),
      pollIntervalMs: options.pollIntervalMs,
      onError: (error) => options.log.warn({ err: error }, `claiming ${options.noun}s failed; will try again`),
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
    const { store, log, noun } = this.options;
    const outcome = await this.options.send(delivery);
    const now = Date.now();
    const about = { deliveryId: delivery.id, jobId: delivery.jobId, ...(delivery.notifier === undefined ? {} : { notifier: delivery.notifier }) };
    try {
      if (outcome.kind === 'delivered') {
        if (
          await store.recordDelivery(
            delivery,
            this.owner,
            { status: 'succeeded', ...(outcome.status === undefined ? {} : { httpStatus: outcome.status }) },
            now,
          )
        )
          this.options.onRecorded?.('succeeded');
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
      if (recorded) this.options.onRecorded?.(last ? 'failed' : 'pending');
      log[last ? 'warn' : 'info']({ ...about, attempt: delivery.attempts, error: outcome.error }, last ? `${noun} failed` : `${noun} will be retried`);
      if (!last) setTimeout(() => this.notify(), delay).unref();
    } catch (error) {
      // The lease lapses and another claim sends it again; receivers dedupe by its id.
      log.error({ err: error, ...about }, `recording a ${noun} failed`);
    }
  }
}
