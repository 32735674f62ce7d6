import { describe, expect, it } from 'vitest';
import { demoOptions, reportHandlers } from '../src/demo/service.js';
import { createTestApp, ResultMismatchError, runHandler } from '../src/testing/index.js';

/* asyncfirst/testing, as a service's own tests use it: here on the demo service. */

const ALICE = { 'x-api-key': 'key-a' };

describe('createTestApp', () => {
  it('submits through inject, runs the worker until idle and reads the finished job', async () => {
    const service = await createTestApp(demoOptions({ apiKeys: 'alice:key-a' }));
    try {
      const accepted = await service.submit('POST', '/reports', { title: 'Q3', rows: 10 }, ALICE);
      expect(accepted.status).toBe(202);
      expect(accepted.jobId).toMatch(/^[0-9A-Z]{26}$/);
      expect(accepted.headers['content-type']).toMatch(/^application\/json/);
      expect(await service.job(accepted.jobId!, ALICE)).toMatchObject({ id: accepted.jobId, status: 'queued' });
      await service.runUntilIdle();
      const job = await service.job(accepted.jobId!, ALICE);
      expect(job).toMatchObject({ id: accepted.jobId, status: 'succeeded', result: { title: 'Q3', rowCount: 10, format: 'csv' } });
      const counts = await service.app.store.countJobs();
      expect(counts).toEqual([{ operation: 'createReport', status: 'succeeded', count: 1 }]);
      const sync = await service.request({ method: 'GET', url: '/reports/estimate?rows=5', headers: ALICE });
      expect(sync.status).toBe(200);
      expect(sync.body).toMatchObject({ rows: 5, format: 'csv' });
      await expect(service.job('01J00000000000000000000000', ALICE)).rejects.toThrow('answered 404');
    } finally {
      await service.close();
    }
  });

  it('runUntilIdle names the jobs still pending when its time runs out', async () => {
    const stuck: typeof reportHandlers.createReport = (_input, { signal }) =>
      new Promise((_done, fail) => signal.addEventListener('abort', () => fail(new Error('stopped'))));
    const service = await createTestApp({
      ...demoOptions({ apiKeys: 'alice:key-a', config: { shutdownGraceMs: 100 } }),
      handlers: { ...reportHandlers, createReport: stuck },
    });
    try {
      await service.submit('POST', '/reports', { title: 'Q3', rows: 10 }, ALICE);
      await expect(service.runUntilIdle({ timeoutMs: 200 })).rejects.toThrow('jobs still pending after 200 ms: 1 createReport running');
    } finally {
      await service.close();
    }
  });
});

describe('runHandler', () => {
  it('runs one handler with a real context and returns its result and the progress it reported', async () => {
    const run = await runHandler(demoOptions(), 'createReport', { body: { title: 'Q3', rows: 50_000, format: 'json' } });
    expect(run.result).toMatchObject({ title: 'Q3', rowCount: 50_000, format: 'json' });
    expect(run.progress[0]).toEqual({ percent: 10, message: '5000 of 50000 rows' });
  });

  it('refuses a result that does not match the contract, naming the place', async () => {
    const handlers = { ...reportHandlers, estimateReport: () => ({ rows: 1, format: 'csv', estimatedBytes: 'many' }) as never };
    const failure = await runHandler({ contract: demoOptions().contract, handlers }, 'estimateReport', { query: { rows: 1 } }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ResultMismatchError);
    expect((failure as Error).message).toBe('the result of estimateReport does not match the contract: /estimatedBytes must be integer');
  });
});
