import { JobStatusSchema } from './framework-schemas.js';

/** The jobs API as the served document describes it: the listing, /jobs/{id}, its result, its event stream and its retry. */

const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });
const response = (name: string) => ({ $ref: `#/components/responses/${name}` });
const problem = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } };
const header = (name: string) => ({ $ref: `#/components/headers/${name}` });

/** GET /jobs's query parameters; the route validates its query string with the same schemas. */
export const JOB_LISTING_PARAMETERS = [
  {
    name: 'status',
    in: 'query',
    required: false,
    description: 'Jobs in any of these states (repeat the parameter for several).',
    style: 'form',
    explode: true,
    schema: { type: 'array', items: JobStatusSchema, minItems: 1, maxItems: 5 },
  },
  { name: 'operation', in: 'query', required: false, description: 'Jobs of this operationId.', schema: { type: 'string', minLength: 1, maxLength: 200 } },
  {
    name: 'createdAfter',
    in: 'query',
    required: false,
    description: 'Jobs accepted after this time (exclusive).',
    schema: { type: 'string', format: 'date-time' },
  },
  {
    name: 'createdBefore',
    in: 'query',
    required: false,
    description: 'Jobs accepted before this time (exclusive).',
    schema: { type: 'string', format: 'date-time' },
  },
  {
    name: 'cursor',
    in: 'query',
    required: false,
    description: 'The `nextCursor` of the page before.',
    schema: { type: 'string', minLength: 1, maxLength: 64 },
  },
  { name: 'limit', in: 'query', required: false, description: 'Jobs per page.', schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } },
] as const;

/** GET /jobs/events's query parameters (its filters); the route validates its query string with the same schemas. */
export const JOB_EVENT_STREAM_PARAMETERS = [
  {
    name: 'status',
    in: 'query',
    required: false,
    description:
      'Only events that leave their job in one of these states (repeat the parameter for several): `running` is job.running and job.progress, each other state its own event.',
    style: 'form',
    explode: true,
    schema: { type: 'array', items: JobStatusSchema, minItems: 1, maxItems: 5 },
  },
  {
    name: 'operation',
    in: 'query',
    required: false,
    description: 'Only events of jobs of this operationId.',
    schema: { type: 'string', minLength: 1, maxLength: 200 },
  },
] as const;

/** The /jobs paths, with the security that any job-creating credential satisfies (undefined: none). */
export function jobsPaths(security: Record<string, string[]>[] | undefined): Record<string, Record<string, unknown>> {
  const common = { tags: ['jobs'], ...(security ? { security } : {}) };
  const unauthorized = security ? { '401': response('Unauthorized') } : {};
  const waited = { 'Retry-After': header('RetryAfter'), 'Preference-Applied': header('PreferenceApplied') };
  return {
    '/jobs': {
      get: {
        ...common,
        operationId: 'listJobs',
        summary: "The caller's jobs, newest first (an operator's: every principal's), filtered and paged",
        description:
          'Filters combine; an omitted one does not filter. Page with `nextCursor`: paging neither repeats nor skips a job that existed when the first page was read. ' +
          "Principals named in ADMIN_PRINCIPALS (or chosen by the `operators` function) see every principal's jobs.",
        parameters: JOB_LISTING_PARAMETERS,
        responses: {
          '200': { description: 'One page of jobs.', content: json('JobPage') },
          '400': {
            description: 'A filter does not match its schema (`validation-failed`, see `errors`), or the cursor is not one a page gave out (`cursor-invalid`).',
            content: problem,
          },
          ...unauthorized,
          '503': response('ServiceUnavailable'),
        },
      },
    },
    '/jobs/events': {
      get: {
        ...common,
        operationId: 'streamAllJobEvents',
        summary: "Every event of the caller's jobs (an operator's: every job's) as Server-Sent Events, in commit order",
        description:
          'Events job.queued (an acceptance or a retry), job.running, job.progress, job.succeeded, job.failed and job.canceled of every job the caller may see, ' +
          'each with the job as JSON `data:` and an opaque `id:`, its position in the log of every job in commit order. ' +
          'Without Last-Event-ID the stream starts now; the first thing it sends is an `id:` line with no event, so a reconnect resumes from there. ' +
          'Reconnect with Last-Event-ID (to this or any other API process) to get every event after it that is still kept (JOB_RETENTION_MS). ' +
          "The stream does not end by itself; comment lines keep idle streams alive. An operator gets every principal's jobs, each event with its `principal`.",
        parameters: [...JOB_EVENT_STREAM_PARAMETERS, { name: 'Last-Event-ID', in: 'header', required: false, schema: { type: 'string' } }],
        responses: {
          '200': { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          '400': {
            description:
              'A filter does not match its schema (`validation-failed`, see `errors`), or Last-Event-ID is not an id this stream sent (`last-event-id-invalid`).',
            content: problem,
          },
          ...unauthorized,
          '429': response('TooManyStreams'),
          '503': response('ServiceUnavailable'),
        },
      },
    },
    '/jobs/counts': {
      get: {
        ...common,
        operationId: 'countJobs',
        summary: 'How many jobs there are of each operation in each state (operators only)',
        description:
          'Kept by the database as jobs change (no job is counted per request) and served for COUNTS_CACHE_MS, so dashboards and scrapes may poll it.',
        responses: {
          '200': { description: 'The counts.', content: json('JobCounts') },
          ...unauthorized,
          '403': { description: 'The caller is not an operator (`forbidden`).', content: problem },
          '503': response('ServiceUnavailable'),
        },
      },
    },
    '/jobs/{id}': {
      parameters: [{ $ref: '#/components/parameters/JobId' }],
      get: {
        ...common,
        operationId: 'getJob',
        summary: 'A job: its status, progress and deliveries, and its result or error once finished',
        description: 'With `Prefer: wait=N` the answer waits until the job finishes or N seconds pass (capped by the server).',
        parameters: [{ $ref: '#/components/parameters/Prefer' }],
        responses: {
          '200': { description: 'The job.', headers: waited, content: json('Job') },
          ...unauthorized,
          '404': response('NotFound'),
          '503': response('ServiceUnavailable'),
        },
      },
      delete: {
        ...common,
        operationId: 'cancelJob',
        summary: 'Cancel a job: a queued job is canceled at once, a running one is signalled',
        responses: {
          '200': { description: 'The job was queued and is now canceled.', content: json('Job') },
          '202': { description: "The job is running; its handler's AbortSignal has fired and the job ends as canceled.", content: json('Job') },
          ...unauthorized,
          '404': response('NotFound'),
          '409': response('Conflict'),
          '503': response('ServiceUnavailable'),
        },
      },
    },
    '/jobs/{id}/result': {
      parameters: [{ $ref: '#/components/parameters/JobId' }],
      get: {
        ...common,
        operationId: 'getJobResult',
        summary: "A job's result: 200 when succeeded, 202 while unfinished, the stored problem when failed or canceled",
        parameters: [{ $ref: '#/components/parameters/Prefer' }],
        responses: {
          '200': { description: "The result (the operation's 200/201 response body).", headers: waited, content: { 'application/json': { schema: {} } } },
          '202': { description: 'Not finished yet.', headers: waited, content: json('Job') },
          '303': { description: 'The result is a resource elsewhere: see Location.', headers: { Location: { schema: { type: 'string' } } } },
          ...unauthorized,
          '404': response('NotFound'),
          '409': {
            description: 'The job was canceled: its problem details.',
            content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
          },
          '500': {
            description: 'The job failed: its problem details.',
            content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
          },
          '503': response('ServiceUnavailable'),
        },
      },
    },
    '/jobs/{id}/retry': {
      parameters: [{ $ref: '#/components/parameters/JobId' }],
      post: {
        ...common,
        operationId: 'retryJob',
        summary: 'Queue a failed or canceled job again: the same id, a fresh attempt budget, a job.queued event',
        description:
          'The job runs again as a new job would: its waiters, event streams and webhook (a new delivery when it ends) see it. ' +
          "Safe to repeat: once queued, a repeat answers 409 and changes nothing. Operators may retry every principal's jobs.",
        responses: {
          '202': {
            description: 'The job is queued again.',
            headers: { Location: header('JobLocation'), 'Retry-After': header('RetryAfter') },
            content: json('Job'),
          },
          ...unauthorized,
          '404': response('NotFound'),
          '409': { description: 'The job is queued, running or succeeded (`job-not-retryable`; `jobStatus` says which).', content: problem },
          '503': response('ServiceUnavailable'),
        },
      },
    },
    '/jobs/{id}/events': {
      parameters: [{ $ref: '#/components/parameters/JobId' }],
      get: {
        ...common,
        operationId: 'streamJobEvents',
        summary: "A job's changes as Server-Sent Events, until it finishes",
        description:
          'Events job.queued, job.running, job.progress, job.succeeded, job.failed and job.canceled, each with an increasing `id:` and the job as JSON `data:`. ' +
          'Reconnect with Last-Event-ID to get what was missed. The stream ends after the terminal event; comment lines keep idle streams alive.',
        parameters: [{ name: 'Last-Event-ID', in: 'header', required: false, schema: { type: 'string' } }],
        responses: {
          '200': { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          ...unauthorized,
          '404': response('NotFound'),
          '429': response('TooManyStreams'),
        },
      },
    },
  };
}
