import type { FastifyBaseLogger } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import type { OperationSpec } from './contract/operations.js';
import { ProblemError } from './core/problems.js';
import type { AsyncOperationId, OperationsOf, SubmissionInput } from './handlers.js';
import { readRunAt } from './http/not-before.js';
import { ANONYMOUS_PRINCIPAL } from './http/security.js';
import type { ContractValidators } from './http/validation.js';
import { fingerprintRequest } from './idempotency/fingerprint.js';
import { parseIdempotencyKey } from './idempotency/key.js';
import type { Store } from './store/store.js';
import type { JobTracing } from './tracing/job-tracing.js';

/** A job submitted from code, as an HTTP submission would carry it. */
export interface EnqueueInput {
  params?: Record<string, unknown>;
  query?: Record<string, unknown>;
  body?: unknown;
}

export interface EnqueueOptions {
  /** Whose job it is (default "anonymous"); GET /jobs/{id} shows it to that principal. */
  principal?: string;
  /** The Idempotency-Key: a repeat with the same input (and the same runAt) finds the same job (default: a new key, so a new job). */
  key?: string;
  /**
   * Start no earlier than this time (a Date, or milliseconds since the epoch), as the Not-Before
   * header asks over HTTP: at most NOT_BEFORE_MAX_SECONDS ahead; a time already past means now.
   */
  runAt?: Date | number;
}

/** What enqueue did: the job's id, and whether an earlier submission with the same key was found. */
export interface Enqueued {
  jobId: string;
  replayed: boolean;
}

export type Enqueue = (operationId: string, input?: EnqueueInput, options?: EnqueueOptions) => Promise<Enqueued>;

/** app.enqueue's arguments after the operationId: the input (optional when it may be empty) and the options. */
export type EnqueueArguments<Input> =
  Record<string, never> extends Input ? [input?: Input, options?: EnqueueOptions] : [input: Input, options?: EnqueueOptions];

/**
 * The operationIds app.enqueue takes for a handler map: the asynchronous operations of the contract
 * it was typed from (Handlers<operations>), or any string for a map typed otherwise.
 */
export type EnqueueOperationId<HandlerMap> = unknown extends OperationsOf<HandlerMap> ? string : AsyncOperationId<OperationsOf<HandlerMap>>;

/** app.enqueue's arguments after the operationId, for a handler map's operation. */
export type EnqueueArgumentsOf<HandlerMap, OperationId> =
  unknown extends OperationsOf<HandlerMap>
    ? [input?: EnqueueInput, options?: EnqueueOptions]
    : OperationId extends keyof OperationsOf<HandlerMap>
      ? EnqueueArguments<SubmissionInput<OperationsOf<HandlerMap>[OperationId]>>
      : never;

/**
 * app.enqueue: a submission from code with an HTTP submission's checks and guarantees — the input
 * validated against the contract (400 validation-failed as a ProblemError), the idempotency key
 * scoped by principal and operation (422 idempotency-key-reused for another input), and the job
 * stored durably before it resolves.
 */
export function makeEnqueue(deps: {
  operations: OperationSpec[];
  validators: ContractValidators;
  store: Store;
  maxAttempts: (operationId: string) => number;
  /** How long the operation's idempotency keys stay bound (its retention.keys, else IDEMPOTENCY_RETENTION_MS). */
  keyRetentionMs: (operationId: string) => number;
  /** NOT_BEFORE_MAX_SECONDS: how far ahead runAt may be. */
  notBeforeMaxSeconds: number;
  /** Stores the caller's active trace context with the job (absent: TRACING=off). */
  tracing?: JobTracing;
  /** Where `job accepted` (or `job replayed`) is logged, as for an HTTP submission. */
  log: FastifyBaseLogger;
}): Enqueue {
  const checkSubmission = submissionChecker(deps.operations, deps.validators, 'enqueue');
  return async (operationId, input = {}, options = {}) => {
    const { params, query } = checkSubmission(operationId, input);
    const key = parseIdempotencyKey([options.key ?? uuidv7()]);
    const notBefore = options.runAt === undefined ? undefined : readRunAt(options.runAt, Date.now(), deps.notBeforeMaxSeconds);
    const { fingerprint, canonicalInput } = fingerprintRequest(operationId, {
      params,
      query,
      body: input.body,
      ...(notBefore === undefined ? {} : { notBefore: notBefore.asked }),
    });
    const now = Date.now();
    const traceContext = deps.tracing?.submissionContext();
    const outcome = await deps.store.acceptJob({
      principal: options.principal ?? ANONYMOUS_PRINCIPAL,
      operation: operationId,
      key,
      fingerprint,
      input: canonicalInput,
      maxAttempts: deps.maxAttempts(operationId),
      ...(traceContext === undefined ? {} : { traceContext }),
      ...(notBefore === undefined ? {} : { runAt: notBefore.runAt }),
      now,
      keyExpiresAt: Math.max(now, notBefore?.runAt ?? now) + deps.keyRetentionMs(operationId),
    });
    if (outcome.kind === 'mismatch') {
      throw new ProblemError(
        'idempotencyKeyReused',
        `This Idempotency-Key was already used for a different ${operationId} request (job ${outcome.jobId}). Use a new key for a new request.`,
      );
    }
    deps.log.info({ jobId: outcome.jobId, operation: operationId }, outcome.kind === 'replayed' ? 'job replayed' : 'job accepted');
    return { jobId: outcome.jobId, replayed: outcome.kind === 'replayed' };
  };
}

/** Checks a submission from code against its operation's contract: its params and query (defaulted to {}); throws as enqueue documents. */
export type SubmissionCheck = (operationId: string, input: EnqueueInput) => { params: Record<string, unknown>; query: Record<string, unknown> };

/**
 * The check of submissions from code (app.enqueue, ctx.enqueue): the operation must be one of the
 * contract's asynchronous operations (else a TypeError naming `caller`), and its params, query and
 * body must match the contract (else ProblemError validation-failed, listing the violations).
 */
export function submissionChecker(operations: OperationSpec[], validators: ContractValidators, caller: string): SubmissionCheck {
  const checks = new Map(
    operations
      .filter((operation) => operation.async)
      .map((operation) => [
        operation.operationId,
        {
          params: validators.requestChecker(objectSchema(operation.parameters.path), 'path'),
          query: validators.requestChecker(objectSchema(operation.parameters.query), 'query'),
          body: operation.body?.schema ? validators.requestChecker(operation.body.schema, 'body') : undefined,
          bodyRequired: operation.body?.required === true,
        },
      ]),
  );
  return (operationId, input) => {
    const check = checks.get(operationId);
    if (!check) throw new TypeError(`${caller}: "${operationId}" is not an asynchronous operation of the contract`);
    const params = input.params ?? {};
    const query = input.query ?? {};
    const violations = [...check.params(params), ...check.query(query)];
    if (input.body === undefined && check.bodyRequired) violations.push({ in: 'body', pointer: '', message: 'is required' });
    else if (input.body !== undefined && check.body) violations.push(...check.body(input.body));
    if (violations.length > 0) {
      const first = violations[0]!;
      throw new ProblemError(
        'validationFailed',
        `${violations.length} violation${violations.length === 1 ? '' : 's'} of the contract for ${operationId}; first: ${first.in} ${first.pointer || '/'} ${first.message}.`,
        {
          extra: { errors: violations },
        },
      );
    }
    return { params, query };
  };
}

function objectSchema(parameters: OperationSpec['parameters']['path']) {
  return {
    type: 'object',
    properties: Object.fromEntries(parameters.map((parameter) => [parameter.name, parameter.schema])),
    required: parameters.filter((parameter) => parameter.required).map((parameter) => parameter.name),
  };
}
