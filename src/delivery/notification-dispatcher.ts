import type { WebhookDelivery } from '../store/store.js';
import type { CallbackPolicy } from './callback-url.js';
import { DeliveryDispatcher, type DispatchSettings } from './delivery-dispatcher.js';
import { type Notification, type Notifier, NotifierError } from './notifiers.js';
import { type SendOutcome, sendWebhook } from './webhook-sender.js';

export interface NotificationDispatcherOptions extends DispatchSettings {
  /** The notifiers by name. */
  notifiers: ReadonlyMap<string, Notifier>;
  /** The SSRF guard of postJson (the webhooks' own). */
  policy: CallbackPolicy;
}

/**
 * Hands the stored notifications to their notifiers: claimed with a lease like webhook deliveries
 * (so across processes each is handled once in the normal case, and a dead process's is taken
 * over), each attempt bounded by the timeout, retried with backoff while the notifier throws.
 */
export class NotificationDispatcher extends DeliveryDispatcher {
  constructor(options: NotificationDispatcherOptions) {
    super({ ...options, kind: 'notification', noun: 'notification', send: (delivery) => callNotifier(delivery, options) });
  }
}

/** One attempt: the notifier called with the stored notification, within the timeout. */
async function callNotifier(delivery: WebhookDelivery, options: NotificationDispatcherOptions): Promise<SendOutcome> {
  const notifier = options.notifiers.get(delivery.notifier ?? '');
  // Another process may have it (a rolling change of notifiers): retried, then failed.
  if (!notifier) return { kind: 'retry', error: `this process has no notifier named "${delivery.notifier}"` };
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<SendOutcome>((resolve) => {
    timer = setTimeout(() => {
      controller.abort(new DOMException(`the notifier did not finish within ${options.timeoutMs} ms`, 'TimeoutError'));
      resolve({ kind: 'retry', error: `the notifier did not finish within ${options.timeoutMs} ms` });
    }, options.timeoutMs);
  });
  const context = {
    attempt: delivery.attempts,
    signal: controller.signal,
    log: options.log,
    postJson: (url: string, body: unknown) => postJson(url, body, options),
  };
  const called = (async (): Promise<SendOutcome> => {
    await notifier(JSON.parse(delivery.payload) as Notification, context);
    return { kind: 'delivered' };
  })().catch(outcomeOfError);
  try {
    return await Promise.race([called, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function outcomeOfError(error: unknown): SendOutcome {
  const message = error instanceof Error ? error.message : String(error);
  if (!(error instanceof NotifierError)) return { kind: 'retry', error: message || 'the notifier threw' };
  const status = error.status === undefined ? {} : { status: error.status };
  if (!error.retry) return { kind: 'give-up', error: message, ...status };
  return { kind: 'retry', error: message, ...status, ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }) };
}

/** NotifierContext.postJson: one POST through the SSRF guard, a NotifierError unless 2xx. */
async function postJson(url: string, body: unknown, options: NotificationDispatcherOptions): Promise<void> {
  const outcome = await sendWebhook(url, { 'user-agent': 'asyncfirst-notifier' }, JSON.stringify(body), {
    policy: options.policy,
    timeoutMs: options.timeoutMs,
  });
  if (outcome.kind === 'delivered') return;
  throw new NotifierError(outcome.error, {
    retry: outcome.kind === 'retry',
    ...(outcome.status === undefined ? {} : { status: outcome.status }),
    ...(outcome.kind === 'retry' && outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {}),
  });
}
