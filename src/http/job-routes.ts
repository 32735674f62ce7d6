import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { JOB_EVENT_STREAM_PARAMETERS } from '../contract/jobs-paths.js';
import { JOB_ID_PATTERN } from '../core/ids.js';
import type { JobState } from '../core/job-states.js';
import { ProblemError } from '../core/problems.js';
import { awaitJob } from '../delivery/await-job.js';
import type { JobEventStreams } from '../delivery/event-stream.js';
import type { JobWatch } from '../delivery/job-watch.js';
import type { CachedCounts } from '../engine/cached-counts.js';
import { jobBody, jobHeaders } from '../engine/job-view.js';
import type { JobRecord, Store } from '../store/store.js';
import { jobPageBody, jobQueryOf, LISTING_QUERY_SCHEMA, type ListingQuery, withPrincipal } from './job-listing.js';
import { parsePrefer } from './prefer.js';
import type { Authenticate } from './security.js';

export interface JobRouteDeps {
  store: Store;
  /** The job counts, read at most once per COUNTS_CACHE_MS. */
  counts: CachedCounts;
  authenticate: Authenticate;
  cancelRunningJob: (jobId: string) => void;
  watch: JobWatch;
  streams: JobEventStreams;
  longPollMaxSeconds: number;
  /** Whether a principal is an operator, who lists, counts and retries every principal's jobs. */
  isOperator: IsOperator;
}

/** Tells whether a principal is an operator (ADMIN_PRINCIPALS, or the application's `operators` function). */
export type IsOperator = (principal: string, request: FastifyRequest) => boolean | Promise<boolean>;

type JobRequest = FastifyRequest<{ Params: { id: string } }>;

/** GET /jobs/events's query string, as the served document declares it. */
interface EventStreamQuery {
  status?: JobState[];
  operation?: string;
}

/** Its schema (unknown parameters are left alone: an API key may travel there). */
const EVENT_STREAM_QUERY_SCHEMA = {
  type: 'object',
  properties: Object.fromEntries(JOB_EVENT_STREAM_PARAMETERS.map((parameter) => [parameter.name, parameter.schema])),
};

/** The jobs API: a principal lists, sees, waits for, streams and cancels its own jobs only; an operator lists every principal's. */
export function registerJobRoutes(server: FastifyInstance, deps: JobRouteDeps): void {
  const notFound = (id: string) => new ProblemError('jobNotFound', `There is no job ${id} for this principal.`);
  const onRequest = async (request: FastifyRequest) => {
    request.principal = await deps.authenticate(request);
  };
  /** Whose job the request may reach: the caller's, or (undefined) everyone's for an operator. */
  const scopeOf = async (request: FastifyRequest): Promise<string | undefined> =>
    (await deps.isOperator(request.principal, request)) ? undefined : request.principal;
  /** The principal to read and act on a job as: the caller, or for an operator the job's own (if it exists). */
  const actingFor = async (request: FastifyRequest, id: string): Promise<string> =>
    (await scopeOf(request)) === undefined ? ((await deps.store.jobPrincipal(id)) ?? request.principal) : request.principal;
  const send = (reply: FastifyReply, status: number, job: JobRecord) =>
    reply.code(status).headers(jobHeaders(job)).type('application/json; charset=utf-8').send(jobBody(job));

  /** The job, after waiting for it to finish when the request says Prefer: wait=N. */
  const readJob = async (request: JobRequest, reply: FastifyReply): Promise<JobRecord> => {
    const { id } = request.params;
    if (!JOB_ID_PATTERN.test(id)) throw notFound(id);
    const { wait } = parsePrefer(request.headers.prefer, deps.longPollMaxSeconds);
    reply.header('vary', 'Prefer');
    const aborted = new AbortController();
    const onClose = () => aborted.abort();
    request.raw.once('close', onClose);
    try {
      const principal = await actingFor(request, id);
      const job = wait ? await awaitJob(deps.store, deps.watch, principal, id, wait, aborted.signal) : await deps.store.getJob(principal, id);
      if (!job) throw notFound(id);
      if (wait !== undefined) reply.header('preference-applied', `wait=${wait}`);
      return job;
    } finally {
      request.raw.off('close', onClose);
    }
  };

  server.get<{ Querystring: ListingQuery }>('/jobs', { onRequest, schema: { querystring: LISTING_QUERY_SCHEMA } }, async (request, reply) => {
    const principal = await scopeOf(request);
    const page = await deps.store.listJobs(jobQueryOf(request.query, principal));
    return reply
      .code(200)
      .type('application/json; charset=utf-8')
      .send(jobPageBody(page, principal === undefined ? withPrincipal : jobBody));
  });

  server.get<{ Querystring: EventStreamQuery }>('/jobs/events', { onRequest, schema: { querystring: EVENT_STREAM_QUERY_SCHEMA } }, async (request, reply) => {
    const { status, operation } = request.query;
    await deps.streams.handleEveryJob(request, reply, {
      principal: await scopeOf(request),
      ...(status === undefined ? {} : { statuses: status }),
      ...(operation === undefined ? {} : { operation }),
    });
  });

  server.get('/jobs/counts', { onRequest }, async (request, reply) => {
    if ((await scopeOf(request)) !== undefined) {
      throw new ProblemError('forbidden', 'Only operators (ADMIN_PRINCIPALS) may read the counts of every job.');
    }
    const { counts, asOf } = await deps.counts.current();
    return reply
      .code(200)
      .type('application/json; charset=utf-8')
      .send(JSON.stringify({ counts, asOf: new Date(asOf).toISOString() }));
  });

  server.get<{ Params: { id: string } }>('/jobs/:id', { onRequest }, async (request, reply) => send(reply, 200, await readJob(request, reply)));

  server.get<{ Params: { id: string } }>('/jobs/:id/result', { onRequest }, async (request, reply) => {
    const job = await readJob(request, reply);
    switch (job.status) {
      case 'succeeded':
        if (job.resultLocation !== undefined) return reply.code(303).header('location', job.resultLocation).send();
        return reply
          .code(200)
          .type('application/json; charset=utf-8')
          .send(job.result ?? 'null');
      case 'failed':
      case 'canceled':
        if (!job.error) throw new ProblemError('internal', `Job ${job.id} ended ${job.status} without a stored error.`);
        return reply
          .code(job.error.status)
          .type('application/problem+json; charset=utf-8')
          .send(JSON.stringify({ ...job.error, instance: `/jobs/${job.id}` }));
      default:
        return send(reply, 202, job);
    }
  });

  server.get<{ Params: { id: string } }>('/jobs/:id/events', { onRequest }, async (request, reply) => {
    if (!JOB_ID_PATTERN.test(request.params.id)) throw notFound(request.params.id);
    await deps.streams.handle(request, reply, notFound, await actingFor(request, request.params.id));
  });

  server.post<{ Params: { id: string } }>('/jobs/:id/retry', { onRequest }, async (request, reply) => {
    const { id } = request.params;
    if (!JOB_ID_PATTERN.test(id)) throw notFound(id);
    const outcome = await deps.store.retryEndedJob(await scopeOf(request), id, Date.now());
    switch (outcome.kind) {
      case 'not-found':
        throw notFound(id);
      case 'not-retryable':
        throw new ProblemError('jobNotRetryable', `Job ${id} is ${outcome.job.status}; only a failed or canceled job can be retried.`, {
          extra: { jobStatus: outcome.job.status },
        });
      case 'queued':
        reply.header('location', `/jobs/${id}`);
        return send(reply, 202, outcome.job);
    }
  });

  server.delete<{ Params: { id: string } }>('/jobs/:id', { onRequest }, async (request, reply) => {
    const { id } = request.params;
    if (!JOB_ID_PATTERN.test(id)) throw notFound(id);
    const outcome = await deps.store.cancelJob(await actingFor(request, id), id, Date.now());
    switch (outcome.kind) {
      case 'not-found':
        throw notFound(id);
      case 'finished':
        throw new ProblemError('jobFinished', `Job ${id} has already finished (${outcome.job.status}); there is nothing to cancel.`, {
          extra: { jobStatus: outcome.job.status },
        });
      case 'canceled':
        return send(reply, 200, outcome.job);
      case 'signalled':
        // A worker in this process aborts the handler now; one in another process sees the flag at its next lease renewal.
        deps.cancelRunningJob(id);
        return send(reply, 202, outcome.job);
    }
  });
}
