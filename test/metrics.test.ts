import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { demoOptions } from '../src/demo/service.js';
import { tempDir } from './helpers.js';

const ALICE = { 'x-api-key': 'key-a' };

/** The value of one sample line of the exposition text, e.g. `name{label="x"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('GET /metrics over a real socket', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(config: Partial<AsyncFirstConfig> = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createAsyncFirst(
      demoOptions({ apiKeys: 'alice:key-a', config: { databaseUrl: tmp.dbPath, logLevel: 'silent', port: 0, pollIntervalMs: 50, ...config } }),
    );
    apps.push(app);
    return app.listen();
  }

  const submit = (address: string, key: string) =>
    fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
      body: JSON.stringify({ title: key, rows: 2 }),
    });

  it('counts acceptances, replays and endings, times handlers, waits and requests, and reads job counts from the database; no job id in any label', async () => {
    const address = await listen();
    const accepted = await submit(address, 'm1');
    expect(accepted.status).toBe(202);
    const { job_id } = (await accepted.json()) as { job_id: string };
    expect((await submit(address, 'm1')).status).toBe(202);
    const done = await fetch(`${address}/jobs/${job_id}`, { headers: { ...ALICE, prefer: 'wait=10' } });
    expect(((await done.json()) as { status: string }).status).toBe('succeeded');

    const response = await fetch(`${address}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(sample(text, 'asyncfirst_jobs_accepted_total{operation="createReport"}')).toBe(1);
    expect(sample(text, 'asyncfirst_jobs_replayed_total{operation="createReport"}')).toBe(1);
    expect(sample(text, 'asyncfirst_jobs_finished_total{operation="createReport",status="succeeded"}')).toBe(1);
    expect(sample(text, 'asyncfirst_job_duration_seconds_count{operation="createReport"}')).toBe(1);
    expect(sample(text, 'asyncfirst_job_wait_seconds_count{operation="createReport"}')).toBe(1);
    expect(sample(text, 'asyncfirst_jobs{operation="createReport",status="succeeded"}')).toBe(1);
    expect(sample(text, 'asyncfirst_http_request_duration_seconds_count{method="POST",route="/reports",status_code="202"}')).toBe(2);
    expect(sample(text, 'asyncfirst_http_request_duration_seconds_count{method="GET",route="/jobs/:id",status_code="200"}')).toBe(1);
    expect(text).toContain('# TYPE asyncfirst_queue_lag_seconds gauge');
    expect(text).toContain('# TYPE asyncfirst_webhook_deliveries_total counter');
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(text).not.toContain(job_id);
  });

  it('shows the age of the longest-due queued job per operation as the queue lag', async () => {
    const address = await listen({ workerConcurrency: 0 });
    expect((await submit(address, 'waiting')).status).toBe(202);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lag = sample(await (await fetch(`${address}/metrics`)).text(), 'asyncfirst_queue_lag_seconds{operation="createReport"}');
    expect(lag).toBeGreaterThanOrEqual(0.25);
    expect(lag).toBeLessThan(30);
  });

  it('asks for METRICS_TOKEN as a bearer token when it is set', async () => {
    const address = await listen({ metricsToken: 's3cret-token', workerConcurrency: 0 });
    const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer wrong' }, { authorization: 'Basic s3cret-token' }];
    for (const headers of attempts) {
      const refused = await fetch(`${address}/metrics`, { headers });
      expect(refused.status).toBe(401);
      expect(refused.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(((await refused.json()) as { type: string }).type).toBe(`${PROBLEM_TYPE_BASE}unauthorized`);
    }
    const allowed = await fetch(`${address}/metrics`, { headers: { authorization: 'Bearer s3cret-token' } });
    expect(allowed.status).toBe(200);
    expect(await allowed.text()).toContain('asyncfirst_jobs_accepted_total');
  });

  it('keeps no metrics and serves no /metrics (404) with METRICS=off, and jobs run as before', async () => {
    const address = await listen({ metrics: false });
    expect(apps[0]?.runtime.metrics).toBeUndefined();
    const accepted = await submit(address, 'unmeasured');
    expect(accepted.status).toBe(202);
    const { job_id } = (await accepted.json()) as { job_id: string };
    const done = await fetch(`${address}/jobs/${job_id}`, { headers: { ...ALICE, prefer: 'wait=10' } });
    expect(((await done.json()) as { status: string }).status).toBe('succeeded');
    const metrics = await fetch(`${address}/metrics`);
    expect(metrics.status).toBe(404);
    expect(metrics.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    expect(((await metrics.json()) as { type: string }).type).toBe(`${PROBLEM_TYPE_BASE}not-found`);
  });
});
