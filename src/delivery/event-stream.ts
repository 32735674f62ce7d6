import type { FastifyReply, FastifyRequest } from 'fastify';
import { isFinished } from '../core/job-states.js';
import { ProblemError } from '../core/problems.js';
import { acceptedJobBody } from '../engine/job-view.js';
import type { JobEvent, JobRecord, Store } from '../store/store.js';
import type { JobWatch } from './job-watch.js';

export interface EventStreamDeps {
  store: Store;
  watch: JobWatch;
  maxStreamsPerPrincipal: number;
  heartbeatMs: number;
}

/**
 * GET /jobs/{id}/events: Server-Sent Events, one per change of the job (job.queued, job.running,
 * job.progress, job.succeeded, job.failed, job.canceled), each with the job as JSON and the id
 * of its row in the event log (commit order, so increasing). A reconnect with Last-Event-ID gets
 * what it missed, or the current state when the id is not one this stream sent; the stream ends
 * after the terminal event; comment lines keep it alive. Changes made by a worker in another
 * process arrive through the event log.
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

  /** Streams a job's events; `owner` is whose job it is read as (the caller, or for an operator the job's principal). Stream limits count the caller's. */
  async handle(
    request: FastifyRequest<{ Params: { id: string } }>,
    reply: FastifyReply,
    notFound: (id: string) => ProblemError,
    owner: string = request.principal,
  ): Promise<void> {
    const { id } = request.params;
    const caller = request.principal;
    const open = this.openByPrincipal.get(caller) ?? 0;
    if (open >= this.deps.maxStreamsPerPrincipal) {
      throw new ProblemError('tooManyStreams', `This principal already has ${open} open event streams; close one or poll GET /jobs/{id}.`, {
        headers: { 'retry-after': '5' },
      });
    }
    const lastEventId = request.headers['last-event-id'];

    let woken = false;
    let wake: (() => void) | undefined;
    const unwatch = this.deps.watch.watch(id, () => {
      woken = true;
      wake?.();
    });
    // Counted before the first await, so concurrent opens cannot all pass the limit.
    this.openByPrincipal.set(caller, open + 1);
    const release = () => {
      const remaining = (this.openByPrincipal.get(caller) ?? 1) - 1;
      if (remaining > 0) this.openByPrincipal.set(caller, remaining);
      else this.openByPrincipal.delete(caller);
    };
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

    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    let closed = false;
    const heartbeat = setInterval(() => out.write(': heartbeat\n\n'), this.deps.heartbeatMs);
    const close = () => {
      if (closed) return;
      closed = true;
      this.closers.delete(close);
      clearInterval(heartbeat);
      unwatch();
      wake?.();
      release();
    };
    this.closers.add(close);
    request.raw.on('close', close);
    out.on('close', close);

    try {
      let lastId = first.after;
      let batch: { job: JobRecord; events: JobEvent[] } | undefined = first;
      while (!closed && batch) {
        for (const event of batch.events) {
          out.write(formatEvent(event.id, event.type, event.data));
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
        if (closed) break;
        batch = await this.deps.store.getJobEvents(owner, id, lastId);
      }
    } catch (error) {
      request.log.warn({ err: error, jobId: id }, 'event stream ended by an error');
    } finally {
      close();
      out.end();
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
      const all = await store.getJobEvents(principal, id, 0);
      return all && { job: all.job, events: [queuedEvent(all.job), ...all.events], after: 0 };
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

function formatEvent(id: number, type: string, data: string): string {
  return `id: ${id}\nevent: ${type}\ndata: ${data}\n\n`;
}

/** The job as it was when accepted: the first event of a new stream (the job row is its record). */
function queuedEvent(job: JobRecord): JobEvent {
  return { id: 0, type: 'job.queued', data: acceptedJobBody(job) };
}
