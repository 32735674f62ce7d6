/**
 * The catalogue of every problem type the server can answer with (RFC 9457). Each entry is
 * one row of the README's error table; nothing else in src/ invents a problem type.
 */
export const PROBLEM_TYPE_BASE = 'urn:asyncfirst:problem:';

export const PROBLEMS = {
  validationFailed: { slug: 'validation-failed', title: 'Request validation failed', status: 400 },
  malformedBody: { slug: 'malformed-body', title: 'Malformed request body', status: 400 },
  idempotencyKeyMissing: { slug: 'idempotency-key-missing', title: 'Idempotency-Key header required', status: 400 },
  idempotencyKeyInvalid: { slug: 'idempotency-key-invalid', title: 'Invalid Idempotency-Key header', status: 400 },
  callbackUrlRefused: { slug: 'callback-url-refused', title: 'Callback-URL refused', status: 400 },
  notBeforeInvalid: { slug: 'not-before-invalid', title: 'Invalid Not-Before', status: 400 },
  badRequest: { slug: 'bad-request', title: 'Bad request', status: 400 },
  cursorInvalid: { slug: 'cursor-invalid', title: 'Invalid cursor', status: 400 },
  lastEventIdInvalid: { slug: 'last-event-id-invalid', title: 'Invalid Last-Event-ID', status: 400 },
  unauthorized: { slug: 'unauthorized', title: 'Authentication required', status: 401 },
  forbidden: { slug: 'forbidden', title: 'Operators only', status: 403 },
  crossSiteRequestRefused: { slug: 'cross-site-request-refused', title: 'Cross-site request refused', status: 403 },
  dashboardReadOnly: { slug: 'dashboard-read-only', title: 'The dashboard is read-only', status: 403 },
  notFound: { slug: 'not-found', title: 'Not found', status: 404 },
  jobNotFound: { slug: 'job-not-found', title: 'Job not found', status: 404 },
  methodNotAllowed: { slug: 'method-not-allowed', title: 'Method not allowed', status: 405 },
  requestTimeout: { slug: 'request-timeout', title: 'Request not received in time', status: 408 },
  jobFinished: { slug: 'job-finished', title: 'Job already finished', status: 409 },
  jobNotRetryable: { slug: 'job-not-retryable', title: 'Job not failed or canceled', status: 409 },
  payloadTooLarge: { slug: 'payload-too-large', title: 'Request body too large', status: 413 },
  unsupportedMediaType: { slug: 'unsupported-media-type', title: 'Unsupported media type', status: 415 },
  expectationFailed: { slug: 'expectation-failed', title: 'Expectation failed', status: 417 },
  tooManyStreams: { slug: 'too-many-streams', title: 'Too many open event streams', status: 429 },
  headersTooLarge: { slug: 'headers-too-large', title: 'Request header fields too large', status: 431 },
  idempotencyKeyReused: { slug: 'idempotency-key-reused', title: 'Idempotency-Key reused with a different request', status: 422 },
  internal: { slug: 'internal', title: 'Internal server error', status: 500 },
  storeUnavailable: { slug: 'store-unavailable', title: 'Job store unavailable', status: 503 },
  shuttingDown: { slug: 'shutting-down', title: 'Server shutting down', status: 503 },
  notReady: { slug: 'not-ready', title: 'Server not ready', status: 503 },
  // Stored on failed jobs (GET /jobs/{id} → error), never sent as a response status of their own.
  jobHandlerFailed: { slug: 'job-handler-failed', title: 'The job handler failed', status: 500 },
  jobResultInvalid: { slug: 'job-result-invalid', title: 'The job result does not match the contract', status: 500 },
  jobLeaseExpired: { slug: 'job-lease-expired', title: 'The job was abandoned too many times', status: 500 },
  jobTimeout: { slug: 'job-timeout', title: 'The job ran past its timeout', status: 500 },
  jobCanceled: { slug: 'job-canceled', title: 'The job was canceled', status: 409 },
} as const;

export type ProblemKind = keyof typeof PROBLEMS;

/** One violation in a 400's `errors` array. */
export interface ProblemViolation {
  /** Which part of the request: body, query, path or header. */
  in: 'body' | 'query' | 'path' | 'header';
  /** JSON Pointer (RFC 6901) into that part. */
  pointer: string;
  message: string;
}

/** An RFC 9457 problem details object. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: ProblemViolation[];
  [extension: string]: unknown;
}

/** Builds the problem details object for a catalogue entry. */
export function problem(kind: ProblemKind, detail?: string, extra?: Record<string, unknown>): ProblemDetails {
  const entry = PROBLEMS[kind];
  return { type: PROBLEM_TYPE_BASE + entry.slug, title: entry.title, status: entry.status, ...(detail === undefined ? {} : { detail }), ...extra };
}

/** An error that the HTTP layer answers with the given problem (and optional headers). */
export class ProblemError extends Error {
  readonly problem: ProblemDetails;
  readonly headers: Record<string, string>;

  constructor(kind: ProblemKind, detail?: string, options: { headers?: Record<string, string>; extra?: Record<string, unknown> } = {}) {
    super(detail ?? PROBLEMS[kind].title);
    this.name = 'ProblemError';
    this.problem = problem(kind, detail, options.extra);
    this.headers = options.headers ?? {};
  }
}
