import { describe, expect, it } from 'vitest';
import { demoOptions, reportHandlers } from '../src/demo/service.js';
import { HttpProblem } from '../src/handlers.js';
import { createTestApp } from '../src/testing/index.js';

/* A synchronous handler answers a problem of the service's choosing with HttpProblem. */

const ALICE = { 'x-api-key': 'key-a' };

describe('HttpProblem from a synchronous handler', () => {
  it('answers its status as application/problem+json with the type, title, detail and members the service chose', async () => {
    const refusing: typeof reportHandlers.estimateReport = ({ query }) => {
      throw new HttpProblem(
        404,
        { type: 'https://reports.example/problems/no-template', title: 'No such template', detail: `No template for ${query.rows} rows.`, template: 'q3' },
        { headers: { 'cache-control': 'no-store' } },
      );
    };
    const service = await createTestApp({ ...demoOptions({ apiKeys: 'alice:key-a' }), handlers: { ...reportHandlers, estimateReport: refusing } });
    try {
      const answer = await service.request({ method: 'GET', url: '/reports/estimate?rows=7', headers: ALICE });
      expect(answer.status).toBe(404);
      expect(answer.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(answer.headers['cache-control']).toBe('no-store');
      expect(answer.body).toEqual({
        type: 'https://reports.example/problems/no-template',
        title: 'No such template',
        status: 404,
        detail: 'No template for 7 rows.',
        template: 'q3',
      });
    } finally {
      await service.close();
    }
  });

  it('defaults the type to about:blank, and refuses a status that is not 4xx or 5xx', () => {
    expect(new HttpProblem(409, { title: 'Conflict' }).problem).toEqual({ type: 'about:blank', title: 'Conflict', status: 409 });
    expect(() => new HttpProblem(200, { title: 'fine' })).toThrow(RangeError);
    expect(() => new HttpProblem(404.5, { title: 'odd' })).toThrow('HttpProblem status 404.5 is not a 4xx or 5xx status');
  });
});

describe('HttpProblem from a job handler', () => {
  it('fails the job at once with the problem the handler chose, not job-handler-failed', async () => {
    const refusing: typeof reportHandlers.createReport = ({ body }) => {
      throw new HttpProblem(422, { type: 'https://reports.example/problems/empty-title', title: 'Empty title', detail: `"${body.title}" has no letters.` });
    };
    const service = await createTestApp({
      ...demoOptions({ apiKeys: 'alice:key-a' }),
      handlers: { ...reportHandlers, createReport: refusing },
      operations: { createReport: { maxAttempts: 3 } },
    });
    try {
      const accepted = await service.submit('POST', '/reports', { title: '---', rows: 1 }, ALICE);
      expect(accepted.status).toBe(202);
      await service.runUntilIdle();
      const job = await service.job(accepted.jobId!, ALICE);
      expect(job).toMatchObject({ status: 'failed', attempts: 1 });
      expect(job.error).toEqual({
        type: 'https://reports.example/problems/empty-title',
        title: 'Empty title',
        status: 422,
        detail: '"---" has no letters.',
        attempt: 1,
      });
    } finally {
      await service.close();
    }
  });
});
