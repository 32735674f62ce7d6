import { setTimeout as sleep } from 'node:timers/promises';
import createFetchClient, { type ClientOptions } from 'openapi-fetch';
import { JOB_STATES } from '../core/job-states.js';
import type { ProblemDetails } from '../core/problems.js';
import type { OperationResult } from '../handlers.js';
import { serverSentEvents } from './event-stream-reader.js';
import { type RetryOptions, retryingFetch } from './retrying-fetch.js';

export { type RetryOptions, retryingFetch } from './retrying-fetch.js';

/*
 * The typed client: openapi-fetch over the types generated from the served document, with
 * safe retries for submissions, `waitFor` for a result and `waitForJobs` for many jobs at once.
 *
 *   const api = createClient<paths>({ baseUrl, headers: { 'X-API-Key': key } });
 *   const { data } = await api.POST('/reports', { body: { title: 'Q3', rows: 10 } });
 *   const report = await api.waitFor(data!);  // typed as the operation's 200 response
 */

/** The generated paths, with the Idempotency-Key header made optional (the client supplies one). */
type OptionalIdempotencyKey<Paths> = {
  [Path in keyof Paths]: {
    [Method in keyof Paths[Path]]: Paths[Path][Method] extends { parameters: { header: infer Header } }
      ? Header extends { 'Idempotency-Key': string }
        ? Omit<Paths[Path][Method], 'parameters'> & {
            parameters: Omit<Paths[Path][Method]['parameters'], 'header'> & { header?: Omit<Header, 'Idempotency-Key'> & { 'Idempotency-Key'?: string } };
          }
        : Paths[Path][Method]
      : Paths[Path][Method];
  };
};

/** Every asynchronous operation of Paths, as { id: operationId, op: operation type }. */
type AsyncOperations<Paths> = {
  [Path in keyof Paths]: {
    [Method in keyof Paths[Path]]: Paths[Path][Method] extends {
      responses: { 202: { content: { 'application/json': { operation: infer Id extends string } } } };
    }
      ? string extends Id
        ? never // a 202 that is not a submission (DELETE /jobs/{id}, GET /jobs/{id}/result): its operation is any string
        : { id: Id; op: Paths[Path][Method] }
      : never;
  }[keyof Paths[Path]];
}[keyof Paths];

/** The result type of the asynchronous operation `OperationId`. */
export type JobResult<Paths, OperationId> = OperationResult<Extract<AsyncOperations<Paths>, { id: OperationId }>['op']>;

/** What waitFor accepts: a 202 body, a job, or anything with the job's id and operation. */
export type JobReference = { job_id: string; operation: string } | { id: string; operation: string };

/** The result of any asynchronous operation of Paths: what a submission with Prefer: wait may answer. */
type AnyResult<Paths> = JobResult<Paths, AsyncOperations<Paths>['id']>;

/** What waitFor resolves with for `Data`: the operation's result for a job reference, the data itself for a result. */
export type WaitResult<Paths, Data> = Data extends { operation: infer OperationId } & ({ job_id: string } | { id: string })
  ? JobResult<Paths, OperationId>
  : Data;

const JOB_STATUSES = new Set<string>(JOB_STATES);

/** A 202 body or a job (rather than an operation's result, which a submission with Prefer: wait may answer). */
function jobIdOf(data: unknown): string | undefined {
  if (data === null || typeof data !== 'object') return undefined;
  const candidate = data as { job_id?: unknown; id?: unknown; operation?: unknown; status?: unknown };
  if (typeof candidate.operation !== 'string') return undefined;
  if (typeof candidate.job_id === 'string' && candidate.status === 'accepted') return candidate.job_id;
  if (typeof candidate.id === 'string' && typeof candidate.status === 'string' && JOB_STATUSES.has(candidate.status)) return candidate.id;
  return undefined;
}

/** The job failed or was canceled; `problem` is its stored problem details. */
export class JobFailedError extends Error {
  constructor(
    readonly status: 'failed' | 'canceled',
    readonly problem: ProblemDetails | undefined,
    readonly job: unknown,
  ) {
    super(`job ${status}: ${problem?.detail ?? problem?.title ?? status}`);
    this.name = 'JobFailedError';
  }
}

export interface WaitOptions {
  /** Give up after this many ms (rejects with a TimeoutError). Default: wait as long as it takes. */
  timeout?: number;
  signal?: AbortSignal;
  /** Seconds per long-poll request (Prefer: wait=N); the server caps it. Default 30. */
  pollSeconds?: number;
}

export interface WaitForJobsOptions {
  /** Give up after this many ms (rejects with a TimeoutError). Default: wait as long as it takes. */
  timeout?: number;
  signal?: AbortSignal;
}

/** The job as GET /jobs/{id} serves it: the served document's Job schema. */
type JobOf<Paths> = Paths extends { '/jobs/{id}': { get: { responses: { 200: { content: { 'application/json': infer Job } } } } } }
  ? Job
  : Record<string, unknown>;

/** The result type for a job reference: its operation's, or unknown for a bare id. */
type ResultOf<Paths, Reference> = Reference extends { operation: infer OperationId } ? JobResult<Paths, OperationId> : unknown;

/** How a job that waitForJobs waited for ended: its result when it succeeded, its problem details when it failed or was canceled, and the job as it ended. */
export type JobEnding<Paths, Reference> =
  | { id: string; status: 'succeeded'; result: ResultOf<Paths, Reference>; job: JobOf<Paths> }
  | { id: string; status: 'failed' | 'canceled'; error: ProblemDetails | undefined; job: JobOf<Paths> };

const ENDED = new Set(['succeeded', 'failed', 'canceled']);
/** How many jobs' current state waitForJobs reads at once when its stream opens. */
const CHECK_CONCURRENCY = 8;

export interface AsyncFirstClientOptions extends ClientOptions {
  retry?: RetryOptions;
}

/** Creates the typed client for a service generated from its served document. */
export function createClient<Paths extends {}>(options: AsyncFirstClientOptions = {}) {
  const { retry, fetch: fetchImpl, ...rest } = options;
  const client = createFetchClient<OptionalIdempotencyKey<Paths>>({
    ...rest,
    fetch: retryingFetch(fetchImpl ?? ((request) => globalThis.fetch(request)), retry),
  });
  const raw = client as unknown as {
    GET: (
      path: string,
      init: {
        params: { path?: { id: string }; query?: Record<string, string[]> };
        headers: Record<string, string>;
        signal: AbortSignal;
        parseAs?: 'stream';
      },
    ) => Promise<{ data?: unknown; error?: unknown; response: Response }>;
  };
  const deadline = (options: { signal?: AbortSignal; timeout?: number }): AbortSignal => {
    const signals = [options.signal, options.timeout === undefined ? undefined : AbortSignal.timeout(options.timeout)].filter(
      (signal): signal is AbortSignal => signal !== undefined,
    );
    return signals.length ? AbortSignal.any(signals) : new AbortController().signal;
  };

  /**
   * Resolves with the job's typed result once it succeeds; rejects with JobFailedError when it fails
   * or is canceled. Given what a submission answered — a 202 body, or (with Prefer: wait) already the
   * result — it waits for the former and returns the latter as it is.
   */
  async function waitFor<Data extends JobReference | AnyResult<Paths>>(data: Data, waitOptions: WaitOptions = {}): Promise<WaitResult<Paths, Data>> {
    type Result = WaitResult<Paths, Data>;
    const id = jobIdOf(data);
    if (id === undefined) return data as Result;
    const signal = deadline(waitOptions);
    const pollSeconds = waitOptions.pollSeconds ?? 30;
    for (;;) {
      signal.throwIfAborted();
      const { data, error, response } = await raw.GET('/jobs/{id}', { params: { path: { id } }, headers: { prefer: `wait=${pollSeconds}` }, signal });
      if (error !== undefined || !response.ok) throw new JobFailedError('failed', error as ProblemDetails, undefined);
      const current = data as { status: string; result?: unknown; error?: ProblemDetails };
      if (current.status === 'succeeded') return current.result as Result;
      if (current.status === 'failed' || current.status === 'canceled') throw new JobFailedError(current.status, current.error, current);
    }
  }

  /**
   * Waits for many jobs at once over one connection: the stream of every event of the caller's
   * jobs that end one (GET /jobs/events?status=succeeded&status=failed&status=canceled). Once the
   * stream is open it reads each job once (a job that had already ended is not in the stream), then
   * takes each job's end from its event; a dropped stream is resumed with Last-Event-ID. Resolves,
   * in the order given, with how each job ended (a failure is an ending, not a rejection); rejects
   * on the timeout or the signal, for a job that does not exist, or when the server refuses the stream.
   */
  async function waitForJobs<const References extends readonly (JobReference | string)[]>(
    jobs: References,
    waitOptions: WaitForJobsOptions = {},
  ): Promise<{ -readonly [Index in keyof References]: JobEnding<Paths, References[Index]> }> {
    type Endings = { -readonly [Index in keyof References]: JobEnding<Paths, References[Index]> };
    const ids = jobs.map((job) => (typeof job === 'string' ? job : 'job_id' in job ? job.job_id : job.id));
    const signal = deadline(waitOptions);
    const pending = new Set(ids);
    const endings = new Map<string, JobEnding<Paths, unknown>>();
    const ended = (job: { id: string; status: string; result?: unknown; error?: ProblemDetails }) => {
      if (!pending.has(job.id) || !ENDED.has(job.status)) return;
      pending.delete(job.id);
      const view = job as JobOf<Paths>;
      endings.set(
        job.id,
        job.status === 'succeeded'
          ? { id: job.id, status: 'succeeded', result: job.result, job: view }
          : { id: job.id, status: job.status as 'failed' | 'canceled', error: job.error, job: view },
      );
    };
    // Each job's state once, after the stream is live: an end committed before it is seen here, a later one in the stream.
    const readEach = async () => {
      const queue = [...pending];
      const worker = async () => {
        for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
          const { data, error, response } = await raw.GET('/jobs/{id}', { params: { path: { id } }, headers: {}, signal });
          if (!response.ok) throw new Error(`waitForJobs: job ${id}: ${(error as ProblemDetails | undefined)?.detail ?? response.status}`, { cause: error });
          ended(data as { id: string; status: string });
        }
      };
      await Promise.all(Array.from({ length: Math.min(CHECK_CONCURRENCY, queue.length) }, worker));
    };

    let lastEventId: string | undefined;
    let read = false;
    // Aborted when done: it closes the stream's connection at once (cancelling the body alone leaves it open for a while).
    const finished = new AbortController();
    const streamSignal = AbortSignal.any([signal, finished.signal]);
    try {
      for (let drops = 0; pending.size > 0; ) {
        signal.throwIfAborted();
        const { error, response } = await raw.GET('/jobs/events', {
          params: { query: { status: ['succeeded', 'failed', 'canceled'] } },
          headers: { accept: 'text/event-stream', ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) },
          signal: streamSignal,
          parseAs: 'stream',
        });
        if (response.status === 400 && lastEventId !== undefined && (error as ProblemDetails | undefined)?.type?.endsWith(':last-event-id-invalid')) {
          // The database no longer knows the cursor (it was replaced): start again from now, and read each job again.
          lastEventId = undefined;
          read = false;
          continue;
        }
        if (!response.ok || !response.body) {
          throw new Error(`waitForJobs: GET /jobs/events answered ${response.status}: ${(error as ProblemDetails | undefined)?.detail ?? ''}`, {
            cause: error,
          });
        }
        try {
          for await (const message of serverSentEvents(response.body)) {
            if (message.id !== undefined) lastEventId = message.id;
            drops = 0;
            if (!read) {
              await readEach();
              read = true;
            }
            if (message.event !== undefined) ended(JSON.parse(message.data) as { id: string; status: string });
            if (pending.size === 0) {
              finished.abort();
              break;
            }
          }
        } catch (dropped) {
          if (signal.aborted) throw signal.reason;
          if (dropped instanceof Error && dropped.message.startsWith('waitForJobs:')) throw dropped;
        }
        if (pending.size === 0) break;
        // The stream ended or broke (a restart, a lost connection): resume after the last id seen.
        await sleep(Math.min(5000, 100 * 2 ** drops++), undefined, { signal });
      }
    } finally {
      finished.abort();
    }
    return ids.map((id) => endings.get(id)) as Endings;
  }

  return Object.assign(client, { waitFor, waitForJobs });
}
