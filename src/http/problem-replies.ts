import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { type ProblemDetails, ProblemError, problem } from '../core/problems.js';
import { HttpProblem } from '../handlers.js';
import { StoreUnavailableError } from '../store/store.js';
import { requestPart, toViolations } from './validation.js';

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_UNAVAILABLE_SECONDS = 2;

let unavailableLoggedAt = 0;
let unavailableSuppressed = 0;

/** Logs 503s for an unavailable store at warn with their cause: at most one line a second, with how many were not logged. */
function logUnavailable(request: FastifyRequest, error: StoreUnavailableError): void {
  const now = Date.now();
  if (now - unavailableLoggedAt < 1000) {
    unavailableSuppressed++;
    return;
  }
  request.log.warn({ cause: error.message, alsoAnswered503: unavailableSuppressed }, 'answered 503: the job store is unavailable');
  unavailableLoggedAt = now;
  unavailableSuppressed = 0;
}

/** Sends problem details as application/problem+json. */
export function sendProblem(reply: FastifyReply, details: ProblemDetails, headers: Record<string, string> = {}): FastifyReply {
  return reply.code(details.status).headers(headers).type('application/problem+json; charset=utf-8').send(JSON.stringify(details));
}

/** The problem (and headers) an error thrown anywhere in a request's life is answered with. */
export function problemFor(error: FastifyError | Error, request: FastifyRequest): { details: ProblemDetails; headers: Record<string, string> } {
  if (error instanceof ProblemError) return { details: error.problem, headers: error.headers };
  if (error instanceof HttpProblem) return { details: error.problem, headers: error.headers };
  if (error instanceof StoreUnavailableError) {
    logUnavailable(request, error);
    return {
      details: problem(
        'storeUnavailable',
        'The job store could not complete this request; it may not have been stored. Retry with the same Idempotency-Key: a stored submission is replayed, not repeated.',
      ),
      headers: { 'retry-after': String(RETRY_AFTER_UNAVAILABLE_SECONDS) },
    };
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const part = requestPart(fastifyError.validationContext);
    const errors = toViolations(fastifyError.validation as never, part);
    const first = errors[0];
    const detail = `${errors.length} violation${errors.length === 1 ? '' : 's'} of the contract${first ? `; first: ${part} ${first.pointer || '/'} ${first.message}` : ''}.`;
    return { details: problem('validationFailed', detail, { errors }), headers: {} };
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        details: problem('payloadTooLarge', `The request body is larger than the limit of ${request.routeOptions.bodyLimit ?? 'the server'} bytes.`),
        headers: {},
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { details: problem('unsupportedMediaType', `Content-Type ${request.headers['content-type'] ?? '(none)'} is not accepted here.`), headers: {} };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { details: problem('malformedBody', 'The body is empty but its Content-Type says JSON.'), headers: {} };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      // Fastify's parser says the same for a syntax error and for a refused __proto__ or constructor.prototype member.
      return {
        details: problem('malformedBody', 'The body is not valid JSON, or it has a "__proto__" or "constructor": {"prototype": …} member, which is refused.'),
        headers: {},
      };
  }
  if (fastifyError.statusCode === 400 && error instanceof SyntaxError) {
    return { details: problem('malformedBody', `The body is not valid JSON: ${error.message}`), headers: {} };
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return { details: { ...problem('badRequest', fastifyError.message), status: fastifyError.statusCode }, headers: {} };
  }
  request.log.error({ err: error }, 'unhandled error');
  return { details: problem('internal', 'The server failed to handle this request. It has been logged.'), headers: {} };
}
