/*
 * Compile-time checks of the typed client, run by `npx tsc -p .` (never by vitest, never executed):
 * each `@ts-expect-error` line must be a type error, or tsc reports the directive as unused.
 */
import type { components, paths } from '../generated/api.js';
import { createClient, type JobResult } from '../src/client/index.js';

type Report = components['schemas']['Report'];
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Mutually assignable (openapi-fetch wraps response bodies in a mapped Readable<> type). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export async function typedClientChecks(): Promise<void> {
  const api = createClient<paths>({ baseUrl: 'http://127.0.0.1:3000', headers: { 'X-API-Key': 'key-a' } });

  // A valid submission needs no Idempotency-Key (the client makes one) but may give one, typed as a string.
  const { data } = await api.POST('/reports', { body: { title: 'Q3', rows: 10 } });
  await api.POST('/reports', { body: { title: 'Q3', rows: 10, format: 'json' }, params: { header: { 'Idempotency-Key': 'q3-2024' } } });
  await api.POST('/reports', { body: { title: 'Q3', rows: 10 }, params: { header: { 'Callback-URL': 'https://hooks.example.com/q3' } } });

  // @ts-expect-error rows is a number, not a string
  await api.POST('/reports', { body: { title: 'Q3', rows: 'ten' } });
  // @ts-expect-error title is required
  await api.POST('/reports', { body: { rows: 10 } });
  // @ts-expect-error format is csv or json
  await api.POST('/reports', { body: { title: 'Q3', rows: 10, format: 'xml' } });
  // @ts-expect-error the body is required
  await api.POST('/reports', {});
  // @ts-expect-error an Idempotency-Key is a string
  await api.POST('/reports', { body: { title: 'Q3', rows: 10 }, params: { header: { 'Idempotency-Key': 42 } } });
  // @ts-expect-error no such path
  await api.POST('/nope', { body: { title: 'Q3', rows: 10 } });
  // @ts-expect-error /reports/estimate has no POST
  await api.POST('/reports/estimate', { params: { query: { rows: 10 } } });
  // @ts-expect-error the estimate needs its rows query parameter
  await api.GET('/reports/estimate', { params: { query: {} } });

  const estimate = await api.GET('/reports/estimate', { params: { query: { rows: 10 } } });
  const estimatedBytes: number | undefined = estimate.data?.estimatedBytes;

  if (!data) return;
  // Whatever the submission answered (202 or, with Prefer: wait, the Report), waitFor gives the Report.
  const either = await api.waitFor(data);
  const eitherIsReport: Report = either;
  const reportIsEither: typeof either = {} as Report;
  // The contract allows 202 (a job reference) and, with Prefer: wait, 200 (the Report itself).
  const answered: Same<typeof data, Report | (components['schemas']['JobAccepted'] & { operation: 'createReport' })> = true;
  if (!('job_id' in data)) {
    const inline: Report = data;
    void inline;
    return;
  }
  const operation: 'createReport' = data.operation;
  const jobId: string = data.job_id;

  // waitFor resolves with the operation's result type: the Report.
  const report = await api.waitFor(data);
  const rowCount: number = report.rowCount;
  const sha256: string = report.sha256;
  const exact: Equals<typeof report, Report> = true;
  const named: Equals<JobResult<paths, 'createReport'>, Report> = true;
  // @ts-expect-error the Report has no such field
  report.nope;
  // @ts-expect-error rowCount is a number
  const wrong: string = report.rowCount;

  // A job read back from GET /jobs/{id} works as well.
  const job = await api.GET('/jobs/{id}', { params: { path: { id: jobId } } });
  if (job.data) await api.waitFor(job.data, { timeout: 1000 });
  // @ts-expect-error a job reference needs an id or job_id
  await api.waitFor({ operation: 'createReport' });

  // waitForJobs: one ending per job, in order; a job reference's result is its operation's, a bare id's unknown.
  const [byReference, byId] = await api.waitForJobs([data, jobId] as const, { timeout: 1000 });
  if (byReference.status === 'succeeded') {
    const many: Equals<typeof byReference.result, Report> = true;
    void many;
  } else {
    const problemType: string | undefined = byReference.error?.type;
    void problemType;
  }
  if (byId.status === 'succeeded') {
    const unknownResult: Equals<typeof byId.result, unknown> = true;
    // @ts-expect-error a bare id's result is not known to be a Report
    const notReport: Report = byId.result;
    void [unknownResult, notReport];
  }
  const endedJob: string = byId.job.status;
  // @ts-expect-error waitForJobs takes job references or ids
  await api.waitForJobs([42]);

  void [either, eitherIsReport, reportIsEither, estimatedBytes, answered, operation, rowCount, sha256, exact, named, wrong, endedJob];
}
