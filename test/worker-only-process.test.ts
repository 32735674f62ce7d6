import { Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createAsyncFirstWorker } from '../src/app.js';
import { createDemo, demoOptions } from '../src/demo/service.js';
import { API_KEYS, submitReport, tempDir, waitForJob } from './helpers.js';

/** Servers (listening sockets) this process holds now. */
function listeningServers(): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((handle) => handle instanceof Server).length;
}

describe('a worker-only process', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('runs the jobs an API process accepted, with no HTTP server of its own', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const config = { databaseUrl: tmp.dbPath, logLevel: 'silent', pollIntervalMs: 20 };
    const api = await createDemo({ apiKeys: API_KEYS, config: { ...config, workerConcurrency: 0 } });
    cleanups.push(() => api.close());
    api.startBackground();

    const before = listeningServers();
    const worker = await createAsyncFirstWorker(demoOptions({ apiKeys: API_KEYS, config: { ...config, workerConcurrency: 2 } }));
    cleanups.push(() => worker.close());
    expect('server' in worker).toBe(false);
    expect(worker.worker).toBeDefined();
    worker.startBackground();
    expect(listeningServers()).toBe(before);

    const accepted = await submitReport(api, { title: 'elsewhere', rows: 3 }, { 'idempotency-key': 'worker-only' });
    expect(accepted.statusCode).toBe(202);
    const job = await waitForJob(api, accepted.json<{ job_id: string }>().job_id);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 1, result: { rowCount: 3, title: 'elsewhere' } });
  });
});
