import type { JobState } from '../core/job-states.js';
import { ProblemError } from '../core/problems.js';
import type { EventLogPage, EventPosition } from '../store/driver.js';
import type { EventQuery, EventSlice, StreamedEvent } from '../store/store.js';
import { acceptedJobBody } from './job-view.js';

/** Events per read of the log when a query names no limit. */
export const EVENT_READ_SIZE = 100;

/** The event types that leave a job in each state: a status filter of GET /jobs/events is a filter on these. */
const EVENT_TYPES_OF: Record<JobState, readonly string[]> = {
  queued: ['job.queued'],
  running: ['job.running', 'job.progress'],
  succeeded: ['job.succeeded'],
  failed: ['job.failed'],
  canceled: ['job.canceled'],
};

export function eventTypesOf(statuses: readonly JobState[]): string[] {
  return [...new Set(statuses.flatMap((status) => EVENT_TYPES_OF[status]))];
}

/*
 * A cursor (an SSE `id:`) is an event's position in the log across jobs, in base64url: opaque to
 * clients, so the way a position is kept can change (and differs between the drivers) without
 * breaking them.
 */
const CURSOR_TEXT = /^e(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,15})$/;
const MAX_TRANSACTION = (1n << 64n) - 1n;

export function cursorOf(position: EventPosition): string {
  return Buffer.from(`e${position.transaction}.${position.row}`, 'latin1').toString('base64url');
}

/** The position a cursor names; one no stream gave out is ProblemError last-event-id-invalid. */
export function positionOf(cursor: string): EventPosition {
  const match = CURSOR_TEXT.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  const invalid = () => new ProblemError('lastEventIdInvalid', 'Last-Event-ID is not an id this event stream sent; reconnect without it to start from now.');
  if (!match) throw invalid();
  const position = { transaction: BigInt(match[1] as string), row: Number(match[2]) };
  // Node decodes base64url leniently (it skips stray characters): only the exact encoding is one of ours.
  if (position.transaction > MAX_TRANSACTION || !Number.isSafeInteger(position.row) || cursorOf(position) !== cursor) throw invalid();
  return position;
}

export function isAfter(a: EventPosition, b: EventPosition): boolean {
  return a.transaction > b.transaction || (a.transaction === b.transaction && a.row > b.row);
}

/** What a read of the log gives a stream: each event with its cursor and data, and where to read on from. */
export function sliceOf(page: EventLogPage): EventSlice {
  const events = page.events.map(
    (event): StreamedEvent => ({
      cursor: cursorOf(event.position),
      jobId: event.jobId,
      principal: event.principal,
      type: event.type,
      data:
        event.data ??
        acceptedJobBody({
          id: event.jobId,
          principal: event.principal,
          operation: event.operation,
          maxAttempts: event.maxAttempts,
          createdAt: event.jobCreatedAt,
        }),
    }),
  );
  return { events, cursor: cursorOf(page.scannedTo), heldBack: page.heldBack };
}

/** The driver's read for a query. */
export function logReadOf(query: EventQuery): { after: EventPosition; principal?: string; operation?: string; types?: string[]; limit: number } {
  return {
    after: positionOf(query.after),
    ...(query.principal === undefined ? {} : { principal: query.principal }),
    ...(query.operation === undefined ? {} : { operation: query.operation }),
    ...(query.statuses === undefined ? {} : { types: eventTypesOf(query.statuses) }),
    limit: Math.max(1, Math.min(1000, Math.floor(query.limit ?? EVENT_READ_SIZE))),
  };
}
