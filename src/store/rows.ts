import type { JobState } from '../core/job-states.js';
import type { EventPosition, LoggedEvent } from './driver.js';
import type {
  ClaimedJob,
  DeliveryStatus,
  IdempotencyRecord,
  JobProgress,
  JobRecord,
  ScheduleRecord,
  ScheduleTick,
  TraceContext,
  WebhookDelivery,
} from './store.js';

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
  priority: number;
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
  fence: number;
  lease_owner: string | null;
  /** The job whose success enqueued this one. */
  parent_id: string | null;
  /** JSON of the schedule tick that made the job ({ name, tick }), or null; read only where the job is shown (getJob). */
  schedule?: string | null;
}

export interface ClaimedRow extends JobRow {
  input: string;
  /** JSON of the submission's TraceContext, or null. */
  trace_context: string | null;
}

export interface IdempotencyRow {
  principal: string;
  operation: string;
  key: string;
  fingerprint: string;
  job_id: string;
  created_at: number;
  expires_at: number;
}

export interface DeliveryRow {
  id: string;
  job_id: string;
  url: string;
  /** NULL for a webhook delivery. */
  notifier: string | null;
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

/**
 * The record of a job row; `leaseExpiresInMs` is what its lease has left, as the driver measures it on its lease clock (null: no lease).
 * Built as one literal with the optional fields set after it (not spread in): this runs for every
 * change a claim or a finish records.
 */
export function toJobRecord(row: JobRow, leaseExpiresInMs: number | null): JobRecord {
  const record: JobRecord = {
    id: row.id,
    principal: row.principal,
    operation: row.operation,
    status: row.status as JobState,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    cancelRequested: row.cancel_requested === true || row.cancel_requested === 1,
    runAt: row.run_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: row.version,
    fence: row.fence,
  };
  if (row.progress !== null) record.progress = JSON.parse(row.progress) as JobProgress;
  if (row.callback_url !== null) record.callbackUrl = row.callback_url;
  if (row.result !== null) record.result = row.result;
  if (row.result_location !== null) record.resultLocation = row.result_location;
  if (row.error !== null) record.error = JSON.parse(row.error);
  if (row.finished_at !== null) record.finishedAt = row.finished_at;
  if (row.lease_owner !== null) record.leaseOwner = row.lease_owner;
  if (leaseExpiresInMs !== null) record.leaseExpiresInMs = leaseExpiresInMs;
  if (row.parent_id !== null) record.parentId = row.parent_id;
  if (typeof row.schedule === 'string') record.schedule = JSON.parse(row.schedule) as ScheduleTick;
  return record;
}

export function toClaimedJob(row: ClaimedRow): ClaimedJob {
  const claimed: ClaimedJob = {
    id: row.id,
    principal: row.principal,
    operation: row.operation,
    input: row.input,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    fence: row.fence,
    createdAt: Number(row.created_at),
  };
  if (row.trace_context !== null) claimed.traceContext = JSON.parse(row.trace_context) as TraceContext;
  return claimed;
}

/** The column a submission's trace context is stored in: its JSON, or null. */
export function traceContextColumn(traceContext: TraceContext | undefined): string | null {
  return traceContext === undefined ? null : JSON.stringify(traceContext);
}

export function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    jobId: row.job_id,
    url: row.url,
    ...(row.notifier === null ? {} : { notifier: row.notifier }),
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

/** Puts a job's delivery rows on it: the webhook deliveries (when it has a callback) and the notifications (when there are any). */
export function withDeliveries(job: JobRecord, rows: WebhookDelivery[]): void {
  if (job.callbackUrl) job.deliveries = rows.filter((delivery) => delivery.notifier === undefined);
  const notifications = rows.filter((delivery) => delivery.notifier !== undefined);
  if (notifications.length > 0) job.notifications = notifications;
}

export function toIdempotencyRecord(row: IdempotencyRow): IdempotencyRecord {
  return {
    principal: row.principal,
    operation: row.operation,
    key: row.key,
    fingerprint: row.fingerprint,
    jobId: row.job_id,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

/** The columns of an event log read both drivers return (each adds where the event sits in its log). */
export interface EventLogColumns {
  job_id: string;
  version: number;
  type: string;
  data: string | null;
  principal: string;
  operation: string;
  max_attempts: number;
  created_at: number;
}

export function toLoggedEvent(row: EventLogColumns, position: EventPosition): LoggedEvent {
  return {
    position,
    jobId: row.job_id,
    principal: row.principal,
    operation: row.operation,
    version: row.version,
    type: row.type,
    data: row.data,
    maxAttempts: row.max_attempts,
    jobCreatedAt: row.created_at,
  };
}

/** A row of the schedules table (both drivers). */
export interface ScheduleRow {
  name: string;
  operation: string;
  cron: string;
  timezone: string;
  window_ms: number;
  last_tick: number;
  last_job_id: string | null;
  declared_at: number;
  retired_at: number | null;
}

export function toScheduleRecord(row: ScheduleRow): ScheduleRecord {
  return {
    name: row.name,
    operation: row.operation,
    cron: row.cron,
    timezone: row.timezone,
    windowMs: Number(row.window_ms),
    lastTick: Number(row.last_tick),
    ...(row.last_job_id === null ? {} : { lastJobId: row.last_job_id }),
    declaredAt: Number(row.declared_at),
    ...(row.retired_at === null ? {} : { retiredAt: Number(row.retired_at) }),
  };
}
