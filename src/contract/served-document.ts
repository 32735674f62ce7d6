import { FRAMEWORK_SCHEMAS } from './framework-schemas.js';
import { ContractError, type OpenApiDocument } from './load.js';
import type { OperationSpec } from './operations.js';

/** The operationIds of the endpoints asyncfirst adds to every contract. */
export const FRAMEWORK_OPERATION_IDS = ['getJob', 'cancelJob'] as const;
export type FrameworkOperationId = (typeof FRAMEWORK_OPERATION_IDS)[number];

const problemContent = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } };
const retryAfter = { $ref: '#/components/headers/RetryAfter' };

const FRAMEWORK_COMPONENTS = {
  parameters: {
    IdempotencyKey: {
      name: 'Idempotency-Key',
      in: 'header',
      required: true,
      description:
        'Makes the submission safe to retry: 1 to 255 printable ASCII characters (the quoted Structured Field form is the same key). ' +
        'Scoped by principal and operation; a repeat with the same request answers the same job, a repeat with another request answers 422.',
      schema: { type: 'string', minLength: 1, maxLength: 257 },
    },
    JobId: { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
  },
  headers: {
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
      description: 'The request does not match the contract (see `errors`), its body is malformed, or its Idempotency-Key is missing or invalid.',
      content: problemContent,
    },
    Unauthorized: { description: 'No credential, or one that no security scheme accepts.', content: problemContent },
    NotFound: { description: 'No such resource (or it belongs to another principal).', content: problemContent },
    Conflict: { description: 'The job has already finished.', content: problemContent },
    PayloadTooLarge: { description: 'The request body is larger than the configured limit.', content: problemContent },
    UnsupportedMediaType: { description: 'The request body has a content type the operation does not declare.', content: problemContent },
    IdempotencyKeyReused: { description: 'The Idempotency-Key was used before with a different request.', content: problemContent },
    ServiceUnavailable: {
      description: 'The job store is busy or unavailable, or the server is shutting down; retry after Retry-After.',
      headers: { 'Retry-After': retryAfter },
      content: problemContent,
    },
  },
} as const;

/**
 * The document as served at /openapi.json and as typed into generated/: the contract with the
 * framework's endpoints, headers, parameters and error responses merged in.
 */
export function buildServedDocument(document: OpenApiDocument, operations: OperationSpec[]): OpenApiDocument {
  const served = structuredClone(document) as OpenApiDocument & { components?: Record<string, Record<string, unknown>> };
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
      target.parameters = [...((target.parameters as unknown[]) ?? []), { $ref: '#/components/parameters/IdempotencyKey' }];
      const declared = responses['202'] as { description?: string } | undefined;
      responses['202'] = {
        ...structuredClone(FRAMEWORK_COMPONENTS.responses.JobAccepted),
        ...(declared?.description ? { description: declared.description } : {}),
      };
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

  if (paths['/jobs/{id}']) throw new ContractError('paths["/jobs/{id}"] is served by asyncfirst; remove it from the contract');
  const jobSecurity = jobsSecurity(operations);
  const jobsCommon = { tags: ['jobs'], ...(jobSecurity ? { security: jobSecurity } : {}) };
  const unauthorized = jobSecurity ? { '401': { $ref: '#/components/responses/Unauthorized' } } : {};
  paths['/jobs/{id}'] = {
    parameters: [{ $ref: '#/components/parameters/JobId' }],
    get: {
      ...jobsCommon,
      operationId: 'getJob',
      summary: 'A job: its status, and its result or error once finished',
      responses: {
        '200': {
          description: 'The job.',
          headers: { 'Retry-After': retryAfter },
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Job' } } },
        },
        ...unauthorized,
        '404': { $ref: '#/components/responses/NotFound' },
        '503': { $ref: '#/components/responses/ServiceUnavailable' },
      },
    },
    delete: {
      ...jobsCommon,
      operationId: 'cancelJob',
      summary: 'Cancel a job: a queued job is canceled at once, a running one is signalled',
      responses: {
        '200': { description: 'The job was queued and is now canceled.', content: { 'application/json': { schema: { $ref: '#/components/schemas/Job' } } } },
        '202': {
          description: "The job is running; its handler's AbortSignal has fired and the job ends as canceled.",
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Job' } } },
        },
        ...unauthorized,
        '404': { $ref: '#/components/responses/NotFound' },
        '409': { $ref: '#/components/responses/Conflict' },
        '503': { $ref: '#/components/responses/ServiceUnavailable' },
      },
    },
  };
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
