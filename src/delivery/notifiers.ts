import type { FastifyBaseLogger } from 'fastify';
import type { JobState } from '../core/job-states.js';
import type { ProblemDetails } from '../core/problems.js';
import type { NotifyEvent } from '../store/store.js';

/*
 * Out-of-band notifiers: named functions createAsyncFirst is given (`notifiers`) and operations
 * name in x-asyncfirst.notify. Each ending a notifier listens for is stored as a notification in
 * the transaction that ended the job, then handed to the notifier at least once, retried with
 * backoff while it throws (src/delivery/notification-dispatcher.ts).
 */

/** A job as its notification carries it: as GET /jobs/{id} showed it when it ended. */
export interface NotifiedJob {
  id: string;
  operation: string;
  status: JobState;
  attempts: number;
  maxAttempts: number;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  error?: ProblemDetails;
  /** The handler's result, when succeeded with a body. */
  result?: unknown;
  resultLocation?: string;
}

/** What a notifier is handed: one ending of one job. */
export interface Notification {
  /** The same in every attempt: a notifier whose receiver can dedupe should pass it on. */
  id: string;
  /** The notifier's name. */
  notifier: string;
  type: NotifyEvent;
  /** When the job ended (ISO 8601). */
  timestamp: string;
  /** Whose job it is. */
  principal: string;
  job: NotifiedJob;
}

/** What a notifier gets besides the notification. */
export interface NotifierContext {
  /** This attempt's number: 1, then 2… on retries. */
  attempt: number;
  /** Aborted when the attempt's time (NOTIFY_TIMEOUT_MS) is up; the attempt then counts as failed. */
  signal: AbortSignal;
  /** The notification dispatcher's logger. */
  log: FastifyBaseLogger;
  /**
   * POSTs `body` as JSON to `url` through the webhooks' SSRF guard (only public addresses, or those
   * WEBHOOK_ALLOWED_HOSTS allows; redirects not followed), within the attempt's time. Throws a
   * NotifierError unless answered 2xx: retryable for a timeout, a network error, 429 or 5xx.
   */
  postJson(url: string, body: unknown): Promise<void>;
}

/** A notifier: resolves when the notification is delivered; a throw is retried with backoff (a NotifierError with retry false is not). */
export type Notifier = (notification: Notification, context: NotifierContext) => Promise<void>;

/** A notifier's failure that says whether another attempt is worth it (and, over HTTP, the receiver's status). */
export class NotifierError extends Error {
  readonly retry: boolean;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { retry?: boolean; status?: number; retryAfterMs?: number } = {}) {
    super(message);
    this.name = 'NotifierError';
    this.retry = options.retry ?? true;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface SlackNotifierOptions {
  /** The incoming-webhook URL (Slack's, or any receiver of {"text": …}). */
  url: string;
  /** The message's text; default: one line naming the job, its operation, how it ended and its error. */
  text?: (notification: Notification) => string;
}

/** The name NOTIFY_SLACK_URL registers slackNotifier under. */
export const SLACK_NOTIFIER_NAME = 'slack';

/** A notifier that posts {"text": …} to an incoming-webhook URL (Slack-compatible), through the SSRF guard. */
export function slackNotifier(options: SlackNotifierOptions): Notifier {
  const text = options.text ?? notificationText;
  return (notification, context) => context.postJson(options.url, { text: text(notification) });
}

const ENDINGS: Record<NotifyEvent, string> = { 'job.succeeded': 'succeeded', 'job.failed': 'failed', 'job.canceled': 'was canceled' };

/** One line about a job's ending: "Job 01J… (createReport, for alice) failed after 3 attempts: Report too large: …". */
export function notificationText(notification: Notification): string {
  const { job } = notification;
  const attempts = job.attempts === 1 ? '1 attempt' : `${job.attempts} attempts`;
  const error = job.error ? `: ${job.error.title}${job.error.detail ? `: ${job.error.detail}` : ''}` : '';
  return `Job ${job.id} (${job.operation}, for ${notification.principal}) ${ENDINGS[notification.type]} after ${attempts}${error}`;
}
