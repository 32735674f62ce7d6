import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import { ContractError, readContractFile } from '../src/contract/load.js';
import type { ScheduleDefinition } from '../src/contract/schedules.js';
import { demoSecurity, parseApiKeys, reportHandlers } from '../src/demo/service.js';
import type { AnyHandler, HandlerContext } from '../src/handlers.js';
import { tempDir } from './helpers.js';
import { CONTRACT_PATH, sleep, waitFor } from './worker-test-support.js';

/* Schedules in one process: what a tick's handler is given, who takes ticks, and the start errors of a bad schedule. */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const EVERY_SECOND: ScheduleDefinition = { name: 'tick', operationId: 'createReport', cron: '* * * * * *', input: { title: 'scheduled', rows: 3 } };

async function start(options: {
  schedules?: ScheduleDefinition[];
  declared?: unknown;
  createReport?: AnyHandler;
  workerConcurrency?: number;
}): Promise<AsyncFirstApp> {
  const { dbPath, cleanup } = tempDir();
  cleanups.push(cleanup);
  const contract = await readContractFile(CONTRACT_PATH);
  if (options.declared !== undefined) contract['x-asyncfirst-schedules'] = options.declared;
  const app = await createAsyncFirst({
    contract,
    handlers: {
      createReport: options.createReport ?? reportHandlers.createReport,
      estimateReport: reportHandlers.estimateReport,
      indexReport: reportHandlers.indexReport,
    },
    security: demoSecurity(parseApiKeys('alice:key-a')),
    ...(options.schedules ? { schedules: options.schedules } : {}),
    config: { databaseUrl: dbPath, logLevel: 'silent', pollIntervalMs: 20, workerConcurrency: options.workerConcurrency ?? 4 },
  });
  cleanups.push(() => app.close());
  return app;
}

async function startError(options: Parameters<typeof start>[0]): Promise<string> {
  const error = await start(options).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ContractError);
  return (error as ContractError).message;
}

describe('a tick', () => {
  it("runs the operation's handler with the schedule's body and context.schedule { name, tick }, once per tick, under the key schedule:<name>:<tick>", async () => {
    const seen: Array<{ body: unknown; schedule: HandlerContext['schedule']; jobId: string | undefined }> = [];
    const app = await start({
      declared: [EVERY_SECOND],
      createReport: (input, context) => {
        seen.push({ body: input.body, schedule: context.schedule, jobId: context.job?.id });
        return { title: 't', format: 'csv', rowCount: 3, bytes: 0, sha256: '0'.repeat(64) };
      },
    });
    app.startBackground();
    await waitFor('two ticks', () => (seen.length >= 2 ? true : undefined), 10_000);
    const [first, second] = seen as [(typeof seen)[0], (typeof seen)[0]];
    expect(first.body).toEqual({ title: 'scheduled', rows: 3 });
    expect(first.schedule?.name).toBe('tick');
    expect(first.schedule?.tick).toBeInstanceOf(Date);
    expect(first.schedule!.tick.getTime() % 1000).toBe(0);
    expect(second.schedule!.tick.getTime() - first.schedule!.tick.getTime()).toBe(1000);
    const key = await app.store.getIdempotencyRecord('anonymous', 'createReport', `schedule:tick:${first.schedule!.tick.toISOString()}`);
    expect(key?.jobId).toBe(first.jobId);
    const [row] = await app.store.listSchedules();
    expect(row).toMatchObject({ name: 'tick', operation: 'createReport', cron: '* * * * * *', timezone: 'UTC' });
    expect(row!.lastTick).toBeGreaterThanOrEqual(second.schedule!.tick.getTime());
  });

  it('shows on GET /jobs/{id} the schedule and tick that made the job (as in the served Job schema); a submitted job has none', async () => {
    const seen: Array<{ tick: string; jobId: string | undefined }> = [];
    const app = await start({
      declared: [{ ...EVERY_SECOND, principal: 'alice' }],
      createReport: (_input, context) => {
        if (context.schedule) seen.push({ tick: context.schedule.tick.toISOString(), jobId: context.job?.id });
        return { title: 't', format: 'csv', rowCount: 3, bytes: 0, sha256: '0'.repeat(64) };
      },
    });
    app.startBackground();
    const ticked = await waitFor('a tick', () => seen[0], 10_000);
    const alice = { 'x-api-key': 'key-a' };
    const shown = await waitFor(
      'the tick job to succeed',
      async () => {
        const response = await app.server.inject({ url: `/jobs/${ticked.jobId}`, headers: alice });
        return response.json().status === 'succeeded' ? response : undefined;
      },
      10_000,
    );
    expect(shown.statusCode).toBe(200);
    expect(shown.json()).toMatchObject({ id: ticked.jobId, operation: 'createReport', schedule: { name: 'tick', tick: ticked.tick } });
    const submitted = await app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { ...alice, 'content-type': 'application/json', 'idempotency-key': 'by-hand' },
      payload: { title: 'by hand', rows: 1 },
    });
    expect(submitted.statusCode).toBe(202);
    const byHand = await app.server.inject({ url: `/jobs/${submitted.json().job_id}`, headers: alice });
    expect(byHand.statusCode).toBe(200);
    expect(byHand.json()).not.toHaveProperty('schedule');
    // The served Job schema declares it.
    const served = (await app.server.inject({ url: '/openapi.json' })).json() as { components: { schemas: { Job: { properties: Record<string, unknown> } } } };
    expect(served.components.schemas.Job.properties.schedule).toMatchObject({ type: 'object', required: ['name', 'tick'] });
  });

  it('is taken only by a process that runs a worker: WORKER_CONCURRENCY=0 declares nothing and submits nothing', async () => {
    const app = await start({ schedules: [EVERY_SECOND], workerConcurrency: 0 });
    app.startBackground();
    await sleep(2200);
    expect(await app.store.listSchedules()).toEqual([]);
    expect((await app.store.listJobs({})).jobs).toEqual([]);
  });
});

describe('a bad schedule stops the start, naming the schedule and the field', () => {
  const cases: Array<[string, Partial<ScheduleDefinition> & Record<string, unknown>, RegExp]> = [
    ['an unknown operation', { operationId: 'nope' }, /schedules\[0\] \(tick\)\.operationId: no operation has the operationId "nope"/],
    ['a synchronous operation', { operationId: 'estimateReport' }, /\(tick\)\.operationId: estimateReport (is synchronous|requires the parameter)/],
    ['five cron fields', { cron: '* * * * *' }, /\(tick\)\.cron must have six fields, seconds first/],
    ['a cron croner cannot read', { cron: '61 * * * * *' }, /\(tick\)\.cron: "61 \* \* \* \* \*" is not a cron expression/],
    ['an unknown time zone', { timezone: 'Mars/Olympus' }, /\(tick\)\.timezone: "Mars\/Olympus" is not an IANA time zone/],
    ['an input against the body schema', { input: { title: 'x', rows: 0 } }, /\(tick\)\.input\.rows must be >= 1 \(the request body schema of createReport\)/],
    ['no input for a required body', { input: undefined }, /\(tick\)\.input is required: createReport requires a request body/],
    ['a bad backfill', { backfill: 'an hour' }, /\(tick\)\.backfill must be seconds .* or an ISO 8601 duration/],
    ['an unknown field', { every: 5 }, /schedules\[0\]\.every is not a known field/],
  ];
  for (const [what, change, message] of cases) {
    it(`${what} (in code)`, async () => {
      expect(await startError({ schedules: [{ ...EVERY_SECOND, ...change } as ScheduleDefinition] })).toMatch(message);
    });
  }

  it('in the contract: the message names the extension, the schedule and the field', async () => {
    expect(await startError({ declared: [{ ...EVERY_SECOND, timezone: 'Nowhere' }] })).toMatch(
      /: x-asyncfirst-schedules\[0\] \(tick\)\.timezone: "Nowhere" is not an IANA time zone/,
    );
    expect(await startError({ declared: { name: 'tick' } })).toMatch(/x-asyncfirst-schedules must be a list of schedules/);
    expect(await startError({ declared: [EVERY_SECOND, EVERY_SECOND] })).toMatch(
      /x-asyncfirst-schedules\[1\]\.name: "tick" is the name of an earlier schedule/,
    );
    expect(await startError({ declared: [{ ...EVERY_SECOND, name: 'no spaces' }] })).toMatch(/x-asyncfirst-schedules\[0\]\.name must be 1 to 100 letters/);
  });
});
