import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import { loadContract, readContractFile } from '../src/contract/load.js';
import { describeOperations } from '../src/contract/operations.js';
import { PROBLEM_TYPE_BASE, ProblemError } from '../src/core/problems.js';
import { demoOptions } from '../src/demo/service.js';
import { followUpKey, makeFollowUpPlanner } from '../src/follow-ups.js';
import type { AnyHandler } from '../src/handlers.js';
import { ContractValidators } from '../src/http/validation.js';
import type { ClaimedJob } from '../src/store/store.js';
import { createTestApp, runHandler } from '../src/testing/index.js';
import { appDatabases } from './driver-support.js';
import { ALICE, BOB, submitReport, waitForJob } from './helpers.js';
import { CONTRACT_PATH, customApp } from './worker-test-support.js';

/*
 * ctx.enqueue end to end, on both databases: a handler's follow-ups are stored with its job's
 * success and only then, each once however often the parent was retried, shown as the parent's
 * children and each child's parent by GET /jobs/{id}; a bad one throws in the handler.
 */

const SHA = 'a'.repeat(64);
const REPORT = { title: 't', format: 'csv', rowCount: 1, bytes: 1, sha256: SHA };

interface JobView {
  id: string;
  operation: string;
  status: string;
  attempts: number;
  parent?: string;
  children?: string[];
  nextAttemptAt?: string;
  error?: { type: string; detail?: string };
  result?: unknown;
}

const DATABASES = appDatabases('af_follow_up_app');

describe.each(DATABASES)('ctx.enqueue on $name', (database) => {
  const apps: AsyncFirstApp[] = [];
  const drops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const drop of drops.splice(0)) await drop();
  });

  async function start(createReport: AnyHandler, maxAttempts = 3) {
    const made = database.make();
    drops.push(made.drop);
    const app = await customApp({ dbPath: made.databaseUrl, createReport, createReportOptions: { maxAttempts }, config: made.config });
    apps.push(app);
    app.startBackground();
    return app;
  }

  async function submit(app: AsyncFirstApp, title: string): Promise<string> {
    const response = await submitReport(app, { title, rows: 1 }, { 'idempotency-key': title });
    expect(response.statusCode).toBe(202);
    return response.json().job_id as string;
  }

  const getJob = async (app: AsyncFirstApp, id: string, headers = ALICE) => {
    const response = await app.server.inject({ method: 'GET', url: `/jobs/${id}`, headers });
    return { status: response.statusCode, job: response.json() as JobView };
  };

  const indexOf = (job: { id?: string }, title: string) => ({ body: { report: job.id ?? '', title, sha256: SHA } });

  it("stores a succeeded job's follow-ups: GET /jobs/{id} shows them as its children, each child its parent, in the parent's principal, and they run", async () => {
    const app = await start(async (_input, context) => {
      context.enqueue('indexReport', indexOf(context.job ?? {}, 'First Report'), { key: 'first' });
      context.enqueue('indexReport', indexOf(context.job ?? {}, 'second'));
      return REPORT;
    });
    const id = await submit(app, 'parent');
    const parent = (await waitForJob(app, id)) as JobView;
    expect(parent).toMatchObject({ status: 'succeeded', result: REPORT });
    expect(parent.children).toHaveLength(2);
    const [first, second] = parent.children as [string, string];
    for (const child of [first, second]) {
      const done = (await waitForJob(app, child)) as JobView;
      expect(done).toMatchObject({ operation: 'indexReport', status: 'succeeded', parent: id });
      expect(done.children).toBeUndefined();
      // Alice's, as the parent is: another principal does not see it.
      expect((await getJob(app, child, BOB)).status).toBe(404);
    }
    expect(((await getJob(app, first)).job.result as { terms: string[] }).terms).toEqual(['first', 'report']);
    expect(((await getJob(app, second)).job.result as { terms: string[] }).terms).toEqual(['second']);
    // The keys are derived from the parent: the one given, and the call's position.
    expect((await app.store.getIdempotencyRecord('alice', 'indexReport', followUpKey(id, 'first', 1)))?.jobId).toBe(first);
    expect((await app.store.getIdempotencyRecord('alice', 'indexReport', followUpKey(id, undefined, 2)))?.jobId).toBe(second);
    expect(await app.store.getIdempotencyRecord('alice', 'indexReport', `followup:${id}#2`)).toBeDefined();
  });

  it("stores none for a parent that fails after calling ctx.enqueue, and makes each child of a retried parent once: a failed attempt's follow-ups are dropped", async () => {
    const app = await start(async (input, context) => {
      const { title } = input.body as { title: string };
      const attempt = context.job?.attempt ?? 0;
      context.enqueue('indexReport', indexOf(context.job ?? {}, `${title} ${attempt}`), { key: 'index' });
      if (title === 'doomed') throw new Error('no source');
      if (attempt === 1) {
        context.enqueue('indexReport', indexOf(context.job ?? {}, 'only the first attempt'), { key: 'extra' });
        throw new Error('busy, try again');
      }
      return REPORT;
    });
    const doomed = await submit(app, 'doomed');
    const flaky = await submit(app, 'flaky');
    expect(await waitForJob(app, doomed)).toMatchObject({ status: 'failed', attempts: 3 });
    const retried = (await waitForJob(app, flaky)) as JobView;
    expect(retried).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect((await getJob(app, doomed)).job.children).toBeUndefined();
    expect(retried.children).toHaveLength(1);
    const child = (await waitForJob(app, retried.children?.[0] as string)) as JobView;
    expect(child).toMatchObject({ parent: flaky, status: 'succeeded', result: { terms: ['flaky', '2'] } });
    // Nothing else was stored: the parents and the one child.
    const page = await app.store.listJobs({ limit: 50 });
    expect(page.jobs.map((job) => job.operation).sort()).toEqual(['createReport', 'createReport', 'indexReport']);
    expect(await app.store.getIdempotencyRecord('alice', 'indexReport', followUpKey(flaky, 'extra', 2))).toBeUndefined();
  });

  it('holds a follow-up with runAt back until then (its nextAttemptAt), and refuses a runAt past NOT_BEFORE_MAX_SECONDS in the handler', async () => {
    const runAt = Date.now() + 3_600_000;
    const app = await start(async (input, context) => {
      const { title } = input.body as { title: string };
      context.enqueue('indexReport', indexOf(context.job ?? {}, title), { runAt: title === 'too late' ? Date.now() + 400 * 86_400_000 : new Date(runAt) });
      return REPORT;
    }, 1);
    const id = await submit(app, 'later');
    const parent = (await waitForJob(app, id)) as JobView;
    const { job: child } = await getJob(app, parent.children?.[0] as string);
    expect(child).toMatchObject({ status: 'queued', attempts: 0, parent: id, nextAttemptAt: new Date(runAt).toISOString() });

    const refused = (await waitForJob(app, await submit(app, 'too late'))) as JobView;
    expect(refused.status).toBe('failed');
    expect(refused.error?.detail).toMatch(/^runAt asks for a start \d+ s from now; this server accepts at most \d+ s ahead \(NOT_BEFORE_MAX_SECONDS\)\.$/);
    expect(refused.children).toBeUndefined();
  });

  it("throws in the handler for input the contract refuses (validation-failed, listing the violations), a synchronous or unknown operation, and a key used twice in one attempt; the attempt fails as the handler's", async () => {
    const thrown: unknown[] = [];
    const app = await start(async (input, context) => {
      const { title } = input.body as { title: string };
      const attempts: Array<() => void> = [
        () => context.enqueue('indexReport', { body: { report: 'r', title: '' } }),
        () => context.enqueue('estimateReport', { query: { rows: 1 } }),
        () => context.enqueue('noSuchOperation', {}),
        () => context.enqueue('indexReport', indexOf({ id: 'r' }, 'x'), { key: '' }),
      ];
      if (title === 'caught') {
        for (const call of attempts) {
          try {
            call();
          } catch (error) {
            thrown.push(error);
          }
        }
        context.enqueue('indexReport', indexOf({ id: 'r' }, 'once'), { key: 'twice' });
        try {
          context.enqueue('indexReport', indexOf({ id: 'r' }, 'again'), { key: 'twice' });
        } catch (error) {
          thrown.push(error);
        }
        return REPORT;
      }
      attempts[0]?.();
      return REPORT;
    }, 1);
    const uncaught = (await waitForJob(app, await submit(app, 'uncaught'))) as JobView;
    expect(uncaught.status).toBe('failed');
    expect(uncaught.error?.type).toBe(`${PROBLEM_TYPE_BASE}job-handler-failed`);
    expect(uncaught.error?.detail).toBe('2 violations of the contract for indexReport; first: body /sha256 is required.');
    expect(uncaught.children).toBeUndefined();

    const caught = (await waitForJob(app, await submit(app, 'caught'))) as JobView;
    expect(caught.status).toBe('succeeded');
    expect(caught.children).toHaveLength(1);
    const [invalid, synchronous, unknown, emptyKey, twice] = thrown as [ProblemError, Error, Error, Error, Error];
    expect(invalid).toBeInstanceOf(ProblemError);
    expect(invalid.problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}validation-failed`, status: 400 });
    expect(invalid.problem.errors).toEqual(
      expect.arrayContaining([{ in: 'body', pointer: '/sha256', message: 'is required' }, expect.objectContaining({ in: 'body', pointer: '/title' })]),
    );
    expect(synchronous).toEqual(new TypeError('ctx.enqueue: "estimateReport" is not an asynchronous operation of the contract'));
    expect(unknown).toEqual(new TypeError('ctx.enqueue: "noSuchOperation" is not an asynchronous operation of the contract'));
    expect(emptyKey).toEqual(new TypeError('ctx.enqueue: key must be 1 to 200 printable ASCII characters'));
    expect(twice).toEqual(new TypeError('ctx.enqueue: this attempt already enqueued a follow-up with key "twice"'));
  });
});

describe('the demo: a report asked for with index: true is indexed by a follow-up', () => {
  it('stores an indexReport job with the report’s success, which indexes its title; a report without index has no children', async () => {
    const service = await createTestApp(demoOptions({ apiKeys: 'alice:key-a' }));
    try {
      const indexed = await service.submit('POST', '/reports', { title: 'Quarterly Sales, Q3', rows: 20, index: true }, ALICE);
      const plain = await service.submit('POST', '/reports', { title: 'plain', rows: 20 }, ALICE);
      expect([indexed.status, plain.status]).toEqual([202, 202]);
      await service.runUntilIdle();
      const report = await service.job(indexed.jobId as string, ALICE);
      expect(report).toMatchObject({ status: 'succeeded', children: [expect.any(String)] });
      const child = await service.job((report.children as string[])[0] as string, ALICE);
      expect(child).toMatchObject({
        operation: 'indexReport',
        status: 'succeeded',
        parent: indexed.jobId,
        result: { report: indexed.jobId, sha256: (report.result as { sha256: string }).sha256, terms: ['quarterly', 'sales', 'q3'] },
      });
      expect((await service.job(plain.jobId as string, ALICE)).children).toBeUndefined();
      expect((await service.app.store.countJobs()).map(({ operation, status, count }) => [operation, status, count])).toEqual([
        ['createReport', 'succeeded', 2],
        ['indexReport', 'succeeded', 1],
      ]);
    } finally {
      await service.close();
    }
  });

  it("runHandler records the handler's follow-ups, checked against the contract", async () => {
    const run = await runHandler(demoOptions({ apiKeys: 'alice:key-a' }), 'createReport', { body: { title: 'Q3 sales', rows: 3, index: true } });
    expect(run.followUps).toEqual([
      {
        operationId: 'indexReport',
        input: { body: { report: expect.stringMatching(/^test-/), title: 'Q3 sales', sha256: (run.result as { sha256: string }).sha256 } },
        options: { key: 'index' },
      },
    ]);
    expect((await runHandler(demoOptions({ apiKeys: 'alice:key-a' }), 'createReport', { body: { title: 'Q3 sales', rows: 3 } })).followUps).toEqual([]);
    await expect(runHandler(demoOptions({ apiKeys: 'alice:key-a' }), 'indexReport', { body: { report: 'r', title: 't', sha256: SHA } })).resolves.toMatchObject(
      {
        result: { report: 'r', sha256: SHA, terms: ['t'] },
      },
    );
  });
});

describe('what a follow-up inherits', () => {
  it("takes the parent's principal and, with no span active in the handler (TRACING=off), the parent's trace context; its key comes from the parent", async () => {
    const document = await readContractFile(CONTRACT_PATH);
    const plan = makeFollowUpPlanner({
      operations: describeOperations(await loadContract(document, 'openapi.yaml')),
      validators: new ContractValidators(document.openapi),
      maxAttempts: (operationId) => (operationId === 'indexReport' ? 4 : 3),
      keyRetentionMs: () => 5000,
      notBeforeMaxSeconds: 60,
    });
    const trace = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
    const parent: ClaimedJob = {
      id: 'PARENT',
      principal: 'carol',
      operation: 'createReport',
      input: '{}',
      attempts: 2,
      maxAttempts: 3,
      fence: 2,
      createdAt: 0,
    };
    const body = { report: 'PARENT', title: 't', sha256: SHA };
    expect(plan({ ...parent, traceContext: trace }, 'indexReport', { body }, { key: 'k' }, 1)).toEqual({
      principal: 'carol',
      operation: 'indexReport',
      key: 'followup:PARENT:k',
      fingerprint: expect.any(String),
      input: JSON.stringify({ body: { report: 'PARENT', sha256: SHA, title: 't' }, params: {}, query: {} }),
      maxAttempts: 4,
      traceContext: trace,
      keyRetentionMs: 5000,
    });
    const untraced = plan(parent, 'indexReport', { body }, {}, 3);
    expect(untraced.key).toBe('followup:PARENT#3');
    expect(untraced.traceContext).toBeUndefined();
  });
});
