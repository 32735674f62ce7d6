import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { demoOptions, reportHandlers } from '../src/demo/service.js';
import { createTestApp } from '../src/testing/index.js';

/* A synchronous handler's result is checked against the declared response schema before it is sent. */

const ALICE = { 'x-api-key': 'key-a' };

describe("a synchronous operation's result", () => {
  it('that does not match the contract is a 500 problem, and nothing of it is sent', async () => {
    const wrong = (() => ({ rows: 1, format: 'csv', estimatedBytes: 'secret-internal-value' })) as unknown as typeof reportHandlers.estimateReport;
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const service = await createTestApp({
      ...demoOptions({ apiKeys: 'alice:key-a' }),
      handlers: { ...reportHandlers, estimateReport: wrong },
      logger: pino({ level: 'info' }, destination),
    });
    try {
      const answer = await service.request({ method: 'GET', url: '/reports/estimate?rows=1', headers: ALICE });
      // Logged at error with what did not match, for the service's developers.
      expect(lines.filter((line) => line.level === 50 && line.operationId === 'estimateReport')).toEqual([
        expect.objectContaining({
          msg: 'the handler answered a result that does not match the contract; it was not sent',
          violations: '/estimatedBytes must be integer',
        }),
      ]);
      expect(answer.status).toBe(500);
      expect(answer.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(answer.body).toMatchObject({
        type: 'urn:asyncfirst:problem:internal',
        status: 500,
        detail: 'The estimateReport handler answered a result that does not match the contract; it was not sent.',
      });
      expect(JSON.stringify(answer.body)).not.toContain('secret-internal-value');
    } finally {
      await service.close();
    }
  });

  it('that matches is sent as the 200 body', async () => {
    const service = await createTestApp(demoOptions({ apiKeys: 'alice:key-a' }));
    try {
      const answer = await service.request({ method: 'GET', url: '/reports/estimate?rows=10', headers: ALICE });
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual({ rows: 10, format: 'csv', estimatedBytes: expect.any(Number) });
    } finally {
      await service.close();
    }
  });
});
