import type { JobState } from '../core/job-states.js';
import type { ClaimedJob, DeliveryStatus, JobProgress, JobRecord, WebhookDelivery } from './store.js';

/*
 * The rows both drivers read, in the columns both schemas share, and their mapping to records.
 * (SQLite has no boolean type: its cancel_requested is 0 or 1.)
 */

export interface JobRow {
  id: string;
  principal: string;
  operation: string;
  status: string;
  attempts: number;
  max_attempts: number;
  cancel_requested: number | boolean;
  progress: string | null;
  callback_url: string | null;
  result: string | null;
  result_location: string | null;
  error: string | null;
  run_at: number;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  /** Bumped by every change that records an event; the event's version. */
  version: number;
}

export interface ClaimedRow extends JobRow {
  input: string;
  fence: number;
}

export interface DeliveryRow {
  id: string;
  job_id: string;
  url: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  max_attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export function toJobRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    principal: row.principal,
    operation: row.operation,
    status: row.status as JobState,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    cancelRequested: row.cancel_requested === true || row.cancel_requested === 1,
    ...(row.progress === null ? {} : { progress: JSON.parse(row.progress) as JobProgress }),
    ...(row.callback_url === null ? {} : { callbackUrl: row.callback_url }),
    ...(row.result === null ? {} : { result: row.result }),
    ...(row.result_location === null ? {} : { resultLocation: row.result_location }),
    ...(row.error === null ? {} : { error: JSON.parse(row.error) }),
    runAt: row.run_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    ...(row.finished_at === null ? {} : { finishedAt: row.finished_at }),
    version: row.version,
  };
}

export function toClaimedJob(row: ClaimedRow): ClaimedJob {
  return {
    id: row.id,
    principal: row.principal,
    operation: row.operation,
    input: row.input,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    fence: row.fence,
  };
}

export function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    jobId: row.job_id,
    url: row.url,
    eventType: row.event_type,
    payload: row.payload,
    status: row.status as DeliveryStatus,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    nextAttemptAt: row.next_attempt_at,
    ...(row.last_status === null ? {} : { lastStatus: row.last_status }),
    ...(row.last_error === null ? {} : { lastError: row.last_error }),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
