import type { JobMetrics } from '../metrics/job-metrics.js';
import type { WebhookDelivery } from '../store/store.js';
import type { JobTracing } from '../tracing/job-tracing.js';
import type { CallbackPolicy } from './callback-url.js';
import { DeliveryDispatcher, type DispatchSettings } from './delivery-dispatcher.js';
import { type SendOutcome, sendWebhook } from './webhook-sender.js';
import { signWebhook } from './webhook-signature.js';

export interface DispatcherOptions extends DispatchSettings {
  secrets: string[];
  policy: CallbackPolicy;
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
export class WebhookDispatcher extends DeliveryDispatcher {
  constructor(options: DispatcherOptions) {
    const metrics = options.metrics;
    super({
      ...options,
      kind: 'webhook',
      noun: 'webhook delivery',
      send: (delivery) => sendSigned(delivery, options),
      ...(metrics ? { onRecorded: (status) => metrics.deliveryRecorded(status) } : {}),
    });
  }
}

/** One attempt: the delivery signed with every secret and POSTed, inside its span. */
async function sendSigned(delivery: WebhookDelivery, options: DispatcherOptions): Promise<SendOutcome> {
  const timestamp = Math.floor(Date.now() / 1000);
  const span = options.tracing?.startDelivery(delivery);
  const headers = { ...signWebhook(options.secrets, delivery.id, timestamp, delivery.payload), ...span?.headers };
  const outcome = await sendWebhook(delivery.url, headers, delivery.payload, { policy: options.policy, timeoutMs: options.timeoutMs });
  span?.end(outcome);
  return outcome;
}
