import { afterEach, describe, expect, it } from 'vitest';
import { ALICE } from './helpers.js';
import { DATABASES } from './policy-support.js';
import { type DemoProcess, fetchJob, killDemoProcess, sleep, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * Notifications across real processes: the demo (npm start, whose report-log notifier logs one
 * line per finished report job) as an API process that runs no worker and two worker processes on
 * one database. Every process runs a notification dispatcher, so each notification is claimed by
 * one of three; the lines of all three are counted, so "delivered once" is counted, not assumed.
 */

const processes: DemoProcess[] = [];
const drops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const demo of processes.splice(0)) await killDemoProcess(demo);
  for (const drop of drops.splice(0)) await drop();
});

interface JobView {
  status: string;
  notifications?: Array<{ notifier: string; event: string; status: string; attempts: number }>;
}

describe.each(DATABASES)('notifications across processes on $name', ({ make }) => {
  it('hands each finished job to the report-log notifier once among three processes, and shows it delivered on the job', async () => {
    const { config, drop } = make();
    drops.push(drop);
    const { databaseUrl, databaseSchema } = config as { databaseUrl: string; databaseSchema?: string };
    const env = { DATABASE_URL: databaseUrl, ...(databaseSchema ? { DATABASE_SCHEMA: databaseSchema } : {}), WORKER_POLL_MS: '100', LOG_LEVEL: 'info' };
    // The API process migrates first; the workers then find the schema made.
    const api = await startDemoProcess('serve', { ...env, WORKER_CONCURRENCY: '0' });
    processes.push(api);
    const workers = await Promise.all([
      startDemoProcess('worker', { ...env, WORKER_CONCURRENCY: '4' }),
      startDemoProcess('worker', { ...env, WORKER_CONCURRENCY: '4' }),
    ]);
    processes.push(...workers);
    const address = api.address as string;

    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const response = await fetch(`${address}/reports`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `across-${i}`, ...ALICE },
        body: JSON.stringify({ title: `r${i}`, rows: 10 }),
      });
      expect(response.status).toBe(202);
      ids.push(((await response.json()) as { job_id: string }).job_id);
    }
    const views = await waitFor(
      'every job to succeed with its notification delivered',
      async () => {
        const all = await Promise.all(ids.map((id) => fetchJob<JobView>(address, id)));
        return all.every((view) => view.status === 'succeeded' && view.notifications?.[0]?.status === 'succeeded') ? all : undefined;
      },
      30_000,
      100,
    );
    for (const view of views) {
      expect(view.notifications).toEqual([expect.objectContaining({ notifier: 'report-log', event: 'job.succeeded', status: 'succeeded', attempts: 1 })]);
    }
    // Anything claimed twice would have been logged by now (each attempt is logged before it is recorded).
    await sleep(500);
    const logged = [api, ...workers].flatMap((demo) =>
      demo
        .logs()
        .filter((entry) => entry.notifier === 'report-log')
        .map((entry) => String(entry.jobId)),
    );
    expect(logged.sort()).toEqual([...ids].sort());
  }, 60_000);
});
