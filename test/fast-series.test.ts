import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastCounter, FastHistogram } from '../src/metrics/fast-series.js';

/*
 * The per-request and per-job series (fast-series.ts) must expose exactly what prom-client's own
 * Counter and Histogram would for the same observations: the same text, line for line.
 */
describe('series kept outside prom-client', () => {
  it('expose the same text as prom-client’s Counter and Histogram given the same observations, scrape after scrape', async () => {
    const fast = new Registry();
    const reference = new Registry();
    const fastHistogram = new FastHistogram(fast, { name: 'h_seconds', help: 'a histogram', labelNames: ['method', 'route'], buckets: [0.1, 1, 10] });
    const histogram = new Histogram({ name: 'h_seconds', help: 'a histogram', labelNames: ['method', 'route'], buckets: [0.1, 1, 10], registers: [reference] });
    const fastCounter = new FastCounter(fast, { name: 'c_total', help: 'a counter', labelNames: ['operation', 'status'] });
    const counter = new Counter({ name: 'c_total', help: 'a counter', labelNames: ['operation', 'status'], registers: [reference] });

    const observe = (value: number, method: string, route: string) => {
      fastHistogram.observe(value, method, route);
      histogram.observe({ method, route }, value);
    };
    const count = (operation: string, status: string) => {
      fastCounter.inc(operation, status);
      counter.inc({ operation, status });
    };
    for (const value of [0.05, 0.1, 0.5, 1, 2, 10, 11]) observe(value, 'GET', '/jobs/:id');
    observe(0.2, 'POST', '/reports');
    count('createReport', 'succeeded');
    count('createReport', 'succeeded');
    count('createReport', 'failed');
    const first = await fast.metrics();
    expect(first).toBe(await reference.metrics());
    expect(first).toContain('c_total{operation="createReport",status="succeeded"} 2');
    expect(first).toContain('h_seconds_bucket{le="1",method="GET",route="/jobs/:id"} 4');

    // Counts keep growing across scrapes (nothing is counted twice or lost when a scrape flushes).
    count('createReport', 'succeeded');
    observe(3, 'POST', '/reports');
    expect(await fast.metrics()).toBe(await reference.metrics());
    expect(await fast.metrics()).toContain('c_total{operation="createReport",status="succeeded"} 3');

    fast.resetMetrics();
    expect(await fast.metrics()).not.toContain('h_seconds_bucket');
  });
});
