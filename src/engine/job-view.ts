import { isFinished } from '../core/job-states.js';
import type { JobRecord, WebhookDelivery } from '../store/store.js';

/**
 * ISO 8601 text of a millisecond timestamp. The jobs of one commit share their times, so recent
 * conversions are kept (toISOString was over half the time of building a snapshot).
 */
const isoTexts = new Map<number, string>();
function isoTime(ms: number): string {
  let text = isoTexts.get(ms);
  if (text === undefined) {
    if (isoTexts.size >= 256) isoTexts.clear();
    text = new Date(ms).toISOString();
    isoTexts.set(ms, text);
  }
  return text;
}

/** Seconds a client should wait before polling an unfinished job again. */
export const POLL_AFTER_SECONDS = 1;

/** The JSON text of an operationId: a service has few, so they are kept (up to 256). */
const quotedTexts = new Map<string, string>();
function quoted(text: string): string {
  let json = quotedTexts.get(text);
  if (json === undefined) {
    if (quotedTexts.size >= 256) quotedTexts.clear();
    json = JSON.stringify(text);
    quotedTexts.set(text, json);
  }
  return json;
}

/**
 * A job as GET /jobs/{id} shows it. The stored result is JSON text; it is spliced in as is,
 * so a result is parsed by nobody on the way out. Written as text, in the members' fixed order
 * (the same JSON as stringifying an object with them): this runs for every change a claim or a
 * finish records, and building an object to stringify cost twice as much. ISO times and states
 * need no escaping; every other string is JSON.stringify'd.
 */
export function jobBody(job: JobRecord): string {
  let json = `{"id":${JSON.stringify(job.id)},"operation":${quoted(job.operation)},"status":"${job.status}","attempts":${job.attempts},"maxAttempts":${job.maxAttempts},"createdAt":"${isoTime(job.createdAt)}","updatedAt":"${isoTime(job.updatedAt)}"`;
  if (job.priority !== 0) json += `,"priority":${job.priority}`;
  if (job.cancelRequested && !isFinished(job.status)) json += ',"cancelRequested":true';
  if (job.status === 'queued') json += `,"nextAttemptAt":"${isoTime(job.runAt)}"`;
  if (job.finishedAt !== undefined) json += `,"finishedAt":"${isoTime(job.finishedAt)}"`;
  if (job.progress) json += `,"progress":${JSON.stringify(job.progress)}`;
  if (job.error && job.status !== 'succeeded') json += `,"error":${JSON.stringify(job.error)}`;
  if (job.resultLocation !== undefined) json += `,"resultLocation":${JSON.stringify(job.resultLocation)}`;
  if (job.schedule) json += `,"schedule":${JSON.stringify(job.schedule)}`;
  if (job.deliveries) json += `,"deliveries":${JSON.stringify(job.deliveries.map(deliveryView))}`;
  if (job.notifications) {
    json += `,"notifications":${JSON.stringify(job.notifications.map((notification) => ({ notifier: notification.notifier, ...deliveryView(notification) })))}`;
  }
  if (job.parentId !== undefined) json += `,"parent":${JSON.stringify(job.parentId)}`;
  if (job.children?.length) json += `,"children":${JSON.stringify(job.children)}`;
  return job.status === 'succeeded' && job.result !== undefined && job.resultLocation === undefined ? `${json},"result":${job.result}}` : `${json}}`;
}

/** The job as it was when accepted (its job.queued event of version 0), from the fields that never change and its first run time (default: when it was accepted). */
export function acceptedJobBody(
  job: Pick<JobRecord, 'id' | 'principal' | 'operation' | 'maxAttempts' | 'createdAt'> & {
    runAt?: number | undefined;
    priority?: number | undefined;
    parentId?: string | undefined;
  },
): string {
  return jobBody({
    ...(job.parentId === undefined ? {} : { parentId: job.parentId }),
    id: job.id,
    principal: job.principal,
    operation: job.operation,
    status: 'queued',
    attempts: 0,
    maxAttempts: job.maxAttempts,
    priority: job.priority ?? 0,
    cancelRequested: false,
    runAt: job.runAt ?? job.createdAt,
    createdAt: job.createdAt,
    updatedAt: job.createdAt,
    version: 0,
    fence: 0,
  });
}

/** A webhook delivery as GET /jobs/{id} shows it (the payload and URL's secrets stay out). */
export function deliveryView(delivery: WebhookDelivery): Record<string, unknown> {
  return {
    id: delivery.id,
    event: delivery.eventType,
    status: delivery.status,
    attempts: delivery.attempts,
    maxAttempts: delivery.maxAttempts,
    ...(delivery.lastStatus === undefined ? {} : { lastStatus: delivery.lastStatus }),
    ...(delivery.lastError === undefined ? {} : { lastError: delivery.lastError }),
    ...(delivery.status === 'pending' ? { nextAttemptAt: isoTime(delivery.nextAttemptAt) } : {}),
    updatedAt: isoTime(delivery.updatedAt),
  };
}

/** Seconds a poller should wait for a queued job that may start only at `runAt`: until then, and at least POLL_AFTER_SECONDS. */
export function pollAfterSeconds(runAt: number, now: number = Date.now()): number {
  return Math.max(POLL_AFTER_SECONDS, Math.ceil((runAt - now) / 1000));
}

/** Headers that go with a job: Retry-After while it is not finished (for a queued job, until it may start). */
export function jobHeaders(job: JobRecord): Record<string, string> {
  if (isFinished(job.status)) return {};
  return { 'retry-after': String(job.status === 'queued' ? pollAfterSeconds(job.runAt) : POLL_AFTER_SECONDS) };
}
