import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import { submitReport, tempDir, waitForJob } from './helpers.js';
import { customApp, expectNoLease } from './worker-test-support.js';

const RESULT_INVALID = 'urn:asyncfirst:problem:job-result-invalid';
const VALID_REPORT = { title: 'Q3', format: 'csv', rowCount: 10, bytes: 120, sha256: 'ab'.repeat(32) };

interface JobView {
  status: string;
  attempts: number;
  error?: { type: string; title: string; status: number; detail?: string };
  result?: unknown;
}

describe("a job result is checked against the operation's 200 schema", () => {
  let app: AsyncFirstApp | undefined;
  let cleanup: (() => void) | undefined;
  afterEach(async () => {
    await app?.close();
    cleanup?.();
    app = undefined;
    cleanup = undefined;
  });

  /** Runs one createReport job whose handler returns `result`; gives the finished job as served and as stored. */
  async function runJobReturning(result: unknown, key: string) {
    const tmp = tempDir();
    cleanup = tmp.cleanup;
    let calls = 0;
    app = await customApp({
      dbPath: tmp.dbPath,
      createReport: async () => {
        calls++;
        return result;
      },
    });
    app.startBackground();
    const accepted = await submitReport(app, { title: 'Q3', rows: 10 }, { 'idempotency-key': key });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    const job = (await waitForJob(app, id)) as JobView;
    const row = await app.store.getJob('alice', id);
    expect(row?.id).toBe(id);
    return { job, row, calls: () => calls };
  }

  it('fails the job with job-result-invalid naming the violation when rowCount is a string, and stores no result', async () => {
    const { job, row, calls } = await runJobReturning({ ...VALID_REPORT, rowCount: '10' }, 'string-row-count');
    expect(job.status).toBe('failed');
    expect(job.attempts).toBe(1);
    expect(job.result).toBeUndefined();
    expect(job.error?.type).toBe(RESULT_INVALID);
    expect(job.error?.title).toBe('The job result does not match the contract');
    expect(job.error?.status).toBe(500);
    expect(job.error?.detail).toContain('createReport');
    expect(job.error?.detail).toContain('/rowCount must be integer');
    // A broken result is a bug in the handler: it is not retried.
    expect(calls()).toBe(1);
    expect(row).toMatchObject({ status: 'failed', attempts: 1 });
    expect(row?.result).toBeUndefined();
    expectNoLease(row);
    expect(row?.error).toEqual(job.error);
  });

  it('names a missing required property and an undeclared one', async () => {
    const { sha256: _omitted, ...withoutHash } = VALID_REPORT;
    const { job, row } = await runJobReturning({ ...withoutHash, extra: true }, 'missing-and-extra');
    expect(job.status).toBe('failed');
    expect(job.error?.type).toBe(RESULT_INVALID);
    expect(job.error?.detail).toContain('/sha256 is required');
    expect(job.error?.detail).toContain('/extra is not allowed');
    expect(row?.result).toBeUndefined();
  });

  it('fails a job whose handler returns nothing at all', async () => {
    const { job, row } = await runJobReturning(undefined, 'no-result');
    expect(job.status).toBe('failed');
    expect(job.error?.type).toBe(RESULT_INVALID);
    expect(row?.result).toBeUndefined();
  });

  it('stores a result that matches the schema and shows it as the job result', async () => {
    const { job, row } = await runJobReturning(VALID_REPORT, 'valid-result');
    expect(job.status).toBe('succeeded');
    expect(job.error).toBeUndefined();
    expect(job.result).toEqual(VALID_REPORT);
    expect(JSON.parse(row?.result ?? 'null')).toEqual(VALID_REPORT);
    expect(row?.error).toBeUndefined();
  });
});
