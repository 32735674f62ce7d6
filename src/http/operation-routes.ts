import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { inlineFrameworkRefs, JobAcceptedSchema } from '../contract/framework-schemas.js';
import type { OperationSpec, ParameterSpec } from '../contract/operations.js';
import { ProblemError } from '../core/problems.js';
import { awaitJob } from '../delivery/await-job.js';
import type { CallbackPolicy } from '../delivery/callback-url.js';
import type { JobWatch } from '../delivery/job-watch.js';
import { POLL_AFTER_SECONDS, pollAfterSeconds } from '../engine/job-view.js';
import { type AnyHandler, type BeforeAccept, ResourceLocation } from '../handlers.js';
import { fingerprintRequest } from '../idempotency/fingerprint.js';
import { parseIdempotencyKey } from '../idempotency/key.js';
import type { JobMetrics } from '../metrics/job-metrics.js';
import type { Store } from '../store/store.js';
import type { JobTracing } from '../tracing/job-tracing.js';
import { parseNotBefore } from './not-before.js';
import { parsePrefer } from './prefer.js';
import { nonUtf8Charset } from './request-body.js';
import type { Authenticate } from './security.js';
import type { WrittenResult } from './validation.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling, as resolved by the operation's security handlers. */
    principal: string;
  }
}

export interface OperationRouteDeps {
  store: Store;
  watch: JobWatch;
  longPollMaxSeconds: number;
  /** Present when webhooks are configured (WEBHOOK_SECRET). */
  webhooks?: { policy: CallbackPolicy };
  handler: AnyHandler;
  authenticate: Authenticate;
  maxAttempts: number;
  /** Writes a synchronous handler's result from the operation's 200/201 schema (present when it declares one). */
  writeResult?: ((result: unknown) => WrittenResult) | undefined;
  /** Refuses a submission before anything is stored (asynchronous operations). */
  beforeAccept?: BeforeAccept | undefined;
  /** How long this operation's idempotency keys stay bound (its retention.keys, else IDEMPOTENCY_RETENTION_MS). */
  keyRetentionMs: number;
  /** NOT_BEFORE_MAX_SECONDS: how far ahead a Not-Before may ask the job to start. */
  notBeforeMaxSeconds: number;
  /** Counts submissions (undefined: METRICS=off). */
  metrics: JobMetrics | undefined;
  /** Stores the submission's trace context with its job (undefined: TRACING=off). */
  tracing: JobTracing | undefined;
}

const acceptedResponseSchema = inlineFrameworkRefs(JobAcceptedSchema);

/** Registers one contract operation as a Fastify route with its own compiled validators. */
export function registerOperationRoute(server: FastifyInstance, operation: OperationSpec, deps: OperationRouteDeps): void {
  const route: RouteOptions = {
    method: operation.method,
    url: operation.routeUrl,
    schema: routeSchema(operation),
    onRequest: requestGate(operation, deps.authenticate),
    handler: operation.async ? acceptHandler(operation, deps) : inlineHandler(operation, deps.handler, deps.writeResult),
  };
  server.route(route);
}

function routeSchema(operation: OperationSpec): RouteOptions['schema'] {
  const schema: NonNullable<RouteOptions['schema']> = {};
  if (operation.parameters.path.length) schema.params = objectSchema(operation.parameters.path);
  if (operation.parameters.query.length) schema.querystring = objectSchema(operation.parameters.query);
  if (operation.parameters.header.length) schema.headers = objectSchema(operation.parameters.header);
  if (operation.body?.schema) schema.body = operation.body.schema;
  if (operation.async) schema.response = { 202: acceptedResponseSchema };
  return schema;
}

function objectSchema(parameters: ParameterSpec[]) {
  return {
    type: 'object',
    properties: Object.fromEntries(parameters.map((parameter) => [parameter.name, parameter.schema])),
    required: parameters.filter((parameter) => parameter.required).map((parameter) => parameter.name),
  };
}

/** Before the body is read: authenticate, then refuse a body of a media type the operation does not declare, or of a charset other than UTF-8. */
function requestGate(operation: OperationSpec, authenticate: Authenticate) {
  const mediaTypes = operation.body ? new Set(operation.body.mediaTypes) : undefined;
  return async (request: FastifyRequest) => {
    request.principal = await authenticate(request);
    if (!mediaTypes) return;
    const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return;
    const contentType = request.headers['content-type'];
    const mediaType = (contentType ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
    if (!mediaTypes.has(mediaType)) {
      throw new ProblemError('unsupportedMediaType', `${operation.operationId} accepts ${[...mediaTypes].join(', ')}; got ${mediaType || 'no Content-Type'}.`);
    }
    // Bodies are read as UTF-8 (JSON is UTF-8, RFC 8259): another declared charset would be misread, not converted.
    const charset = nonUtf8Charset(contentType);
    if (charset !== undefined)
      throw new ProblemError('unsupportedMediaType', `${operation.operationId} reads request bodies as UTF-8; got charset=${charset}.`);
  };
}

/** ctx.enqueue in a synchronous operation's handler: there is no job whose success could store the follow-up. */
function enqueueRefused(): never {
  throw new TypeError("ctx.enqueue stores a follow-up with the success of a job: call it from an asynchronous operation's handler, or use app.enqueue");
}

/**
 * A synchronous operation: the handler runs now and its result is the 200/201 body, once it is
 * checked against the contract (a result that does not match is a logged 500, never sent) and
 * written from the schema (a property it does not declare is dropped).
 */
function inlineHandler(operation: OperationSpec, handler: AnyHandler, writeResult: ((result: unknown) => WrittenResult) | undefined) {
  const successStatus = operation.result?.status ?? 200;
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const controller = new AbortController();
    const abortOnClose = () => controller.abort(new Error('the client closed the connection'));
    request.raw.once('close', abortOnClose);
    try {
      const result = await handler(
        { params: request.params ?? {}, query: request.query ?? {}, body: request.body },
        { principal: request.principal, signal: controller.signal, log: request.log, progress: async () => {}, enqueue: enqueueRefused },
      );
      if (result instanceof ResourceLocation) return reply.code(303).header('location', result.location).send();
      if (!writeResult) return reply.code(successStatus).send(result);
      const written = writeResult(result);
      if (written.violations !== undefined) {
        request.log.error(
          { operationId: operation.operationId, violations: written.violations },
          'the handler answered a result that does not match the contract; it was not sent',
        );
        throw new ProblemError('internal', `The ${operation.operationId} handler answered a result that does not match the contract; it was not sent.`);
      }
      return reply.code(successStatus).type('application/json; charset=utf-8').send(written.json);
    } finally {
      request.raw.off('close', abortOnClose);
    }
  };
}

/** An asynchronous operation: store the job durably (or find the earlier one) and answer 202. */
function acceptHandler(operation: OperationSpec, deps: OperationRouteDeps) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const key = parseIdempotencyKey(headerLines(request.raw.rawHeaders, 'idempotency-key'));
    const callbackUrl = readCallbackUrl(request, deps);
    const receivedAt = Date.now();
    const notBefore = parseNotBefore(headerLines(request.raw.rawHeaders, 'not-before'), receivedAt, deps.notBeforeMaxSeconds);
    if (deps.beforeAccept) await runBeforeAccept(deps.beforeAccept, request);
    const { fingerprint, canonicalInput } = fingerprintRequest(operation.operationId, {
      params: (request.params as Record<string, unknown>) ?? {},
      query: (request.query as Record<string, unknown>) ?? {},
      body: request.body,
      ...(callbackUrl === undefined ? {} : { callback: callbackUrl }),
      ...(notBefore === undefined ? {} : { notBefore: notBefore.asked }),
    });
    const now = Date.now();
    // The context active here is the request's (its server span, when the application instruments Fastify).
    const traceContext = deps.tracing?.submissionContext();
    const outcome = await deps.store.acceptJob({
      principal: request.principal,
      operation: operation.operationId,
      key,
      fingerprint,
      input: canonicalInput,
      maxAttempts: deps.maxAttempts,
      ...(callbackUrl === undefined ? {} : { callbackUrl }),
      ...(traceContext === undefined ? {} : { traceContext }),
      ...(notBefore === undefined ? {} : { runAt: notBefore.runAt }),
      now,
      // A job that starts later keeps its key bound for the retention after its start, not after its submission.
      keyExpiresAt: Math.max(now, notBefore?.runAt ?? now) + deps.keyRetentionMs,
    });
    if (outcome.kind === 'mismatch') {
      throw new ProblemError(
        'idempotencyKeyReused',
        `This Idempotency-Key was already used for a different ${operation.operationId} request (job ${outcome.jobId}). Use a new key for a new request.`,
      );
    }
    deps.metrics?.submission(operation.operationId, outcome.kind === 'replayed');
    request.log.info({ jobId: outcome.jobId, operation: operation.operationId }, outcome.kind === 'replayed' ? 'job replayed' : 'job accepted');
    const location = `/jobs/${outcome.jobId}`;
    reply.header('vary', 'Prefer');
    if (outcome.kind === 'replayed') reply.header('idempotent-replayed', 'true');

    // Prefer: wait=N — answer with the result itself if the job finishes in time.
    const { wait, respondAsync } = parsePrefer(request.headers.prefer, deps.longPollMaxSeconds);
    if (wait !== undefined && !respondAsync && operation.result) {
      const closed = new AbortController();
      const onClose = () => closed.abort();
      request.raw.once('close', onClose);
      const job = await awaitJob(deps.store, deps.watch, request.principal, outcome.jobId, wait, closed.signal).finally(() =>
        request.raw.off('close', onClose),
      );
      reply.header('preference-applied', `wait=${wait}`);
      if (job?.status === 'succeeded') {
        reply.headers({ 'content-location': location, 'x-job-id': outcome.jobId });
        if (job.resultLocation !== undefined) return reply.code(303).header('location', job.resultLocation).send();
        return reply
          .code(operation.result.status)
          .type('application/json; charset=utf-8')
          .send(job.result ?? 'null');
      }
    }
    const pollAfter = notBefore === undefined ? POLL_AFTER_SECONDS : pollAfterSeconds(notBefore.runAt);
    reply.code(202).headers({ location, 'x-job-id': outcome.jobId, 'retry-after': String(pollAfter) });
    return { status: 'accepted', job_id: outcome.jobId, operation: operation.operationId, location };
  };
}

/** The service's pre-acceptance hook, given the validated input and aborted if the client goes away. */
async function runBeforeAccept(beforeAccept: BeforeAccept, request: FastifyRequest): Promise<void> {
  const controller = new AbortController();
  const abortOnClose = () => controller.abort(new Error('the client closed the connection'));
  request.raw.once('close', abortOnClose);
  try {
    await beforeAccept(
      { params: request.params ?? {}, query: request.query ?? {}, body: request.body },
      { principal: request.principal, log: request.log, signal: controller.signal },
    );
  } finally {
    request.raw.off('close', abortOnClose);
  }
}

/** The submission's Callback-URL, checked against the SSRF policy (400 when plainly refused). */
function readCallbackUrl(request: FastifyRequest, deps: OperationRouteDeps): string | undefined {
  // The raw lines: Node would join two Callback-URL lines into one "a, b" string.
  const lines = headerLines(request.raw.rawHeaders, 'callback-url');
  if (lines === undefined) return undefined;
  if (lines.length > 1) throw new ProblemError('callbackUrlRefused', `Send one Callback-URL header line; this request has ${lines.length}.`);
  const url = lines[0]?.trim();
  if (!url) throw new ProblemError('callbackUrlRefused', 'Send one Callback-URL header with an absolute http(s) URL.');
  if (!deps.webhooks) throw new ProblemError('callbackUrlRefused', 'This server sends no webhooks (WEBHOOK_SECRET is not set); poll GET /jobs/{id} instead.');
  const refusal = deps.webhooks.policy.refusal(url);
  if (refusal) throw new ProblemError('callbackUrlRefused', `Callback-URL ${refusal}.`);
  return url;
}

/** Every line of one header as sent (Node joins repeated unknown headers with ", ", which would hide a repeat). */
function headerLines(rawHeaders: string[], name: string): string[] | undefined {
  let lines: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).length === name.length && (rawHeaders[i] as string).toLowerCase() === name) (lines ??= []).push(rawHeaders[i + 1] as string);
  }
  return lines;
}
