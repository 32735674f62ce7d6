import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { scheduleView } from '../contract/schedule-view.js';
import { JOB_ID_PATTERN } from '../core/ids.js';
import { ProblemError, problem } from '../core/problems.js';
import type { JobEventStreams } from '../delivery/event-stream.js';
import type { CachedCounts } from '../engine/cached-counts.js';
import { jobPageBody, jobQueryOf, LISTING_QUERY_SCHEMA, type ListingQuery, withPrincipal } from '../http/job-listing.js';
import type { IsOperator } from '../http/job-routes.js';
import { sendProblem } from '../http/problem-replies.js';
import type { Authenticate } from '../http/security.js';
import type { ActivityMinute, Store } from '../store/store.js';
import { DASHBOARD_SECURITY_HEADERS, type DashboardCredentials, dashboardAuthenticator, refuseCrossSite } from './dashboard-access.js';

/** How the dashboard is served (DASHBOARD_PREFIX, DASHBOARD_READ_ONLY, DASHBOARD_USER and DASHBOARD_PASSWORD). */
export interface DashboardOptions {
  /** Where the page is served, e.g. /dashboard (its API is under <prefix>/api/). */
  prefix: string;
  /** No cancel or retry: the page shows no actions and the API refuses them. */
  readOnly: boolean;
  /** HTTP basic credentials that act as an operator; absent: the service's own security, operators only. */
  credentials?: DashboardCredentials;
}

export interface DashboardDeps extends DashboardOptions {
  store: Store;
  counts: CachedCounts;
  /** The event streams: the page's live updates are the stream of every job's events. */
  streams: JobEventStreams;
  /** The jobs API's authenticator (the service's security handlers). */
  authenticate: Authenticate;
  isOperator: IsOperator;
  cancelRunningJob: (jobId: string) => void;
}

/** The chart's window and how long one reading of it is served. */
const ACTIVITY_WINDOW_MS = 60 * 60_000;
const ACTIVITY_CACHE_MS = 5000;
/** The newest events a job page shows (a job reporting progress often has many). */
const TIMELINE_EVENTS = 200;
/** The next runs the schedules page shows of each schedule. */
const SCHEDULE_RUNS = 3;

const ASSETS = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml',
} as const;

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** The page and its assets, read once from ./assets (beside the compiled module too: the build copies them). */
function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const files: Array<[string, string]> = [['index.html', 'text/html; charset=utf-8'], ...Object.entries(ASSETS)];
  for (const [name, type] of files) {
    const body = readFileSync(new URL(`./assets/${name}`, import.meta.url));
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` });
  }
  return assets;
}

/** One entry of a job's timeline, from the job as its event recorded it. */
function timelineEntry(event: { id: number; type: string; data: string }): Record<string, unknown> {
  const job = JSON.parse(event.data) as Record<string, unknown>;
  const error = job.error as { title?: string; detail?: string } | undefined;
  return {
    version: event.id,
    type: event.type,
    at: job.updatedAt,
    status: job.status,
    attempts: job.attempts,
    ...(job.progress === undefined ? {} : { progress: job.progress }),
    ...(error && event.type !== 'job.progress' ? { error: error.detail ?? error.title } : {}),
  };
}

/** A value read at most once per `maxAgeMs`, with one read in flight. */
function cachedReading<T>(read: () => Promise<T>, maxAgeMs: number): () => Promise<T> {
  let value: { at: number; reading: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!value || now - value.at >= maxAgeMs) {
      const reading = read();
      value = { at: now, reading };
      reading.catch(() => {
        if (value?.reading === reading) value = undefined;
      });
    }
    return value.reading;
  };
}

type JobRequest = FastifyRequest<{ Params: { id: string } }>;

/**
 * The dashboard: one page (with its script, style and icon) and a small API under the prefix that
 * acts as an operator with the dashboard's own authentication. Every response carries the
 * Content-Security-Policy; every action needs the page's action header.
 */
export async function registerDashboard(server: FastifyInstance, deps: DashboardDeps): Promise<void> {
  const assets = loadAssets();
  const authenticate = dashboardAuthenticator(deps.credentials, deps.authenticate, deps.isOperator);
  // The window starts on a minute, so each bar of the chart is one whole minute.
  const activity = cachedReading(async () => {
    const since = Math.floor((Date.now() - ACTIVITY_WINDOW_MS) / 60_000) * 60_000;
    return { since, minutes: await deps.store.jobActivity(since) };
  }, ACTIVITY_CACHE_MS);
  const notFound = (id: string) => new ProblemError('jobNotFound', `There is no job ${id}.`);

  const actions = new Set([`${deps.prefix}/api/jobs/:id/cancel`, `${deps.prefix}/api/jobs/:id/retry`]);
  await server.register(
    async (scope) => {
      scope.addHook('onRequest', async (request, reply) => {
        reply.headers(DASHBOARD_SECURITY_HEADERS);
        const isAction = request.method === 'POST' && actions.has(request.routeOptions.url ?? '');
        // Actions are checked before credentials: a request from another site learns nothing.
        if (isAction) refuseCrossSite(request);
        request.principal = await authenticate(request);
        if (isAction && deps.readOnly) {
          throw new ProblemError('dashboardReadOnly', 'The dashboard is read-only (DASHBOARD_READ_ONLY); nothing was changed.');
        }
      });

      const sendAsset = (request: FastifyRequest, reply: FastifyReply, name: string) => {
        const asset = assets.get(name) as Asset;
        reply.header('etag', asset.etag).header('cache-control', 'no-cache');
        if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
        return reply.code(200).type(asset.type).send(asset.body);
      };
      const sendJson = (reply: FastifyReply, body: string) =>
        reply.code(200).header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body);
      const jobIdOf = (request: JobRequest) => {
        if (!JOB_ID_PATTERN.test(request.params.id)) throw notFound(request.params.id);
        return request.params.id;
      };

      // The page links its assets relatively, so it is served at the prefix with a slash.
      scope.get('', async (_request, reply) => reply.code(308).header('location', `${deps.prefix}/`).send());
      scope.route({ method: 'GET', url: '/', prefixTrailingSlash: 'slash', handler: async (request, reply) => sendAsset(request, reply, 'index.html') });
      scope.get<{ Params: { name: string } }>('/assets/:name', async (request, reply) => {
        if (!(request.params.name in ASSETS)) throw new ProblemError('notFound', `The dashboard has no asset ${request.params.name}.`);
        return sendAsset(request, reply, request.params.name);
      });

      // The page's live updates: every job's events (the dashboard acts as an operator), under the
      // dashboard's own sign-in and headers; it counts against that principal's stream limit.
      scope.get('/api/events', async (request, reply) => deps.streams.handleEveryJob(request, reply, { principal: undefined }));

      scope.get('/api/session', async (request, reply) => sendJson(reply, JSON.stringify({ principal: request.principal, readOnly: deps.readOnly })));

      scope.get('/api/overview', async (_request, reply) => {
        const now = Date.now();
        const [{ counts, asOf }, { since, minutes }, oldest] = await Promise.all([deps.counts.current(), activity(), deps.store.oldestDueJobs(now)]);
        return sendJson(
          reply,
          JSON.stringify({
            asOf: new Date(asOf).toISOString(),
            counts,
            queueLag: oldest.map((entry) => ({ operation: entry.operation, seconds: Math.max(0, now - entry.dueSince) / 1000 })),
            activity: {
              since: new Date(since).toISOString(),
              minutes: minutes.map((minute: ActivityMinute) => ({ ...minute, minute: new Date(minute.minute).toISOString() })),
            },
          }),
        );
      });

      // The schedules the database records, as asyncfirst schedules lists them (by name).
      scope.get('/api/schedules', async (_request, reply) => {
        const now = Date.now();
        const schedules = (await deps.store.listSchedules()).map((schedule) => scheduleView(schedule, now, SCHEDULE_RUNS));
        return sendJson(reply, JSON.stringify({ schedules }));
      });

      scope.get<{ Querystring: ListingQuery }>('/api/jobs', { schema: { querystring: LISTING_QUERY_SCHEMA } }, async (request, reply) => {
        const page = await deps.store.listJobs(jobQueryOf(request.query, undefined));
        return sendJson(reply, jobPageBody(page, withPrincipal));
      });

      scope.get<{ Params: { id: string } }>('/api/jobs/:id', async (request, reply) => {
        const id = jobIdOf(request);
        const principal = await deps.store.jobPrincipal(id);
        const current = principal === undefined ? undefined : await deps.store.getJob(principal, id);
        if (principal === undefined || !current) throw notFound(id);
        // Events are numbered 1, 2, 3… by the job's version: only the newest are read.
        const omitted = Math.max(0, current.version - TIMELINE_EVENTS);
        const found = await deps.store.getJobEvents(principal, id, omitted);
        if (!found) throw notFound(id);
        const input = await deps.store.jobInput(principal, id);
        const events = found.events.slice(-TIMELINE_EVENTS).map(timelineEntry);
        // The events' read has the job without its deliveries and notifications; the first read has them.
        const job = { ...found.job, deliveries: current.deliveries, notifications: current.notifications };
        return sendJson(reply, `{"job":${withPrincipal(job)},"input":${input ?? 'null'},"events":${JSON.stringify(events)},"eventsOmitted":${omitted}}`);
      });

      scope.post<{ Params: { id: string } }>('/api/jobs/:id/cancel', async (request, reply) => {
        const id = jobIdOf(request);
        const principal = await deps.store.jobPrincipal(id);
        const outcome = principal === undefined ? ({ kind: 'not-found' } as const) : await deps.store.cancelJob(principal, id, Date.now());
        switch (outcome.kind) {
          case 'not-found':
            throw notFound(id);
          case 'finished':
            throw new ProblemError('jobFinished', `Job ${id} has already finished (${outcome.job.status}); there is nothing to cancel.`, {
              extra: { jobStatus: outcome.job.status },
            });
          case 'signalled':
            deps.cancelRunningJob(id);
            return reply.code(202).type('application/json; charset=utf-8').send(withPrincipal(outcome.job));
          case 'canceled':
            return reply.code(200).type('application/json; charset=utf-8').send(withPrincipal(outcome.job));
        }
      });

      scope.post<{ Params: { id: string } }>('/api/jobs/:id/retry', async (request, reply) => {
        const id = jobIdOf(request);
        const outcome = await deps.store.retryEndedJob(undefined, id, Date.now());
        switch (outcome.kind) {
          case 'not-found':
            throw notFound(id);
          case 'not-retryable':
            throw new ProblemError('jobNotRetryable', `Job ${id} is ${outcome.job.status}; only a failed or canceled job can be retried.`, {
              extra: { jobStatus: outcome.job.status },
            });
          case 'queued':
            return reply.code(202).type('application/json; charset=utf-8').send(withPrincipal(outcome.job));
        }
      });

      // Known path, other method: 405 with Allow, as everywhere else.
      const allowed: Array<[string, string[]]> = [
        ['', ['GET', 'HEAD']],
        ['/', ['GET', 'HEAD']],
        ['/assets/:name', ['GET', 'HEAD']],
        ['/api/session', ['GET', 'HEAD']],
        ['/api/overview', ['GET', 'HEAD']],
        ['/api/schedules', ['GET', 'HEAD']],
        ['/api/jobs', ['GET', 'HEAD']],
        ['/api/jobs/:id', ['GET', 'HEAD']],
        ['/api/jobs/:id/cancel', ['POST']],
        ['/api/jobs/:id/retry', ['POST']],
      ];
      for (const [url, methods] of allowed) {
        const allow = methods.join(', ');
        scope.route({
          method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter((method) => !methods.includes(method)),
          url,
          ...(url === '/' ? { prefixTrailingSlash: 'slash' as const } : {}),
          handler: async (request, reply) => sendProblem(reply, problem('methodNotAllowed', `${request.method} is not allowed here; use ${allow}.`), { allow }),
        });
      }
    },
    { prefix: deps.prefix },
  );
}
