import { FRAMEWORK_SCHEMAS } from './framework-schemas.js';
import { jobsPaths } from './jobs-paths.js';
import { ContractError, type OpenApiDocument } from './load.js';
import type { OperationSpec } from './operations.js';
import { SCHEDULES_EXTENSION } from './schedules.js';

/** The operationIds of the endpoints asyncfirst adds to every contract. */
export const FRAMEWORK_OPERATION_IDS = [
  'listJobs',
  'countJobs',
  'getJob',
  'cancelJob',
  'getJobResult',
  'streamJobEvents',
  'streamAllJobEvents',
  'retryJob',
] as const;
export type FrameworkOperationId = (typeof FRAMEWORK_OPERATION_IDS)[number];

const problemContent = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } };
const retryAfter = { $ref: '#/components/headers/RetryAfter' };

const FRAMEWORK_COMPONENTS = {
  parameters: {
    Prefer: {
      name: 'Prefer',
      in: 'header',
      required: false,
      description:
        'RFC 7240. `wait=N`: hold the answer until the job finishes or N seconds pass (the server caps N). On a submission, a job finished in time is ' +
        'answered with its result (200/201). `respond-async`: answer 202 at once.',
      schema: { type: 'string' },
    },
    CallbackUrl: {
      name: 'Callback-URL',
      in: 'header',
      required: false,
      description:
        "Where to POST the job's terminal event (a signed Standard Webhooks delivery). Non-public addresses are refused unless allowed by the server.",
      schema: { type: 'string', format: 'uri' },
    },
    IdempotencyKey: {
      name: 'Idempotency-Key',
      in: 'header',
      required: true,
      description:
        'Makes the submission safe to retry: 1 to 255 printable ASCII characters (the quoted Structured Field form is the same key). ' +
        'Scoped by principal and operation; a repeat with the same request answers the same job, a repeat with another request answers 422.',
      schema: { type: 'string', minLength: 1, maxLength: 257 },
    },
    NotBefore: {
      name: 'Not-Before',
      in: 'header',
      required: false,
      description:
        'Start the job no earlier than this: delta-seconds (`60`) or an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`; a time already past means now), ' +
        "at most the server's NOT_BEFORE_MAX_SECONDS ahead. The job is queued meanwhile, its `nextAttemptAt` the time asked. It is part of the request: " +
        'a retry with the same Idempotency-Key and the same Not-Before replays the job, one with another Not-Before answers 422.',
      schema: { type: 'string' },
    },
    JobId: { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
  },
  headers: {
    PreferenceApplied: { description: 'The preference honoured, e.g. wait=10.', schema: { type: 'string' } },
    RetryAfter: { description: 'Seconds to wait before asking again.', schema: { type: 'integer', minimum: 0 } },
    IdempotentReplayed: {
      description: 'Present (true) when this answer replays an earlier submission with the same Idempotency-Key.',
      schema: { type: 'string', enum: ['true'] },
    },
    JobLocation: { description: 'The job to poll: /jobs/{id}.', schema: { type: 'string' } },
    JobId: { description: 'The job id.', schema: { type: 'string' } },
  },
  responses: {
    JobAccepted: {
      description: 'Accepted: the job is stored durably and will run in the background.',
      headers: {
        Location: { $ref: '#/components/headers/JobLocation' },
        'X-Job-ID': { $ref: '#/components/headers/JobId' },
        'Retry-After': retryAfter,
        'Idempotent-Replayed': { $ref: '#/components/headers/IdempotentReplayed' },
      },
      content: { 'application/json': { schema: { $ref: '#/components/schemas/JobAccepted' } } },
    },
    BadRequest: {
      description:
        'The request does not match the contract (see `errors`), its body is malformed, its Idempotency-Key is missing or invalid, or its Not-Before is invalid.',
      content: problemContent,
    },
    Unauthorized: { description: 'No credential, or one that no security scheme accepts.', content: problemContent },
    NotFound: { description: 'No such resource (or it belongs to another principal).', content: problemContent },
    Conflict: { description: 'The job has already finished.', content: problemContent },
    PayloadTooLarge: { description: 'The request body is larger than the configured limit.', content: problemContent },
    UnsupportedMediaType: { description: 'The request body has a content type the operation does not declare.', content: problemContent },
    IdempotencyKeyReused: { description: 'The Idempotency-Key was used before with a different request.', content: problemContent },
    TooManyStreams: { description: 'This principal has too many open event streams.', headers: { 'Retry-After': retryAfter }, content: problemContent },
    ServiceUnavailable: {
      description: 'The job store is busy or unavailable, or the server is shutting down; retry after Retry-After.',
      headers: { 'Retry-After': retryAfter },
      content: problemContent,
    },
  },
} as const;

/** What the server POSTs to a submission's Callback-URL when the job finishes. */
const WEBHOOK_CALLBACK = {
  summary: 'The job finished',
  parameters: ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => ({ name, in: 'header', required: true, schema: { type: 'string' } })),
  requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/WebhookEvent' } } } },
  responses: { '200': { description: 'Any 2xx acknowledges the delivery; 410 stops retries; 429 and 5xx are retried.' } },
};

/**
 * The document as served at /openapi.json and as typed into generated/: the contract with the
 * framework's endpoints, headers, parameters and error responses merged in.
 */
export function buildServedDocument(document: OpenApiDocument, operations: OperationSpec[]): OpenApiDocument {
  const served = structuredClone(document) as OpenApiDocument & { components?: Record<string, Record<string, unknown>> };
  // The schedules are the service's own (cron, zone, each tick's input): no API client calls them,
  // and their inputs may hold what the service keeps to itself. The operations' x-asyncfirst stays.
  delete (served as Record<string, unknown>)[SCHEDULES_EXTENSION];
  const components = (served.components ??= {});
  for (const [section, entries] of Object.entries({ schemas: FRAMEWORK_SCHEMAS, ...FRAMEWORK_COMPONENTS })) {
    const target = (components[section] ??= {});
    for (const [name, value] of Object.entries(entries)) {
      if (name in target) throw new ContractError(`components.${section}.${name} is defined by asyncfirst; rename it in the contract`);
      target[name] = structuredClone(value);
    }
  }

  const paths = (served.paths ??= {});
  for (const operation of operations) {
    const target = paths[operation.path]?.[operation.method.toLowerCase()] as Record<string, unknown> & { responses: Record<string, unknown> };
    const responses = target.responses;
    const secured = operation.security.length > 0;
    const hasInput = operation.body !== undefined || Object.values(operation.parameters).some((list) => list.length > 0);
    if (operation.async) {
      target.parameters = [
        ...((target.parameters as unknown[]) ?? []),
        { $ref: '#/components/parameters/IdempotencyKey' },
        { $ref: '#/components/parameters/Prefer' },
        { $ref: '#/components/parameters/CallbackUrl' },
        { $ref: '#/components/parameters/NotBefore' },
      ];
      const declared = responses['202'] as { description?: string } | undefined;
      responses['202'] = {
        ...structuredClone(FRAMEWORK_COMPONENTS.responses.JobAccepted),
        ...(declared?.description ? { description: declared.description } : {}),
        // The operation's own id as an enum, so a generated client can type the job's result.
        content: {
          'application/json': {
            schema: {
              allOf: [
                { $ref: '#/components/schemas/JobAccepted' },
                { type: 'object', required: ['operation'], properties: { operation: { type: 'string', enum: [operation.operationId] } } },
              ],
            },
          },
        },
      };
      if (operation.result) {
        const ok = responses[String(operation.result.status)] as { headers?: Record<string, unknown>; description?: string };
        ok.headers = {
          ...ok.headers,
          'Preference-Applied': { $ref: '#/components/headers/PreferenceApplied' },
          'X-Job-ID': { $ref: '#/components/headers/JobId' },
        };
      }
      const callbacks = ((target.callbacks as Record<string, unknown> | undefined) ?? {}) as Record<string, unknown>;
      callbacks[callbacks.jobFinished ? 'asyncfirstJobFinished' : 'jobFinished'] = {
        '{$request.header.Callback-URL}': { post: structuredClone(WEBHOOK_CALLBACK) },
      };
      target.callbacks = callbacks;
      responses['400'] ??= { $ref: '#/components/responses/BadRequest' };
      responses['422'] ??= { $ref: '#/components/responses/IdempotencyKeyReused' };
      responses['503'] ??= { $ref: '#/components/responses/ServiceUnavailable' };
    } else if (hasInput) {
      responses['400'] ??= { $ref: '#/components/responses/BadRequest' };
    }
    if (secured) responses['401'] ??= { $ref: '#/components/responses/Unauthorized' };
    if (operation.body) {
      responses['413'] ??= { $ref: '#/components/responses/PayloadTooLarge' };
      responses['415'] ??= { $ref: '#/components/responses/UnsupportedMediaType' };
    }
  }

  const jobs = jobsPaths(jobsSecurity(operations));
  for (const [path, item] of Object.entries(jobs)) {
    if (paths[path]) throw new ContractError(`paths["${path}"] is served by asyncfirst; remove it from the contract`);
    paths[path] = item;
  }
  return served;
}

/** Jobs are read with any credential that could have created one; undefined means no security at all. */
export function jobsSecurity(operations: OperationSpec[]): Record<string, string[]>[] | undefined {
  const asyncOperations = operations.filter((operation) => operation.async);
  const alternatives = new Map<string, Record<string, string[]>>();
  for (const operation of asyncOperations) {
    for (const requirement of operation.security) alternatives.set(requirement.join('+'), Object.fromEntries(requirement.map((scheme) => [scheme, []])));
  }
  if (alternatives.size === 0) return undefined;
  if (asyncOperations.some((operation) => operation.anonymousAllowed)) alternatives.set('', {});
  return [...alternatives.values()];
}
