import type { OperationSpec } from './contract/operations.js';
import { type EnqueueInput, submissionChecker } from './enqueue.js';
import type { FollowUpOptions } from './handlers.js';
import { readRunAt } from './http/not-before.js';
import type { ContractValidators } from './http/validation.js';
import { fingerprintRequest } from './idempotency/fingerprint.js';
import type { ClaimedJob, FollowUpRequest } from './store/store.js';
import type { JobTracing } from './tracing/job-tracing.js';

/*
 * Follow-ups: jobs a handler asks for with ctx.enqueue. They are checked when asked and collected
 * for the attempt; the worker hands them to the finish that records the attempt's success, which
 * stores them in the same transaction (a transactional outbox), so they exist if and only if the
 * parent succeeded. Each one's idempotency key is derived from the parent's id, so no retry of the
 * parent, nor a replayed finish, can store a child twice.
 */

/** The longest key a handler may give ctx.enqueue (the derived key must fit an Idempotency-Key's 255 characters). */
export const MAX_FOLLOW_UP_KEY_LENGTH = 200;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

/** The idempotency key of a parent's follow-up: `followup:<parent>:<key>`, or by position `followup:<parent>#<n>` (n from 1). */
export function followUpKey(parentId: string, key: string | undefined, position: number): string {
  return key === undefined ? `followup:${parentId}#${position}` : `followup:${parentId}:${key}`;
}

/** Checks one ctx.enqueue call and shapes its follow-up; throws as ctx.enqueue documents. `position` counts the attempt's calls from 1. */
export type PlanFollowUp = (parent: ClaimedJob, operationId: string, input: EnqueueInput, options: FollowUpOptions, position: number) => FollowUpRequest;

/** The planner of follow-ups for a contract: the checks app.enqueue makes, and the parent's principal and trace context. */
export function makeFollowUpPlanner(deps: {
  operations: OperationSpec[];
  validators: ContractValidators;
  maxAttempts: (operationId: string) => number;
  /** How long an operation's idempotency keys are kept (its retention.keys, else IDEMPOTENCY_RETENTION_MS). */
  keyRetentionMs: (operationId: string) => number;
  notBeforeMaxSeconds: number;
  /** The handler's active trace context (its attempt's span) goes with the child (absent: TRACING=off, the parent's own). */
  tracing?: JobTracing;
}): PlanFollowUp {
  const checkSubmission = submissionChecker(deps.operations, deps.validators, 'ctx.enqueue');
  return (parent, operationId, input, options, position) => {
    const { params, query } = checkSubmission(operationId, input);
    if (options.key !== undefined && (typeof options.key !== 'string' || options.key.length > MAX_FOLLOW_UP_KEY_LENGTH || !PRINTABLE_ASCII.test(options.key))) {
      throw new TypeError(`ctx.enqueue: key must be 1 to ${MAX_FOLLOW_UP_KEY_LENGTH} printable ASCII characters`);
    }
    const notBefore = options.runAt === undefined ? undefined : readRunAt(options.runAt, Date.now(), deps.notBeforeMaxSeconds);
    const { fingerprint, canonicalInput } = fingerprintRequest(operationId, {
      params,
      query,
      body: input.body,
      ...(notBefore === undefined ? {} : { notBefore: notBefore.asked }),
    });
    const traceContext = deps.tracing?.submissionContext() ?? parent.traceContext;
    return {
      principal: parent.principal,
      operation: operationId,
      key: followUpKey(parent.id, options.key, position),
      fingerprint,
      input: canonicalInput,
      maxAttempts: deps.maxAttempts(operationId),
      ...(traceContext === undefined ? {} : { traceContext }),
      ...(notBefore === undefined ? {} : { runAt: notBefore.runAt }),
      keyRetentionMs: deps.keyRetentionMs(operationId),
    };
  };
}

/** The follow-ups one attempt asked for, in order; a key asked twice in one attempt is refused at the second call. */
export class AttemptFollowUps {
  readonly requests: FollowUpRequest[] = [];
  private readonly keys = new Set<string>();

  constructor(
    private readonly plan: PlanFollowUp,
    private readonly parent: ClaimedJob,
  ) {}

  /** ctx.enqueue for this attempt. */
  enqueue(operationId: string, input: EnqueueInput = {}, options: FollowUpOptions = {}): void {
    const request = this.plan(this.parent, operationId, input, options, this.requests.length + 1);
    if (this.keys.has(request.key)) throw new TypeError(`ctx.enqueue: this attempt already enqueued a follow-up with key "${options.key}"`);
    this.keys.add(request.key);
    this.requests.push(request);
  }
}
