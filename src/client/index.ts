import createFetchClient, { type ClientOptions } from 'openapi-fetch';
import { JOB_STATES } from '../core/job-states.js';
import type { ProblemDetails } from '../core/problems.js';
import type { OperationResult } from '../handlers.js';
import { type RetryOptions, retryingFetch } from './retrying-fetch.js';

export { type RetryOptions, retryingFetch } from './retrying-fetch.js';

/*
 * The typed client: openapi-fetch over the types generated from the served document, with
 * safe retries for submissions and `waitFor` for results.
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
      init: { params: { path: { id: string } }; headers: Record<string, string>; signal: AbortSignal },
    ) => Promise<{ data?: unknown; error?: unknown; response: Response }>;
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
    const signals = [waitOptions.signal, waitOptions.timeout === undefined ? undefined : AbortSignal.timeout(waitOptions.timeout)].filter(
      (signal): signal is AbortSignal => signal !== undefined,
    );
    const signal = signals.length ? AbortSignal.any(signals) : new AbortController().signal;
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

  return Object.assign(client, { waitFor });
}
