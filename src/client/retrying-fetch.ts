import { setTimeout as sleep } from 'node:timers/promises';
import { v7 as uuidv7 } from 'uuid';
import { parseRetryAfterMs } from '../retry-after.js';

export interface RetryOptions {
  /** Retries after the first try (default 5). */
  maxRetries?: number;
  /** Ceiling of the first retry's delay in ms (default 200); doubles per retry, with equal jitter. */
  baseDelayMs?: number;
  /** Largest delay in ms, Retry-After included (default 10 000). */
  maxDelayMs?: number;
}

/** Statuses after which the request was not processed, or may be retried with the same key. */
export const RETRY_STATUSES = new Set([409, 429, 502, 503, 504]);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * Wraps fetch so that a submission is safe to retry: a POST or PATCH without an Idempotency-Key
 * gets a new UUIDv7 key, once per logical call (time-ordered, so the server's key index grows at
 * its end instead of at a random leaf; the rest of the key is random, so keys stay unguessable), and every retry of the call reuses it. Requests
 * with a key (or of an idempotent method) are retried on network errors and on 409, 429, 502,
 * 503 and 504, with exponential backoff and jitter, honouring Retry-After, until maxRetries or
 * the request's AbortSignal.
 */
export function retryingFetch(fetchImpl: (request: Request) => Promise<Response>, options: RetryOptions = {}): (request: Request) => Promise<Response> {
  const maxRetries = options.maxRetries ?? 5;
  const baseDelayMs = options.baseDelayMs ?? 200;
  const maxDelayMs = options.maxDelayMs ?? 10_000;
  return async (original) => {
    let request = original;
    if ((request.method === 'POST' || request.method === 'PATCH') && !request.headers.has('idempotency-key')) {
      const headers = new Headers(request.headers);
      headers.set('idempotency-key', uuidv7());
      request = new Request(request, { headers });
    }
    const retriable = request.headers.has('idempotency-key') || SAFE_METHODS.has(request.method);
    for (let retry = 0; ; retry++) {
      let response: Response | undefined;
      let failure: unknown;
      try {
        response = await fetchImpl(request.clone());
      } catch (error) {
        if (request.signal.aborted) throw error;
        failure = error;
      }
      const again = retriable && retry < maxRetries && (response === undefined || RETRY_STATUSES.has(response.status));
      if (!again) {
        if (response === undefined) throw failure;
        return response;
      }
      const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** retry);
      const backoff = ceiling / 2 + Math.random() * (ceiling / 2);
      const delay = Math.min(maxDelayMs, Math.max(backoff, parseRetryAfterMs(response?.headers.get('retry-after')) ?? 0));
      await response?.body?.cancel();
      await sleep(delay, undefined, { signal: request.signal });
    }
  };
}
