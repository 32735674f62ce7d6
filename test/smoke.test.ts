import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startDemo, submitReport, waitForJob } from './helpers.js';

describe('submit and poll', () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  beforeEach(async () => {
    demo = await startDemo();
  });
  afterEach(() => demo.close());

  it('accepts a report with 202 and the worker stores its result', async () => {
    const accepted = await submitReport(demo.app, { title: 'Q3', rows: 10 }, { 'idempotency-key': 'smoke-1' });
    expect(accepted.statusCode).toBe(202);
    const { job_id } = accepted.json();
    const job = await waitForJob(demo.app, job_id);
    expect(job.status).toBe('succeeded');
    expect(job.result.rowCount).toBe(10);
  });
});
