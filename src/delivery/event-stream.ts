import type { FastifyReply, FastifyRequest } from 'fastify';
import { isFinished, type JobState } from '../core/job-states.js';
import { ProblemError } from '../core/problems.js';
import { EVENT_READ_SIZE } from '../engine/event-log.js';
import { acceptedJobBody } from '../engine/job-view.js';
import type { JobEvent, JobRecord, Store, StreamedEvent } from '../store/store.js';
import type { JobWatch } from './job-watch.js';

export interface EventStreamDeps {
  store: Store;
  watch: JobWatch;
  maxStreamsPerPrincipal: number;
  heartbeatMs: number;
}

/** Which events a stream of every job's events sends: GET /jobs/events's filters and scope. */
export interface EveryJobStreamQuery {
  /** The caller's jobs only; undefined for an operator, who gets every principal's (each event then says whose job it is). */
  principal: string | undefined;
  operation?: string;
  statuses?: readonly JobState[];
}

/** While a read of the log says committed events wait for an older transaction, how soon it is read again (nothing announces that transaction's end). */
const HELD_BACK_RETRY_MS = 50;

/** An open stream: its response, whether the client left, and a write that waits while the client is slow. */
interface OpenStream {
  readonly closed: boolean;
  write(text: string): Promise<void>;
  end(): void;
}

/**
 * Server-Sent Events of jobs. GET /jobs/{id}/events: one per change of the job (job.queued,
 * job.running, job.progress, job.succeeded, job.failed, job.canceled), each with the job as JSON
 * and the job's version as its id. A reconnect with Last-Event-ID gets what it missed, or the
 * current state when the id is not one this stream sent; the stream ends after the terminal
 * event. GET /jobs/events: every change of every job the caller may see, in commit order, each
 * with its position in the log across jobs as its id (opaque), resumable with Last-Event-ID; it
 * does not end. Both share the per-principal limit and the heartbeat (comment lines keep them
 * alive), and changes made by a worker in another process arrive through the event log.
 */
export class JobEventStreams {
  private readonly openByPrincipal = new Map<string, number>();
  private readonly closers = new Set<() => void>();

  constructor(private readonly deps: EventStreamDeps) {}

  /** Shutdown: ends every open stream. */
  closeAll(): void {
    for (const close of [...this.closers]) close();
  }

  /** Open streams in this process. */
  get open(): number {
    let total = 0;
    for (const count of this.openByPrincipal.values()) total += count;
    return total;
  }

  /**
   * Takes one of the caller's stream slots (429 too-many-streams when none is left), counted
   * before any await so that concurrent opens cannot all pass the limit; the returned function gives it back.
   */
  private takeSlot(caller: string, suggestion: string): () => void {
    const open = this.openByPrincipal.get(caller) ?? 0;
    if (open >= this.deps.maxStreamsPerPrincipal) {
      throw new ProblemError('tooManyStreams', `This principal already has ${open} open event streams; close one or ${suggestion}.`, {
        headers: { 'retry-after': '5' },
      });
    }
    this.openByPrincipal.set(caller, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const remaining = (this.openByPrincipal.get(caller) ?? 1) - 1;
      if (remaining > 0) this.openByPrincipal.set(caller, remaining);
      else this.openByPrincipal.delete(caller);
    };
  }

  /** Answers 200 text/event-stream and keeps it alive with heartbeats until the client leaves, `onClose` runs or the server shuts down. */
  private startStream(request: FastifyRequest, reply: FastifyReply, onClose: () => void): OpenStream {
    // Headers set before (the dashboard's security headers) go out too.
    const earlier = Object.entries(reply.getHeaders()).filter((entry): entry is [string, string | number | string[]] => entry[1] !== undefined);
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, {
      ...Object.fromEntries(earlier),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    let closed = false;
    let drained: (() => void) | undefined;
    const heartbeat = setInterval(() => out.write(': heartbeat\n\n'), this.deps.heartbeatMs);
    const close = () => {
      if (closed) return;
      closed = true;
      this.closers.delete(close);
      clearInterval(heartbeat);
      drained?.();
      onClose();
    };
    this.closers.add(close);
    request.raw.on('close', close);
    out.on('close', close);
    out.on('drain', () => drained?.());
    return {
      get closed() {
        return closed;
      },
      // A slow client is waited for (its socket drains) rather than buffered for without bound.
      write: async (text) => {
        if (closed || out.write(text)) return;
        await new Promise<void>((resolve) => {
          drained = resolve;
        });
        drained = undefined;
      },
      end: () => {
        close();
        out.end();
      },
    };
  }

  /** Streams a job's events; `owner` is whose job it is read as (the caller, or for an operator the job's principal). Stream limits count the caller's. */
  async handle(
    request: FastifyRequest<{ Params: { id: string } }>,
    reply: FastifyReply,
    notFound: (id: string) => ProblemError,
    owner: string = request.principal,
  ): Promise<void> {
    const { id } = request.params;
    const release = this.takeSlot(request.principal, 'poll GET /jobs/{id}');
    const lastEventId = request.headers['last-event-id'];

    let woken = false;
    let wake: (() => void) | undefined;
    const unwatch = this.deps.watch.watch(id, () => {
      woken = true;
      wake?.();
    });
    const first = await this.opening(owner, id, typeof lastEventId === 'string' ? lastEventId.trim() : '').catch((error: unknown) => {
      unwatch();
      release();
      throw error;
    });
    if (!first) {
      unwatch();
      release();
      throw notFound(id);
    }

    const stream = this.startStream(request, reply, () => {
      unwatch();
      wake?.();
      release();
    });
    try {
      let lastId = first.after;
      let batch: { job: JobRecord; events: JobEvent[] } | undefined = first;
      while (!stream.closed && batch) {
        for (const event of batch.events) {
          await stream.write(formatEvent(event.id, event.type, event.data));
          lastId = event.id;
        }
        if (isFinished(batch.job.status)) break;
        if (!woken) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
        woken = false;
        if (stream.closed) break;
        batch = await this.deps.store.getJobEvents(owner, id, lastId);
      }
    } catch (error) {
      request.log.warn({ err: error, jobId: id }, 'event stream ended by an error');
    } finally {
      stream.end();
    }
  }

  /**
   * Streams every event of the jobs the query covers, in commit order, from after Last-Event-ID
   * (a cursor this stream sent; another is 400 last-event-id-invalid) or from now. The first
   * thing sent is an `id:` line with no event (the cursor it starts after), so a client that
   * reconnects before any event arrives resumes from there; so is the cursor past events the
   * filters left out. The stream does not end by itself.
   */
  async handleEveryJob(request: FastifyRequest, reply: FastifyReply, query: EveryJobStreamQuery): Promise<void> {
    const release = this.takeSlot(request.principal, 'poll GET /jobs');
    const store = this.deps.store;
    let woken = false;
    let wake: (() => void) | undefined;
    const rouse = () => {
      woken = true;
      wake?.();
    };
    // Watched before the first read, so no change committed after it goes unnoticed.
    const unwatch = this.deps.watch.watchEveryJob(rouse);
    const header = request.headers['last-event-id'];
    const lastEventId = typeof header === 'string' ? header.trim() : '';
    let cursor: string;
    try {
      if (lastEventId === '') cursor = await store.eventCursor();
      else {
        await store.checkEventCursor(lastEventId);
        cursor = lastEventId;
      }
    } catch (error) {
      unwatch();
      release();
      throw error;
    }

    let retry: NodeJS.Timeout | undefined;
    const stream = this.startStream(request, reply, () => {
      unwatch();
      clearTimeout(retry);
      wake?.();
      release();
    });
    const render = query.principal === undefined ? withPrincipal : (event: StreamedEvent) => event.data;
    try {
      await stream.write(`id: ${cursor}\n\n`);
      while (!stream.closed) {
        woken = false;
        const slice = await store.readEvents({
          after: cursor,
          ...(query.principal === undefined ? {} : { principal: query.principal }),
          ...(query.operation === undefined ? {} : { operation: query.operation }),
          ...(query.statuses === undefined ? {} : { statuses: query.statuses }),
        });
        for (const event of slice.events) await stream.write(formatEvent(event.cursor, event.type, render(event)));
        const movedPastFiltered = slice.cursor !== cursor && slice.cursor !== slice.events.at(-1)?.cursor;
        if (movedPastFiltered) await stream.write(`id: ${slice.cursor}\n\n`);
        // A full read may have left more behind it: read on at once.
        const full = slice.events.length >= EVENT_READ_SIZE;
        cursor = slice.cursor;
        if (full || stream.closed) continue;
        if (slice.heldBack) retry = setTimeout(rouse, HELD_BACK_RETRY_MS);
        if (!woken) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
        clearTimeout(retry);
      }
    } catch (error) {
      request.log.warn({ err: error }, 'event stream of every job ended by an error');
    } finally {
      stream.end();
    }
  }

  /**
   * What a new stream sends first, and the event id it continues after. Without Last-Event-ID:
   * job.queued (id 0) and the whole event log. With an id this stream sent (0, or one of the job's
   * events): the events after it. With any other (unknown, in the future, not a number): the
   * current state, which is the newest event (job.queued when there is none), so a client never
   * waits on a finished job's stream for a terminal event that was already sent.
   */
  private async opening(principal: string, id: string, lastEventId: string): Promise<{ job: JobRecord; events: JobEvent[]; after: number } | undefined> {
    const store = this.deps.store;
    if (lastEventId === '') {
      // From version 0: a job that starts later has its acceptance's event stored whole.
      const all = await store.getJobEvents(principal, id, -1);
      return all && { job: all.job, events: withAcceptance(all.job, all.events), after: 0 };
    }
    const resumeFrom = /^\d+$/.test(lastEventId) ? Number(lastEventId) : undefined;
    if (resumeFrom === 0) {
      const all = await store.getJobEvents(principal, id, 0);
      return all && { ...all, after: 0 };
    }
    if (resumeFrom !== undefined && Number.isSafeInteger(resumeFrom)) {
      // Read from the id itself: it comes back first exactly when it is one of this job's events.
      const fromIt = await store.getJobEvents(principal, id, resumeFrom - 1);
      if (!fromIt) return undefined;
      if (fromIt.events[0]?.id === resumeFrom) return { job: fromIt.job, events: fromIt.events.slice(1), after: resumeFrom };
    }
    const all = await store.getJobEvents(principal, id, 0);
    if (!all) return undefined;
    const current = all.events.at(-1) ?? queuedEvent(all.job);
    return { job: all.job, events: [current], after: current.id };
  }
}

function formatEvent(id: number | string, type: string, data: string): string {
  return `id: ${id}\nevent: ${type}\ndata: ${data}\n\n`;
}

/** An event of an operator's stream: the job with whose it is, as an operator's listing shows it. */
function withPrincipal(event: StreamedEvent): string {
  return `{"principal":${JSON.stringify(event.principal)},${event.data.slice(1)}`;
}

/** The job's events from version 0, that first one (job.queued) built from the job row where its data was not stored. */
function withAcceptance(job: JobRecord, events: JobEvent[]): JobEvent[] {
  const [first, ...rest] = events;
  if (first?.id !== 0) return [queuedEvent(job), ...events];
  // The log stores no data for most acceptances (the job row says it all): null, despite JobEvent's type.
  return [(first.data as string | null) === null ? queuedEvent(job) : first, ...rest];
}

/** The job as it was when accepted: the first event of a new stream, from the job row (its run time too, while nothing changed it). */
function queuedEvent(job: JobRecord): JobEvent {
  return { id: 0, type: 'job.queued', data: acceptedJobBody({ ...job, runAt: job.version === 0 ? job.runAt : undefined }) };
}
