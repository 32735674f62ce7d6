import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { BENCH_API_KEY, REPORT_BODY_JSON } from './shared.js';
import { type Summary, summarize } from './stats.js';

/*
 * An open-loop, evenly paced load: one POST /reports every 1000/rate ms, whatever the answers do.
 * autocannon's overallRate is not steady: each connection sends its whole per-second quota as
 * fast as it can at the start of every second, so "500 req/s" arrives as a burst of 500
 * requests followed by silence, and what it measures is how long the burst takes to drain.
 */

export interface PacedResult {
  rate: number;
  durationS: number;
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  /** Achieved 2xx per second. */
  rps: number;
  /** From the time each request was due to its full answer, ms. */
  latency: Summary;
}

export async function runPaced(options: { url: string; rate: number; durationS: number }): Promise<PacedResult> {
  const target = new URL('/reports', options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const total = Math.round(options.rate * options.durationS);
  const interval = 1000 / options.rate;
  const latencies: number[] = [];
  let sent = 0;
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let settled = 0;
  const start = performance.now();
  let finished: () => void = () => {};
  const allSettled = new Promise<void>((resolve) => {
    finished = resolve;
  });
  const settle = () => {
    if (++settled === total) finished();
  };
  const fire = (due: number) => {
    const body = REPORT_BODY_JSON;
    const outgoing = request(
      target,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-api-key': BENCH_API_KEY,
          'idempotency-key': randomUUID(),
        },
      },
      (response) => {
        response.resume();
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            ok++;
            latencies.push(performance.now() - due);
          } else non2xx++;
          settle();
        });
      },
    );
    outgoing.on('error', () => {
      errors++;
      settle();
    });
    outgoing.end(body);
  };
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        fire(start + sent * interval);
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
      else resolve();
    };
    tick();
  });
  await Promise.race([allSettled, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  agent.destroy();
  const durationS = (performance.now() - start) / 1000;
  return { rate: options.rate, durationS, sent, ok, non2xx, errors, rps: ok / durationS, latency: summarize(latencies) };
}
