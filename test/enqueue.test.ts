import { describe, expect, it } from 'vitest';
import { ProblemError } from '../src/core/problems.js';
import { demoOptions } from '../src/demo/service.js';
import { createTestApp } from '../src/testing/index.js';

/* app.enqueue: a job submitted from code, with an HTTP submission's validation, idempotency and durability. */

const ALICE = { 'x-api-key': 'key-a' };

describe('app.enqueue', () => {
  it('stores a job for the principal, which the worker runs and its principal reads over HTTP', async () => {
    const service = await createTestApp(demoOptions({ apiKeys: 'alice:key-a' }));
    try {
      const enqueued = await service.app.enqueue('createReport', { body: { title: 'nightly', rows: 10 } }, { principal: 'alice', key: 'nightly-2026-12-04' });
      expect(enqueued).toEqual({ jobId: expect.stringMatching(/^[0-9A-Z]{26}$/), replayed: false });
      expect(await service.app.store.countIdempotencyRecords()).toBe(1);
      await service.runUntilIdle();
      expect(await service.job(enqueued.jobId, ALICE)).toMatchObject({ status: 'succeeded', result: { title: 'nightly', rowCount: 10 } });

      // The same key and input: the same job. The same key with another input: 422, as over HTTP.
      expect(await service.app.enqueue('createReport', { body: { title: 'nightly', rows: 10 } }, { principal: 'alice', key: 'nightly-2026-12-04' })).toEqual({
        jobId: enqueued.jobId,
        replayed: true,
      });
      const reused = await service.app
        .enqueue('createReport', { body: { title: 'nightly', rows: 11 } }, { principal: 'alice', key: 'nightly-2026-12-04' })
        .catch((error: unknown) => error);
      expect(reused).toBeInstanceOf(ProblemError);
      expect((reused as ProblemError).problem).toMatchObject({ status: 422, type: 'urn:asyncfirst:problem:idempotency-key-reused' });

      // An HTTP submission with that key and input by the same principal replays the enqueued job.
      const overHttp = await service.submit('POST', '/reports', { title: 'nightly', rows: 10 }, { ...ALICE, 'idempotency-key': 'nightly-2026-12-04' });
      expect(overHttp.status).toBe(202);
      expect(overHttp.jobId).toBe(enqueued.jobId);
      expect(overHttp.headers['idempotent-replayed']).toBe('true');
    } finally {
      await service.close();
    }
  });

  it('refuses input that breaks the contract with 400 validation-failed, and an operation that is not asynchronous, storing nothing', async () => {
    const service = await createTestApp(demoOptions({ apiKeys: 'alice:key-a' }));
    try {
      // What TypeScript refuses (test/enqueue-types.typecheck.ts) is refused at run time too, for JavaScript callers.
      const invalid = await service.app
        // @ts-expect-error rows is an integer
        .enqueue('createReport', { body: { title: 'x', rows: 'ten' } }, { principal: 'alice' })
        .catch((error: unknown) => error);
      expect(invalid).toBeInstanceOf(ProblemError);
      expect((invalid as ProblemError).problem).toMatchObject({
        status: 400,
        type: 'urn:asyncfirst:problem:validation-failed',
        errors: [{ in: 'body', pointer: '/rows', message: expect.stringContaining('integer') }],
      });
      // @ts-expect-error the body is required
      await expect(service.app.enqueue('createReport', {}, { principal: 'alice' })).rejects.toThrow('first: body / is required');
      // @ts-expect-error estimateReport is synchronous
      await expect(service.app.enqueue('estimateReport', { query: { rows: 1 } })).rejects.toThrow('"estimateReport" is not an asynchronous operation');
      expect(await service.app.store.countJobs()).toEqual([]);
      expect(await service.app.store.countIdempotencyRecords()).toBe(0);
    } finally {
      await service.close();
    }
  });
});
