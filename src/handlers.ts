import type { FastifyBaseLogger } from 'fastify';
import type { FrameworkOperationId } from './contract/served-document.js';
import type { EnqueueInput } from './enqueue.js';

/*
 * Handler types, derived from the `operations` interface that openapi-typescript writes into
 * generated/. A handler map is keyed by operationId; each handler's input and result types
 * come from its operation, so nobody writes a request or response type by hand.
 */

type JsonBody<Content> = Content extends { content: infer Media } ? (Media extends { 'application/json': infer Body } ? Body : Media[keyof Media]) : undefined;

type Present<T> = [T] extends [never] ? Record<string, never> : [T] extends [undefined] ? Record<string, never> : NonNullable<T>;

/** The JSON request body of an operation (undefined when it declares none). */
export type OperationBody<Op> = Op extends { requestBody: infer Body }
  ? JsonBody<Body>
  : Op extends { requestBody?: infer Body }
    ? JsonBody<NonNullable<Body>> | undefined
    : undefined;

/** The path parameters of an operation. */
export type OperationParams<Op> = Op extends { parameters: { path?: infer Path } } ? Present<Path> : Record<string, never>;

/** The query parameters of an operation. */
export type OperationQuery<Op> = Op extends { parameters: { query?: infer Query } } ? Present<Query> : Record<string, never>;

/** A synchronous operation's 200/201 body, or an asynchronous operation's job result. */
export type OperationResult<Op> = Op extends { responses: infer Responses }
  ? Responses extends { 200: infer Ok }
    ? JsonBody<Ok>
    : Responses extends { 201: infer Created }
      ? JsonBody<Created>
      : unknown
  : unknown;

/** What a handler is given about the request (validated against the contract). */
export interface OperationInput<Op> {
  params: OperationParams<Op>;
  query: OperationQuery<Op>;
  body: OperationBody<Op>;
}

/** What ctx.enqueue takes after the input. */
export interface FollowUpOptions {
  /**
   * Names the follow-up within its parent (1 to 200 printable ASCII characters): its idempotency
   * key is `followup:<parent job id>:<key>`. Default: the call's position in the attempt
   * (`followup:<parent job id>#1`, `#2`, …).
   */
  key?: string;
  /** Start no earlier than this time (a Date, or milliseconds since the epoch), at most NOT_BEFORE_MAX_SECONDS ahead. */
  runAt?: Date | number;
}

/** ctx.enqueue's arguments after the operationId: the input (optional when it may be empty) and the options. */
export type FollowUpArguments<Input> =
  Record<string, never> extends Input ? [input?: Input, options?: FollowUpOptions] : [input: Input, options?: FollowUpOptions];

/**
 * ctx.enqueue: asks for a job of an asynchronous operation to be stored when this job succeeds, in
 * the transaction that records the success. Typed from the contract for handlers typed with
 * Handlers<operations>; untyped (any operationId, checked when called) otherwise.
 */
export type FollowUpEnqueue<Operations = unknown> = unknown extends Operations
  ? (operationId: string, input?: EnqueueInput, options?: FollowUpOptions) => void
  : <OperationId extends AsyncOperationId<Operations>>(operationId: OperationId, ...rest: FollowUpArguments<SubmissionInput<Operations[OperationId]>>) => void;

/** What a handler is given about the call it serves; Operations (the contract's) types `enqueue`. */
export interface HandlerContext<Operations = unknown> {
  /** The principal the security handlers resolved ("anonymous" for an operation without security). */
  principal: string;
  /** Fires when the job is canceled, its lease is lost, or the server shuts down (or the request closes, for synchronous operations). */
  signal: AbortSignal;
  log: FastifyBaseLogger;
  /** Present for asynchronous operations: the job being run. */
  job?: { id: string; attempt: number; maxAttempts: number };
  /** Present for a job a recurring schedule submitted: the schedule's name and the time of the tick it runs for. */
  schedule?: { name: string; tick: Date } | undefined;
  /**
   * Asynchronous operations: reports progress (0–100 and a short message). It is stored on the
   * job, shown by GET /jobs/{id} and streamed as job.progress; a no-op for synchronous operations.
   */
  progress: (percent: number, message?: string) => Promise<void>;
  /**
   * Asynchronous operations: a follow-up job, stored if and only if this job succeeds, in the same
   * transaction as its success (a failed, retried or canceled attempt's follow-ups are dropped).
   * The input is checked against the operation's contract now: a bad one throws (a ProblemError
   * validation-failed), failing the attempt by the usual rules. The child belongs to this job's
   * principal, names this job as its parent and inherits the trace context. Synchronous
   * operations' handlers throw a TypeError: use app.enqueue there.
   */
  enqueue: FollowUpEnqueue<Operations>;
}

/** A job result that is a resource elsewhere: GET /jobs/{id}/result answers 303 See Other to it. */
export class ResourceLocation {
  constructor(readonly location: string) {}
}

/** Ends a job with a pointer to the resource it made (303 See Other) instead of a result body. */
export function seeOther(location: string): ResourceLocation {
  return new ResourceLocation(location);
}

/** One operation's handler; Operations (the contract's, with Handlers<operations>) types its context's `enqueue`. */
export type OperationHandler<Op, Operations = unknown> = (
  input: OperationInput<Op>,
  context: HandlerContext<Operations>,
) => OperationResult<Op> | ResourceLocation | Promise<OperationResult<Op> | ResourceLocation>;

/** Where a handler map keeps the contract's operations it was typed from; a type only, never set. */
declare const contractOperations: unique symbol;

/**
 * The handler map: one handler per operationId of the contract (the framework's own endpoints
 * excepted). It remembers the contract's `operations`, so that the app built from it types
 * app.enqueue from them too.
 */
export type Handlers<Operations> = {
  [OperationId in Exclude<keyof Operations, FrameworkOperationId>]: OperationHandler<Operations[OperationId], Operations>;
} & { readonly [contractOperations]?: Operations };

/** The contract's `operations` a handler map was typed from (with Handlers<operations>), or unknown. */
export type OperationsOf<HandlerMap> = HandlerMap extends { readonly [contractOperations]?: infer Operations } ? Operations : unknown;

/** The operationIds of a contract's asynchronous operations: those that answer 202. */
export type AsyncOperationId<Operations> = {
  [OperationId in Exclude<keyof Operations, FrameworkOperationId>]: Operations[OperationId] extends { responses: { 202: unknown } } ? OperationId : never;
}[Exclude<keyof Operations, FrameworkOperationId>] &
  string;

type ParametersField<Name extends string, Value> = Record<string, never> extends Value ? { [Field in Name]?: Value } : { [Field in Name]: Value };
type BodyField<Body> = undefined extends Body ? { body?: Body } : { body: Body };

/** What app.enqueue takes for an operation: its params, query and body as its handler gets them, each optional when it may be empty. */
export type SubmissionInput<Op> = ParametersField<'params', OperationParams<Op>> & ParametersField<'query', OperationQuery<Op>> & BodyField<OperationBody<Op>>;

/** What a pre-acceptance hook is given about the submission it may refuse. */
export interface AcceptanceContext {
  /** The principal the security handlers resolved. */
  principal: string;
  log: FastifyBaseLogger;
  /** Fires when the client closes the connection. */
  signal: AbortSignal;
}

/**
 * Runs before an asynchronous operation's submission is accepted, after it passed validation and
 * security: throw an HttpProblem (404 for an unknown resource, 409, …) to refuse it before any job
 * or idempotency record is stored. It also runs for a repeat of an earlier submission.
 */
export type BeforeAccept<Input = { params: unknown; query: unknown; body: unknown }> = (input: Input, context: AcceptanceContext) => void | Promise<void>;

/** A handler as the framework calls it, once types are erased. */
export type AnyHandler = (input: { params: unknown; query: unknown; body: unknown }, context: HandlerContext) => unknown;

/**
 * Thrown by a job handler for a failure that retrying cannot fix: the job fails at once,
 * with this message as the stored problem's detail.
 */
export class PermanentJobError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

/** A problem a service chooses to answer (RFC 9457): its own type URI, title, detail and extension members. */
export interface ServiceProblem {
  /** A URI naming the problem type (default about:blank). */
  type?: string;
  title: string;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

/**
 * Thrown by a synchronous handler to answer with a problem of the service's choosing: that status,
 * Content-Type application/problem+json and the given members (`throw new HttpProblem(404, { type, title })`).
 */
export class HttpProblem extends Error {
  readonly status: number;
  readonly problem: ServiceProblem & { type: string; status: number };
  readonly headers: Record<string, string>;

  constructor(status: number, problem: ServiceProblem, options: { headers?: Record<string, string>; cause?: unknown } = {}) {
    if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError(`HttpProblem status ${status} is not a 4xx or 5xx status`);
    super(problem.detail ?? problem.title, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HttpProblem';
    this.status = status;
    this.problem = { ...problem, type: problem.type ?? 'about:blank', title: problem.title, status };
    this.headers = options.headers ?? {};
  }
}
