import { JOB_STATES } from '../core/job-states.js';

/**
 * The JSON Schemas of the framework's own bodies. They are merged into the served document
 * (components.schemas) and double as Fastify response schemas, so one definition decides what
 * clients are told and how the server serializes.
 */
export const JobStatusSchema = { type: 'string', enum: [...JOB_STATES], description: 'Where the job is in its life cycle.' } as const;

export const ViolationSchema = {
  type: 'object',
  required: ['in', 'pointer', 'message'],
  properties: {
    in: { type: 'string', enum: ['body', 'query', 'path', 'header'] },
    pointer: { type: 'string', description: 'JSON Pointer (RFC 6901) into that part of the request.' },
    message: { type: 'string' },
  },
} as const;

export const ProblemSchema = {
  type: 'object',
  description: 'Problem details (RFC 9457).',
  required: ['type', 'title', 'status'],
  properties: {
    type: { type: 'string', format: 'uri-reference' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string' },
    errors: { type: 'array', items: { $ref: '#/components/schemas/ProblemViolation' } },
  },
  additionalProperties: true,
} as const;

export const JobAcceptedSchema = {
  type: 'object',
  required: ['status', 'job_id', 'operation'],
  properties: {
    status: { type: 'string', enum: ['accepted'] },
    job_id: { type: 'string', description: 'The job id (a ULID: sortable by creation time, 80 random bits).' },
    operation: { type: 'string', description: 'The operationId that accepted the job.' },
    location: { type: 'string', description: 'Where to poll the job: /jobs/{job_id}.' },
  },
} as const;

export const JobSchema = {
  type: 'object',
  required: ['id', 'operation', 'status', 'attempts', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'string' },
    principal: { type: 'string', description: "Whose job it is: shown in an operator's GET /jobs, where jobs of every principal are listed." },
    operation: { type: 'string', description: 'The operationId that accepted the job.' },
    status: { $ref: '#/components/schemas/JobStatus' },
    attempts: { type: 'integer', minimum: 0, description: 'Handler runs started so far.' },
    maxAttempts: { type: 'integer', minimum: 1 },
    priority: {
      type: 'integer',
      description: "The operation's x-asyncfirst priority when the job was accepted: higher runs first among due jobs. Absent: 0.",
    },
    cancelRequested: { type: 'boolean', description: 'DELETE was asked while the job was running.' },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: 'string', format: 'date-time' },
    nextAttemptAt: {
      type: 'string',
      format: 'date-time',
      description: "When a queued job becomes eligible to run: its retry's time, or the start its submission asked for (Not-Before, enqueue's runAt).",
    },
    progress: { $ref: '#/components/schemas/JobProgress' },
    result: { description: "Present when succeeded: the operation's 200/201 response body." },
    resultLocation: { type: 'string', description: 'Present when the handler answered with a resource location: GET /jobs/{id}/result redirects there (303).' },
    error: { $ref: '#/components/schemas/Problem' },
    deliveries: { type: 'array', items: { $ref: '#/components/schemas/WebhookDelivery' }, description: 'Present when the submission sent Callback-URL.' },
    notifications: {
      type: 'array',
      items: { $ref: '#/components/schemas/Notification' },
      description: "Present once the job's operation has told a notifier of its ending (x-asyncfirst.notify).",
    },
    parent: { type: 'string', description: "Present on a follow-up: the id of the job whose success enqueued it (its handler's ctx.enqueue)." },
    children: {
      type: 'array',
      items: { type: 'string' },
      description:
        "The ids of the follow-ups this job's success stored (its handler's ctx.enqueue), oldest first: in GET /jobs/{id} and job.succeeded; absent when none.",
    },
    schedule: {
      type: 'object',
      required: ['name', 'tick'],
      properties: {
        name: { type: 'string', description: "The schedule's name." },
        tick: { type: 'string', format: 'date-time', description: "The tick's time (not when the job ran)." },
      },
      description: 'Present on GET /jobs/{id} of a job a recurring schedule made: the schedule and the tick it was made for.',
    },
  },
} as const;

export const JobPageSchema = {
  type: 'object',
  required: ['jobs'],
  properties: {
    jobs: { type: 'array', items: { $ref: '#/components/schemas/Job' }, description: 'Newest first.' },
    nextCursor: { type: 'string', description: 'Pass as `cursor` for the next page; absent on the last page.' },
  },
} as const;

export const JobCountsSchema = {
  type: 'object',
  required: ['counts', 'asOf'],
  properties: {
    counts: {
      type: 'array',
      description: 'Jobs per operation and state, by operation then state; a pair with no jobs is left out.',
      items: {
        type: 'object',
        required: ['operation', 'status', 'count'],
        properties: { operation: { type: 'string' }, status: { $ref: '#/components/schemas/JobStatus' }, count: { type: 'integer', minimum: 1 } },
      },
    },
    asOf: { type: 'string', format: 'date-time', description: 'When they were read (they are served for COUNTS_CACHE_MS).' },
  },
} as const;

export const JobProgressSchema = {
  type: 'object',
  required: ['percent'],
  properties: { percent: { type: 'number', minimum: 0, maximum: 100 }, message: { type: 'string', maxLength: 200 } },
} as const;

export const WebhookDeliverySchema = {
  type: 'object',
  required: ['id', 'event', 'status', 'attempts', 'maxAttempts', 'updatedAt'],
  properties: {
    id: { type: 'string', description: 'The webhook-id header of every attempt.' },
    event: { type: 'string' },
    status: { type: 'string', enum: ['pending', 'succeeded', 'failed'] },
    attempts: { type: 'integer' },
    maxAttempts: { type: 'integer' },
    lastStatus: { type: 'integer', description: "The receiver's last HTTP status." },
    lastError: { type: 'string' },
    nextAttemptAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const NotificationSchema = {
  type: 'object',
  required: ['id', 'notifier', 'event', 'status', 'attempts', 'maxAttempts', 'updatedAt'],
  properties: {
    id: { type: 'string', description: "The notification's id, the same in every attempt (a notifier may dedupe by it)." },
    notifier: { type: 'string', description: 'The notifier it is for (a name in createAsyncFirst notifiers).' },
    event: { type: 'string', enum: ['job.succeeded', 'job.failed', 'job.canceled'] },
    status: { type: 'string', enum: ['pending', 'succeeded', 'failed'] },
    attempts: { type: 'integer', description: 'Calls of the notifier so far.' },
    maxAttempts: { type: 'integer' },
    lastStatus: { type: 'integer', description: "When the notifier posted over HTTP: the receiver's last status." },
    lastError: { type: 'string', description: "The last failed attempt's error." },
    nextAttemptAt: { type: 'string', format: 'date-time', description: 'While pending: when it is tried next.' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const WebhookEventSchema = {
  type: 'object',
  required: ['type', 'timestamp', 'data'],
  properties: {
    type: { type: 'string', enum: ['job.succeeded', 'job.failed', 'job.canceled'] },
    timestamp: { type: 'string', format: 'date-time' },
    data: { $ref: '#/components/schemas/Job' },
  },
} as const;

/** The framework's component schemas, by name, as merged into the served document. */
export const FRAMEWORK_SCHEMAS = {
  JobStatus: JobStatusSchema,
  Job: JobSchema,
  JobPage: JobPageSchema,
  JobCounts: JobCountsSchema,
  JobAccepted: JobAcceptedSchema,
  JobProgress: JobProgressSchema,
  WebhookDelivery: WebhookDeliverySchema,
  Notification: NotificationSchema,
  WebhookEvent: WebhookEventSchema,
  Problem: ProblemSchema,
  ProblemViolation: ViolationSchema,
} as const;

/** Replaces local component $refs by the schemas themselves, for use outside the document (Fastify). */
export function inlineFrameworkRefs(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(inlineFrameworkRefs);
  if (schema === null || typeof schema !== 'object') return schema;
  const ref = (schema as { $ref?: string }).$ref;
  if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) {
    const name = ref.slice('#/components/schemas/'.length) as keyof typeof FRAMEWORK_SCHEMAS;
    return inlineFrameworkRefs(FRAMEWORK_SCHEMAS[name]);
  }
  return Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, inlineFrameworkRefs(value)]));
}
