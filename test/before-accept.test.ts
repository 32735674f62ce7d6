import { describe, expect, it } from 'vitest';
import { demoOptions } from '../src/demo/service.js';
import { HttpProblem } from '../src/handlers.js';
import { createTestApp } from '../src/testing/index.js';

/* operations.<id>.beforeAccept refuses a submission before any job or idempotency record is stored. */

const ALICE = { 'x-api-key': 'key-a', 'idempotency-key': 'k-1' };

describe('beforeAccept', () => {
  it('refuses with the problem it throws and stores nothing; a submission it lets through is accepted', async () => {
    const seen: { principal: string; title: string }[] = [];
    const service = await createTestApp({
      ...demoOptions({ apiKeys: 'alice:key-a' }),
      operations: {
        createReport: {
          beforeAccept: ({ body }, { principal }) => {
            seen.push({ principal, title: body.title });
            if (body.title === 'unknown') throw new HttpProblem(404, { type: 'https://reports.example/problems/no-template', title: 'No such template' });
          },
        },
      },
    });
    try {
      const refused = await service.submit('POST', '/reports', { title: 'unknown', rows: 10 }, ALICE);
      expect(refused.status).toBe(404);
      expect(refused.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(refused.body).toEqual({ type: 'https://reports.example/problems/no-template', title: 'No such template', status: 404 });
      expect(await service.app.store.countJobs()).toEqual([]);
      expect(await service.app.store.countIdempotencyRecords()).toBe(0);

      // The same key is free for the corrected request: nothing was kept of the refused one.
      const accepted = await service.submit('POST', '/reports', { title: 'Q3', rows: 10 }, ALICE);
      expect(accepted.status).toBe(202);
      expect(await service.app.store.countIdempotencyRecords()).toBe(1);
      expect(seen).toEqual([
        { principal: 'alice', title: 'unknown' },
        { principal: 'alice', title: 'Q3' },
      ]);
    } finally {
      await service.close();
    }
  });

  it('runs after validation: an invalid body is 400 without calling it', async () => {
    let calls = 0;
    const service = await createTestApp({
      ...demoOptions({ apiKeys: 'alice:key-a' }),
      operations: { createReport: { beforeAccept: () => void calls++ } },
    });
    try {
      const invalid = await service.submit('POST', '/reports', { title: 'Q3', rows: 'ten' }, ALICE);
      expect(invalid.status).toBe(400);
      expect(calls).toBe(0);
    } finally {
      await service.close();
    }
  });
});
