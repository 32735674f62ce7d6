import { isFinished } from './job-states.js';
import type { JobRecord, WebhookDelivery } from './store.js';

/** Seconds a client should wait before polling an unfinished job again. */
export const POLL_AFTER_SECONDS = 1;

/**
 * A job as GET /jobs/{id} shows it. The stored result is JSON text; it is spliced in as is,
 * so a result is parsed by nobody on the way out.
 */
export function jobBody(job: JobRecord): string {
  const view: Record<string, unknown> = {
    id: job.id,
    operation: job.operation,
    status: job.status,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(job.updatedAt).toISOString(),
  };
  if (job.cancelRequested && !isFinished(job.status)) view.cancelRequested = true;
  if (job.status === 'queued') view.nextAttemptAt = new Date(job.runAt).toISOString();
  if (job.finishedAt !== undefined) view.finishedAt = new Date(job.finishedAt).toISOString();
  if (job.progress) view.progress = job.progress;
  if (job.error && job.status !== 'succeeded') view.error = job.error;
  if (job.resultLocation !== undefined) view.resultLocation = job.resultLocation;
  if (job.deliveries) view.deliveries = job.deliveries.map(deliveryView);
  const json = JSON.stringify(view);
  return job.status === 'succeeded' && job.result !== undefined && job.resultLocation === undefined ? `${json.slice(0, -1)},"result":${job.result}}` : json;
}

/** A webhook delivery as GET /jobs/{id} shows it (the payload and URL's secrets stay out). */
function deliveryView(delivery: WebhookDelivery): Record<string, unknown> {
  return {
    id: delivery.id,
    event: delivery.eventType,
    status: delivery.status,
    attempts: delivery.attempts,
    maxAttempts: delivery.maxAttempts,
    ...(delivery.lastStatus === undefined ? {} : { lastStatus: delivery.lastStatus }),
    ...(delivery.lastError === undefined ? {} : { lastError: delivery.lastError }),
    ...(delivery.status === 'pending' ? { nextAttemptAt: new Date(delivery.nextAttemptAt).toISOString() } : {}),
    updatedAt: new Date(delivery.updatedAt).toISOString(),
  };
}

/** Headers that go with a job: Retry-After while it is not finished. */
export function jobHeaders(job: JobRecord): Record<string, string> {
  return isFinished(job.status) ? {} : { 'retry-after': String(POLL_AFTER_SECONDS) };
}
