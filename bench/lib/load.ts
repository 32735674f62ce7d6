import { randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import { v7 as uuidv7 } from 'uuid';
import { BENCH_API_KEY, REPORT_BODY_JSON } from './shared.js';

/** One autocannon run, reduced to what the report needs. */
export interface LoadResult {
  /** 2xx responses per second over the run. */
  rps: number;
  /** Milliseconds (autocannon's resolution is 1 ms). */
  p50: number;
  p99: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** Responses that were not 2xx. */
  non2xx: number;
  ok: number;
  durationS: number;
  statusCodes: Record<string, number>;
}

export interface LoadOptions {
  url: string;
  requests: autocannon.Request[];
  durationS: number;
  connections: number;
  /** Fixed total request rate (req/s); unlimited when absent. */
  overallRate?: number;
}

/** Runs autocannon in this process (the servers under test are other processes). */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    requests: options.requests,
    timeout: 10,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
  });
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats)) statusCodes[code] = Number(count);
  const durationS = result.duration > 0 ? result.duration : options.durationS;
  return {
    rps: result['2xx'] / durationS,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    ok: result['2xx'],
    durationS,
    statusCodes,
  };
}

const JSON_HEADERS = { 'content-type': 'application/json', 'x-api-key': BENCH_API_KEY };

/**
 * POST /reports with a new Idempotency-Key on every request: a random UUIDv4 by default, or a
 * time-ordered UUIDv7 (what asyncfirst's client sends).
 */
export function freshKeyRequests(keys: 'uuidv4' | 'uuidv7' = 'uuidv4'): autocannon.Request[] {
  const newKey = keys === 'uuidv7' ? uuidv7 : randomUUID;
  return [
    {
      method: 'POST',
      path: '/reports',
      headers: JSON_HEADERS,
      body: REPORT_BODY_JSON,
      setupRequest: (request) => ({ ...request, headers: { ...JSON_HEADERS, 'idempotency-key': newKey() } }),
    },
  ];
}

/** POST /reports with one Idempotency-Key, again and again (after the first, every answer is a replay). */
export function sameKeyRequests(key: string): autocannon.Request[] {
  return [{ method: 'POST', path: '/reports', headers: { ...JSON_HEADERS, 'idempotency-key': key }, body: REPORT_BODY_JSON }];
}

/** GET /jobs/{id}, each request for a random id of `ids`. */
export function getJobRequests(ids: readonly string[]): autocannon.Request[] {
  const headers = { 'x-api-key': BENCH_API_KEY };
  return [
    {
      method: 'GET',
      path: `/jobs/${ids[0]}`,
      headers,
      setupRequest: (request) => ({ ...request, path: `/jobs/${ids[Math.floor(Math.random() * ids.length)]}` }),
    },
  ];
}

/** One POST /reports with a given key, as a plain client would send it; returns the status. */
export async function postReport(url: string, key: string): Promise<number> {
  const response = await fetch(new URL('/reports', url), { method: 'POST', headers: { ...JSON_HEADERS, 'idempotency-key': key }, body: REPORT_BODY_JSON });
  await response.arrayBuffer();
  return response.status;
}
