import http from 'node:http';
import https from 'node:https';
import { parseRetryAfterMs } from '../retry-after.js';
import type { CallbackPolicy } from './callback-url.js';

/** How one delivery attempt ended. */
export type SendOutcome =
  | { kind: 'delivered'; status?: number }
  /** Worth another attempt: a timeout, a network error, 429 or 5xx; retryAfterMs when the receiver said. */
  | { kind: 'retry'; status?: number; error: string; retryAfterMs?: number }
  /** Never worth another attempt: 410 Gone, another 3xx/4xx, or a refused address. */
  | { kind: 'give-up'; status?: number; error: string };

/**
 * POSTs one signed webhook. Redirects are not followed (a 3xx is a failure), the connection goes
 * only to addresses the policy allows, and the whole exchange is bounded by `timeoutMs`.
 */
export function sendWebhook(
  url: string,
  headers: Record<string, string>,
  body: string,
  options: { policy: CallbackPolicy; timeoutMs: number },
): Promise<SendOutcome> {
  const refusal = options.policy.refusal(url);
  if (refusal) return Promise.resolve({ kind: 'give-up', error: `callback URL ${refusal}` });
  const target = new URL(url);
  const transport = target.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const request = transport.request(
      target,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'asyncfirst-webhooks', ...headers },
        lookup: options.policy.lookup as never,
        timeout: options.timeoutMs,
        signal: AbortSignal.timeout(options.timeoutMs),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        response.resume();
        response.on('error', () => undefined);
        if (status >= 200 && status < 300) return resolve({ kind: 'delivered', status });
        if (status === 429 || status >= 500)
          return resolve({ kind: 'retry', status, error: `receiver answered ${status}`, retryAfterMs: parseRetryAfterMs(response.headers['retry-after']) });
        resolve({ kind: 'give-up', status, error: status === 410 ? 'receiver answered 410 Gone: it wants no more deliveries' : `receiver answered ${status}` });
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    request.on('error', (error: Error & { code?: string }) => {
      if (error.code === 'ESSRFBLOCKED') resolve({ kind: 'give-up', error: error.message });
      else resolve({ kind: 'retry', error: error.name === 'AbortError' ? `no answer within ${options.timeoutMs} ms` : error.message });
    });
    request.end(body);
  });
}
