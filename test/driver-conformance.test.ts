import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { JOB_STATES, type JobState } from '../src/core/job-states.js';
import { problem } from '../src/core/problems.js';
import { JobEngine } from '../src/engine/job-engine.js';
import type { Driver } from '../src/store/driver.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import type { AcceptRequest, ClaimedJob, Store } from '../src/store/store.js';
import { Sweeper } from '../src/worker/sweeper.js';
import { acceptRequest, type DatabaseUnderTest, driversUnderTest, INPUT } from './driver-support.js';
import { freshSchema, queryPostgres, TEST_DATABASE_URL } from './postgres-support.js';
import { sleep } from './worker-test-support.js';

/*
 * The storage behaviours every driver must have, run against each: the same engine over SQLite
 * and over PostgreSQL must accept, replay, claim, fence, cancel, retry, record events and
 * deliveries, sweep and announce alike. A second engine on the same database stands in for a
 * second process.
 */

const DRIVERS = driversUnderTest('af_conformance');

describe.each(DRIVERS)('the $name driver', ({ database }) => {
  let db: DatabaseUnderTest;
  const engines: Store[] = [];
  const open = async () => {
    const engine = await db.open();
    engines.push(engine);
    return engine;
  };
  const setup = async () => {
    db = database();
    return open();
  };
  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.close();
    await db.cleanup();
  });

  async function acceptOne(engine: Store, key: string, overrides: Partial<AcceptRequest> = {}): Promise<string> {
    const outcome = await engine.acceptJob(acceptRequest(key, overrides));
    expect(outcome.kind).toBe('created');
    return outcome.jobId;
  }

  async function claimOne(engine: Store, owner = 'worker-a', leaseMs = 30_000): Promise<ClaimedJob> {
    const [claimed] = await engine.claimJobs({ owner, limit: 1, now: Date.now(), leaseMs });
    if (!claimed) throw new Error('nothing was claimed');
    return claimed;
  }

  it('accepts a job: queued, version 0, readable by its principal only', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'k1');
    const job = await engine.getJob('alice', id);
    expect(job).toMatchObject({ id, principal: 'alice', operation: 'createReport', status: 'queued', attempts: 0, maxAttempts: 3, version: 0 });
    expect(await engine.getJob('bob', id)).toBeUndefined();
    expect(await engine.getJob('alice', '01ARZ3NDEKTSV4RRFFQ69G5FAV')).toBeUndefined();
    expect(await engine.jobPrincipal(id)).toBe('alice');
    expect(await engine.jobPrincipal('01ARZ3NDEKTSV4RRFFQ69G5FAV')).toBeUndefined();
  });

  it('replays a key with the same fingerprint and refuses it with another, leaving the record as it was', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'k1');
    expect(await engine.acceptJob(acceptRequest('k1'))).toEqual({ kind: 'replayed', jobId: id });
    expect(await engine.acceptJob(acceptRequest('k1', { fingerprint: 'other' }))).toEqual({ kind: 'mismatch', jobId: id });
    expect(await engine.acceptJob(acceptRequest('k1'))).toEqual({ kind: 'replayed', jobId: id });
    // Keys are scoped by principal and operation.
    expect((await engine.acceptJob(acceptRequest('k1', { principal: 'bob' }))).kind).toBe('created');
    expect((await engine.acceptJob(acceptRequest('k1', { operation: 'other' }))).kind).toBe('created');
  });

  it('accepts a key with a lone UTF-16 surrogate from code, in a batch beside other keys, and replays it', async () => {
    const engine = await setup();
    const [odd, plain] = await Promise.all([
      engine.acceptJob(acceptRequest('half \ud800 a pair', { fingerprint: 'fp-odd' })),
      engine.acceptJob(acceptRequest('plain')),
    ]);
    expect(odd?.kind).toBe('created');
    expect(plain?.kind).toBe('created');
    expect(await engine.acceptJob(acceptRequest('half \ud800 a pair', { fingerprint: 'fp-odd' }))).toEqual({ kind: 'replayed', jobId: odd?.jobId });
  });

  it('makes exactly one job of many concurrent submissions with one key, from two processes', async () => {
    const first = await setup();
    const second = await open();
    const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? first : second).acceptJob(acceptRequest('same'))));
    const created = outcomes.filter((outcome) => outcome.kind === 'created');
    expect(created).toHaveLength(1);
    const jobIds = new Set(outcomes.map((outcome) => outcome.jobId));
    expect(jobIds).toEqual(new Set([created[0]?.jobId]));
    expect(outcomes.every((outcome) => outcome.kind === 'created' || outcome.kind === 'replayed')).toBe(true);
  });

  it('settles one turn of submissions as a batch: a repeated key in the same turn replays or mismatches the first', async () => {
    const engine = await setup();
    const outcomes = await Promise.all([
      engine.acceptJob(acceptRequest('turn')),
      engine.acceptJob(acceptRequest('turn', { fingerprint: 'other' })),
      engine.acceptJob(acceptRequest('turn')),
      engine.acceptJob(acceptRequest('another')),
    ]);
    const [first, mismatch, replay, another] = outcomes;
    expect(first?.kind).toBe('created');
    expect(mismatch).toEqual({ kind: 'mismatch', jobId: first?.jobId });
    expect(replay).toEqual({ kind: 'replayed', jobId: first?.jobId });
    expect(another?.kind).toBe('created');
    expect(another?.jobId).not.toBe(first?.jobId);
  });

  it('replays a true repeat in the same turn as a mismatch of a key bound earlier', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'bound');
    const [mismatch, replay] = await Promise.all([
      engine.acceptJob(acceptRequest('bound', { fingerprint: 'other' })),
      engine.acceptJob(acceptRequest('bound')),
    ]);
    expect(mismatch).toEqual({ kind: 'mismatch', jobId: id });
    expect(replay).toEqual({ kind: 'replayed', jobId: id });
  });

  it("refuses a stale fence's finish in the same batch as the current owner's", async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'taken-over');
    const dead = await claimOne(engine, 'dead', 100);
    await sleep(200);
    const live = await claimOne(engine, 'live');
    expect(live.fence).toBe(dead.fence + 1);
    const answers = await Promise.all([
      engine.finishJob(id, dead.fence, { status: 'succeeded', result: '{"who":"dead"}' }, Date.now()),
      engine.finishJob(id, live.fence, { status: 'succeeded', result: '{"who":"live"}' }, Date.now()),
    ]);
    expect(answers).toEqual([false, true]);
    expect(await engine.getJob('alice', id)).toMatchObject({ status: 'succeeded', result: '{"who":"live"}' });
  });

  it('finishes one turn of jobs as a batch, refusing only the stale fence among them', async () => {
    const engine = await setup();
    const ids = [await acceptOne(engine, 'f1'), await acceptOne(engine, 'f2'), await acceptOne(engine, 'f3')];
    const claimed = await engine.claimJobs({ owner: 'w', limit: 3, now: Date.now(), leaseMs: 30_000 });
    expect(claimed.map((job) => job.id).sort()).toEqual([...ids].sort());
    const fenceOf = (id: string) => (claimed.find((job) => job.id === id) as ClaimedJob).fence;
    const answers = await Promise.all([
      engine.finishJob(ids[0] as string, fenceOf(ids[0] as string), { status: 'succeeded', result: '{"n":1}' }, Date.now()),
      engine.finishJob(ids[1] as string, fenceOf(ids[1] as string) + 1, { status: 'succeeded', result: '{"n":2}' }, Date.now()),
      engine.finishJob(ids[2] as string, fenceOf(ids[2] as string), { status: 'failed', error: problem('jobHandlerFailed', 'boom') }, Date.now()),
    ]);
    expect(answers).toEqual([true, false, true]);
    expect(await engine.getJob('alice', ids[0] as string)).toMatchObject({ status: 'succeeded', result: '{"n":1}', version: 2 });
    expect(await engine.getJob('alice', ids[1] as string)).toMatchObject({ status: 'running', version: 1 });
    expect(await engine.getJob('alice', ids[2] as string)).toMatchObject({ status: 'failed', error: { detail: 'boom' }, version: 2 });
  });

  it('lets an expired key record make a new job', async () => {
    const engine = await setup();
    const now = Date.now();
    const old = await acceptOne(engine, 'k1', { now: now - 10_000, keyExpiresAt: now - 1 });
    const fresh = await engine.acceptJob(acceptRequest('k1', { fingerprint: 'changed' }));
    expect(fresh.kind).toBe('created');
    expect(fresh.jobId).not.toBe(old);
    expect(await engine.acceptJob(acceptRequest('k1', { fingerprint: 'changed' }))).toEqual({ kind: 'replayed', jobId: fresh.jobId });
  });

  it('claims due jobs oldest first with a lease and fence 1, records job.running as version 1, and leaves jobs not yet due', async () => {
    const engine = await setup();
    const now = Date.now();
    const a = await acceptOne(engine, 'a', { now: now - 2 });
    const b = await acceptOne(engine, 'b', { now: now - 1 });
    await acceptOne(engine, 'later', { now: now + 60_000 });
    const claimed = await engine.claimJobs({ owner: 'worker-a', limit: 10, now, leaseMs: 30_000 });
    expect(claimed.map((job) => job.id)).toEqual([a, b]);
    expect(claimed[0]).toMatchObject({ id: a, attempts: 1, fence: 1, input: INPUT, principal: 'alice', operation: 'createReport' });
    expect(claimed[0]?.takenOverFrom).toBeUndefined();
    const events = await engine.getJobEvents('alice', a, 0);
    expect(events?.job).toMatchObject({ status: 'running', version: 1 });
    expect(events?.events.map((event) => [event.id, event.type])).toEqual([[1, 'job.running']]);
    expect(JSON.parse(events?.events[0]?.data ?? '{}')).toMatchObject({ id: a, status: 'running', attempts: 1 });
    expect(await engine.claimJobs({ owner: 'worker-a', limit: 10, now, leaseMs: 30_000 })).toEqual([]);
  });

  it("holds a job accepted with a later run time back until then, alone or in a batch, and its acceptance's event in the log shows that time", async () => {
    const first = await setup();
    const second = await open();
    const now = Date.now();
    const cursor = await first.eventCursor();
    const later = await acceptOne(first, 'later', { now, runAt: now + 60_000 });
    // Two in one turn: the driver stores them as one batch.
    const [batched, plain] = await Promise.all([
      first.acceptJob(acceptRequest('batched', { now, runAt: now + 30_000 })),
      first.acceptJob(acceptRequest('plain', { now })),
    ]);
    expect(await first.getJob('alice', later)).toMatchObject({ status: 'queued', runAt: now + 60_000, createdAt: now, version: 0 });
    expect(await first.getJob('alice', batched.jobId)).toMatchObject({ status: 'queued', runAt: now + 30_000 });
    const claimAt = async (at: number) => (await second.claimJobs({ owner: 'worker-b', limit: 10, now: at, leaseMs: 30_000 })).map((job) => job.id);
    expect(await claimAt(now + 29_999)).toEqual([plain.jobId]);
    expect(await claimAt(now + 30_000)).toEqual([batched.jobId]);
    expect(await claimAt(now + 59_999)).toEqual([]);
    expect(await claimAt(now + 60_000)).toEqual([later]);
    let slice = await first.readEvents({ after: cursor, statuses: ['queued'] });
    // Another suite's open transaction on the shared PostgreSQL cluster can hold committed events back for a moment.
    for (let tries = 0; slice.heldBack && tries < 100; tries++) {
      await sleep(50);
      slice = await first.readEvents({ after: cursor, statuses: ['queued'] });
    }
    const nextAttemptAt = Object.fromEntries(slice.events.map((event) => [event.jobId, (JSON.parse(event.data) as { nextAttemptAt: string }).nextAttemptAt]));
    expect(nextAttemptAt).toEqual({
      [later]: new Date(now + 60_000).toISOString(),
      [batched.jobId]: new Date(now + 30_000).toISOString(),
      [plain.jobId]: new Date(now).toISOString(),
    });
  });

  it('never lets two processes claim the same job', async () => {
    const first = await setup();
    const second = await open();
    const ids = new Set<string>();
    for (let i = 0; i < 60; i++) ids.add(await acceptOne(first, `j${i}`));
    const claimed: string[] = [];
    await Promise.all(
      [first, second, first, second].map(async (engine, lane) => {
        for (;;) {
          const batch = await engine.claimJobs({ owner: `lane-${lane}`, limit: 7, now: Date.now(), leaseMs: 30_000 });
          if (batch.length === 0) return;
          claimed.push(...batch.map((job) => job.id));
        }
      }),
    );
    expect(claimed).toHaveLength(60);
    expect(new Set(claimed)).toEqual(ids);
  });

  it('finishes a job with its fence and refuses a stale one, writing nothing', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'k1');
    const claimed = await claimOne(engine);
    expect(await engine.finishJob(id, claimed.fence + 1, { status: 'succeeded', result: '{"stale":true}' }, Date.now())).toBe(false);
    expect(await engine.finishJob(id, claimed.fence, { status: 'succeeded', result: '{"ok":1}' }, Date.now())).toBe(true);
    expect(await engine.finishJob(id, claimed.fence, { status: 'failed', error: problem('jobHandlerFailed', 'late') }, Date.now())).toBe(false);
    const job = await engine.getJob('alice', id);
    expect(job).toMatchObject({ status: 'succeeded', result: '{"ok":1}', version: 2 });
    expect(job?.finishedAt).toBeGreaterThan(0);
  });

  it('renews a held lease, reports a cancel asked, and refuses a stale fence', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'k1');
    const claimed = await claimOne(engine);
    expect(await engine.renewLease(id, claimed.fence, 30_000, Date.now())).toEqual({ held: true, cancelRequested: false });
    expect((await engine.cancelJob('alice', id, Date.now())).kind).toBe('signalled');
    expect(await engine.renewLease(id, claimed.fence, 30_000, Date.now())).toEqual({ held: true, cancelRequested: true });
    expect((await engine.renewLease(id, claimed.fence + 1, 30_000, Date.now())).held).toBe(false);
  });

  it('takes over a job whose lease expired, naming the owner that let go; the old owner is fenced off', async () => {
    const first = await setup();
    const second = await open();
    const id = await acceptOne(first, 'k1');
    const dead = await claimOne(first, 'dead-worker', 100);
    expect(await second.claimJobs({ owner: 'rescuer', limit: 1, now: Date.now(), leaseMs: 30_000 })).toEqual([]);
    await sleep(200);
    const rescued = await claimOne(second, 'rescuer');
    expect(rescued).toMatchObject({ id, attempts: 2, fence: dead.fence + 1, takenOverFrom: 'dead-worker' });
    expect(await first.finishJob(id, dead.fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(false);
    expect(await second.finishJob(id, rescued.fence, { status: 'succeeded', result: '{"ok":1}' }, Date.now())).toBe(true);
  });

  it("keeps a submission's trace context with its job: every claim of it, a takeover's too, returns it; a job submitted without one has none", async () => {
    const first = await setup();
    const second = await open();
    const traced = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'vendor=opaque,other=1' };
    const now = Date.now();
    // One turn: both go to the driver in one batch.
    const [withContext, without] = await Promise.all([
      first.acceptJob(acceptRequest('traced', { traceContext: traced, now: now - 2 })),
      first.acceptJob(acceptRequest('untraced', { now: now - 1 })),
    ]);
    const claimed = await first.claimJobs({ owner: 'dead-worker', limit: 2, now, leaseMs: 100 });
    expect(claimed.map((job) => [job.id, job.traceContext])).toEqual([
      [withContext?.jobId, traced],
      [without?.jobId, undefined],
    ]);
    expect(claimed[1]).not.toHaveProperty('traceContext');
    await sleep(200);
    const rescued = await second.claimJobs({ owner: 'rescuer', limit: 2, now: Date.now(), leaseMs: 30_000 });
    expect(rescued.map((job) => [job.id, job.traceContext, job.takenOverFrom])).toEqual([
      [withContext?.jobId, traced, 'dead-worker'],
      [without?.jobId, undefined, 'dead-worker'],
    ]);
    // A job accepted alone (not in a batch) keeps it too.
    const alone = await acceptOne(second, 'alone', { traceContext: { traceparent: traced.traceparent } });
    expect(await claimOne(second)).toMatchObject({ id: alone, traceContext: { traceparent: traced.traceparent } });
  });

  it('fails an abandoned job with no attempts left as job-lease-expired, and ends an abandoned one being canceled as canceled', async () => {
    const engine = await setup();
    const spent = await acceptOne(engine, 'spent', { maxAttempts: 1 });
    await claimOne(engine, 'dead', 100);
    const canceling = await acceptOne(engine, 'canceling');
    await claimOne(engine, 'dead', 100);
    expect((await engine.cancelJob('alice', canceling, Date.now())).kind).toBe('signalled');
    await sleep(200);
    expect(await engine.claimJobs({ owner: 'rescuer', limit: 5, now: Date.now(), leaseMs: 30_000 })).toEqual([]);
    expect(await engine.getJob('alice', spent)).toMatchObject({ status: 'failed', error: { type: 'urn:asyncfirst:problem:job-lease-expired' } });
    expect(await engine.getJob('alice', canceling)).toMatchObject({ status: 'canceled', error: { type: 'urn:asyncfirst:problem:job-canceled' } });
  });

  it('cancels a queued job at once, and lets a cancel asked of a running job win over the outcome its handler then reports', async () => {
    const engine = await setup();
    const queued = await acceptOne(engine, 'queued', { now: Date.now() + 60_000 });
    const canceled = await engine.cancelJob('alice', queued, Date.now());
    expect(canceled.kind).toBe('canceled');
    expect((await engine.getJobEvents('alice', queued, 0))?.events.map((event) => event.type)).toEqual(['job.canceled']);
    expect((await engine.cancelJob('alice', queued, Date.now())).kind).toBe('finished');
    expect((await engine.cancelJob('bob', queued, Date.now())).kind).toBe('not-found');

    const running = await acceptOne(engine, 'running');
    const claimed = await claimOne(engine);
    expect((await engine.cancelJob('alice', running, Date.now())).kind).toBe('signalled');
    expect(await engine.finishJob(running, claimed.fence, { status: 'succeeded', result: '{"discarded":true}' }, Date.now())).toBe(true);
    const job = await engine.getJob('alice', running);
    expect(job).toMatchObject({ status: 'canceled', error: { type: 'urn:asyncfirst:problem:job-canceled' } });
    expect(job?.result).toBeUndefined();
    expect((await engine.getJobEvents('alice', running, 0))?.events.map((event) => event.type)).toEqual(['job.running', 'job.canceled']);
  });

  it('retries with the attempt counted and the error kept, releases without counting it, and ends canceled instead when a cancel was asked', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'k1');
    const first = await claimOne(engine);
    const runAt = Date.now() + 60_000;
    expect(await engine.retryJob(id, first.fence, problem('jobHandlerFailed', 'boom'), runAt, Date.now())).toBe(true);
    expect(await engine.getJob('alice', id)).toMatchObject({ status: 'queued', attempts: 1, runAt, error: { detail: 'boom' } });
    expect(await engine.claimJobs({ owner: 'w', limit: 1, now: Date.now(), leaseMs: 30_000 })).toEqual([]);
    const second = (await engine.claimJobs({ owner: 'w', limit: 1, now: runAt, leaseMs: 30_000 }))[0] as ClaimedJob;
    expect(second).toMatchObject({ attempts: 2, fence: first.fence + 1 });
    expect(await engine.releaseJob(id, second.fence, Date.now())).toBe(true);
    expect(await engine.getJob('alice', id)).toMatchObject({ status: 'queued', attempts: 1 });
    const third = await claimOne(engine);
    expect((await engine.cancelJob('alice', id, Date.now())).kind).toBe('signalled');
    expect(await engine.retryJob(id, third.fence, problem('jobHandlerFailed', 'again'), Date.now(), Date.now())).toBe(true);
    expect(await engine.getJob('alice', id)).toMatchObject({ status: 'canceled' });
  });

  it('numbers events per job and returns those after a version; jobVersions names the current ones', async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'k1');
    const other = await acceptOne(engine, 'k2', { now: Date.now() + 60_000 });
    const claimed = await claimOne(engine);
    await engine.reportProgress(id, claimed.fence, { percent: 50, message: 'half' }, Date.now());
    await engine.finishJob(id, claimed.fence, { status: 'succeeded', result: '{"ok":1}' }, Date.now());
    const all = await engine.getJobEvents('alice', id, 0);
    expect(all?.events.map((event) => [event.id, event.type])).toEqual([
      [1, 'job.running'],
      [2, 'job.progress'],
      [3, 'job.succeeded'],
    ]);
    expect((await engine.getJobEvents('alice', id, 2))?.events.map((event) => event.id)).toEqual([3]);
    expect(await engine.getJobEvents('bob', id, 0)).toBeUndefined();
    expect(await engine.jobVersions([id, other, '01ARZ3NDEKTSV4RRFFQ69G5FAV'])).toEqual(
      new Map([
        [id, 3],
        [other, 0],
      ]),
    );
    // A stale fence's progress is refused and records nothing.
    expect(await engine.reportProgress(id, claimed.fence, { percent: 90 }, Date.now())).toBe(false);
    expect((await engine.getJob('alice', id))?.version).toBe(3);
  });

  it('stores a webhook delivery with the terminal change of a job that has a callback, and leases it to one sender', async () => {
    const first = await setup();
    const second = await open();
    const id = await acceptOne(first, 'k1', { callbackUrl: 'https://hooks.example.com/done' });
    const claimed = await claimOne(first);
    await first.finishJob(id, claimed.fence, { status: 'succeeded', result: '{"ok":1}' }, Date.now());
    const [a, b] = await Promise.all([
      first.claimDeliveries({ owner: 'sender-a', limit: 5, now: Date.now(), leaseMs: 30_000 }),
      second.claimDeliveries({ owner: 'sender-b', limit: 5, now: Date.now(), leaseMs: 30_000 }),
    ]);
    const deliveries = [...(a ?? []), ...(b ?? [])];
    expect(deliveries).toHaveLength(1);
    const delivery = deliveries[0];
    if (!delivery) throw new Error('no delivery');
    expect(delivery).toMatchObject({ jobId: id, url: 'https://hooks.example.com/done', eventType: 'job.succeeded', attempts: 1, status: 'pending' });
    expect(JSON.parse(delivery.payload)).toMatchObject({ type: 'job.succeeded', data: { id, status: 'succeeded', result: { ok: 1 } } });
    const owner = (a ?? []).length === 1 ? 'sender-a' : 'sender-b';
    expect(await first.recordDelivery(delivery, 'someone-else', { status: 'succeeded', httpStatus: 204 }, Date.now())).toBe(false);
    expect(await first.recordDelivery(delivery, owner, { status: 'succeeded', httpStatus: 204 }, Date.now())).toBe(true);
    const job = await first.getJob('alice', id);
    expect(job?.deliveries).toEqual([expect.objectContaining({ id: delivery.id, status: 'succeeded', lastStatus: 204, attempts: 1 })]);
  });

  it("stores a notification for each ending its operation's notifiers listen for, beside but apart from webhooks, and leases each to one sender", async () => {
    const first = await setup();
    const second = await open();
    const routes = {
      byOperation: new Map([
        [
          'createReport',
          [
            { notifier: 'ops', on: new Set(['job.failed']) },
            { notifier: 'audit', on: new Set(['job.succeeded', 'job.failed', 'job.canceled']) },
          ],
        ],
      ]),
      maxAttempts: 4,
    };
    for (const engine of [first, second]) engine.routeNotifications(routes);
    const succeeded = await acceptOne(first, 'succeeded', { callbackUrl: 'https://hooks.example.com/done' });
    const failed = await acceptOne(first, 'failed');
    const running = await acceptOne(first, 'running');
    const unrouted = await acceptOne(first, 'other', { operation: 'other' });
    const canceled = await acceptOne(first, 'canceled');
    const fences = new Map<string, number>();
    for (const claimed of await first.claimJobs({ owner: 'worker-a', limit: 4, now: Date.now(), leaseMs: 30_000 })) fences.set(claimed.id, claimed.fence);
    const fence = (id: string) => fences.get(id) ?? Number.NaN;
    await Promise.all([
      first.finishJob(succeeded, fence(succeeded), { status: 'succeeded', result: '{"ok":1}' }, Date.now()),
      first.finishJob(failed, fence(failed), { status: 'failed', error: problem('jobHandlerFailed', 'it broke') }, Date.now()),
      first.finishJob(unrouted, fence(unrouted), { status: 'succeeded', result: '{}' }, Date.now()),
      first.reportProgress(running, fence(running), { percent: 50 }, Date.now()),
    ]);
    expect((await first.cancelJob('alice', canceled, Date.now())).kind).toBe('canceled');

    // The webhook claim takes only the webhook.
    const webhooks = await first.claimDeliveries({ owner: 'sender-w', limit: 10, now: Date.now(), leaseMs: 30_000 });
    expect(webhooks.map((delivery) => [delivery.jobId, delivery.notifier])).toEqual([[succeeded, undefined]]);
    // Two processes claim the notifications at once: each exactly once; none for the running job or the unrouted operation.
    const claim = (engine: Store, owner: string) => engine.claimDeliveries({ owner, limit: 10, now: Date.now(), leaseMs: 30_000, kind: 'notification' });
    const [a, b] = await Promise.all([claim(first, 'sender-a'), claim(second, 'sender-b')]);
    const notifications = [...a, ...b];
    const summary = notifications.map(
      (notification) =>
        `${notification.jobId === succeeded ? 'succeeded' : notification.jobId === failed ? 'failed' : notification.jobId === canceled ? 'canceled' : notification.jobId} ${notification.notifier} ${notification.eventType}`,
    );
    expect(summary.sort()).toEqual(['canceled audit job.canceled', 'failed audit job.failed', 'failed ops job.failed', 'succeeded audit job.succeeded']);
    expect(await claim(second, 'sender-c')).toEqual([]);
    const ops = notifications.find((notification) => notification.notifier === 'ops');
    if (!ops) throw new Error('no notification for ops');
    expect(ops).toMatchObject({ jobId: failed, url: '', status: 'pending', attempts: 1, maxAttempts: 4 });
    expect(JSON.parse(ops.payload)).toEqual({
      id: ops.id,
      notifier: 'ops',
      type: 'job.failed',
      timestamp: expect.any(String),
      principal: 'alice',
      job: expect.objectContaining({ id: failed, operation: 'createReport', status: 'failed', error: expect.objectContaining({ detail: 'it broke' }) }),
    });

    const owner = a.includes(ops) ? 'sender-a' : 'sender-b';
    const retryAt = Date.now() + 60_000;
    expect(await second.recordDelivery(ops, owner, { status: 'pending', error: 'chat is down', nextAttemptAt: retryAt }, Date.now())).toBe(true);
    const failedJob = await second.getJob('alice', failed);
    expect(failedJob?.deliveries).toBeUndefined();
    expect(
      failedJob?.notifications?.map((notification) => [notification.notifier, notification.status, notification.attempts, notification.lastError ?? null]),
    ).toEqual(
      expect.arrayContaining([
        ['ops', 'pending', 1, 'chat is down'],
        ['audit', 'pending', 1, null],
      ]),
    );
    expect(failedJob?.notifications?.find((notification) => notification.notifier === 'ops')?.nextAttemptAt).toBe(retryAt);
    const succeededJob = await first.getJob('alice', succeeded);
    expect(succeededJob?.deliveries?.map((delivery) => delivery.url)).toEqual(['https://hooks.example.com/done']);
    expect(succeededJob?.notifications?.map((notification) => notification.notifier)).toEqual(['audit']);
    expect((await first.getJob('alice', running))?.notifications).toBeUndefined();
    expect((await first.getJob('alice', unrouted))?.notifications).toBeUndefined();
  });

  it('sweeps expired key records and jobs finished before the retention time, with their events', async () => {
    const engine = await setup();
    const now = Date.now();
    const done = await acceptOne(engine, 'done', { keyExpiresAt: now + 1 });
    const kept = await acceptOne(engine, 'kept');
    const claimed = await claimOne(engine);
    expect(claimed.id).toBe(done);
    await engine.finishJob(done, claimed.fence, { status: 'succeeded', result: '{}' }, now);
    expect(await engine.sweep(now + 10, now - 1)).toEqual({ keys: 1, jobs: 0 });
    expect(await engine.sweep(now + 10, now + 5)).toEqual({ keys: 0, jobs: 1 });
    expect(await engine.getJob('alice', done)).toBeUndefined();
    expect(await engine.getJobEvents('alice', done, 0)).toBeUndefined();
    expect((await engine.getJob('alice', kept))?.status).toBe('queued');
    // The swept job's key no longer binds: the same key makes a new job.
    expect((await engine.acceptJob(acceptRequest('done'))).kind).toBe('created');
  });

  it("sweeps an operation's finished jobs before its own time and every other operation's before the global one, across batches", async () => {
    db = database();
    const engine = await db.open({ sweepBatchSize: 2 });
    engines.push(engine);
    const base = Date.now() - 100_000;
    // Three operations, two finished jobs each (at base + 10 and base + 20) and one still queued.
    const finished = new Map<string, string[]>();
    for (const operation of ['alpha', 'createReport', 'zeta']) {
      finished.set(operation, [await acceptOne(engine, `${operation}-1`, { operation }), await acceptOne(engine, `${operation}-2`, { operation })]);
    }
    const claimed = await engine.claimJobs({ owner: 'w', limit: 10, now: Date.now(), leaseMs: 30_000 });
    expect(claimed).toHaveLength(6);
    for (const job of claimed) {
      const at = finished.get(job.operation)?.[0] === job.id ? base + 10 : base + 20;
      expect(await engine.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, at)).toBe(true);
    }
    for (const operation of finished.keys()) await acceptOne(engine, `${operation}-queued`, { operation });
    const statuses = async () => {
      const listed = await engine.listJobs({ limit: 50 });
      return listed.jobs.map((job) => `${job.operation}:${job.status}`).sort();
    };
    // alpha's time takes both of its jobs, zeta's neither; createReport's is the global time, which takes its first.
    expect(
      await engine.sweep(
        Date.now(),
        base + 15,
        new Map([
          ['alpha', base + 25],
          ['zeta', base + 5],
        ]),
      ),
    ).toEqual({ keys: 0, jobs: 3 });
    expect(await statuses()).toEqual(['alpha:queued', 'createReport:queued', 'createReport:succeeded', 'zeta:queued', 'zeta:succeeded', 'zeta:succeeded']);
    expect(await engine.getJob('alice', finished.get('createReport')?.[1] as string)).toMatchObject({ status: 'succeeded' });
    // A longer time of its own keeps an operation's jobs past the global time.
    expect(await engine.sweep(Date.now(), base + 30, new Map([['zeta', base + 15]]))).toEqual({ keys: 0, jobs: 2 });
    expect(await statuses()).toEqual(['alpha:queued', 'createReport:queued', 'zeta:queued', 'zeta:succeeded']);
    expect(await engine.countJobs()).toEqual([
      { operation: 'alpha', status: 'queued', count: 1 },
      { operation: 'createReport', status: 'queued', count: 1 },
      { operation: 'zeta', status: 'queued', count: 1 },
      { operation: 'zeta', status: 'succeeded', count: 1 },
    ]);
  });

  it("stores with a schedule's tick job the schedule and tick, which getJob shows; an accepted job has none", async () => {
    const engine = await setup();
    const now = Date.now();
    await engine.declareSchedules([{ name: 'nightly', operation: 'createReport', cron: '0 0 3 * * *', timezone: 'UTC', windowMs: 0 }], now - 1000);
    const tick = { name: 'nightly', tick: new Date(now).toISOString() };
    const taken = await engine.takeScheduleTicks({
      name: 'nightly',
      fromTick: now - 1000,
      toTick: now,
      jobs: [acceptRequest(`schedule:nightly:${tick.tick}`, { schedule: tick })],
    });
    expect(taken).toMatchObject({ won: true, lastTick: now });
    const [ticked] = taken.jobIds;
    expect(await engine.getJob('alice', ticked as string)).toMatchObject({ id: ticked, status: 'queued', schedule: tick });
    const accepted = await acceptOne(engine, 'by-hand');
    expect(await engine.getJob('alice', accepted)).not.toHaveProperty('schedule');
    // Read back by a second process too.
    expect((await (await open()).getJob('alice', ticked as string))?.schedule).toEqual(tick);
  });

  it('announces commits: jobs queued and changed in this process at once', async () => {
    const engine = await setup();
    const changed: string[] = [];
    let queued = 0;
    engine.onJobsChanged((ids) => changed.push(...ids));
    engine.onJobsQueued(() => queued++);
    const id = await acceptOne(engine, 'k1');
    expect(queued).toBeGreaterThanOrEqual(1);
    expect(changed).toContain(id);
    changed.length = 0;
    const claimed = await claimOne(engine);
    await engine.finishJob(id, claimed.fence, { status: 'succeeded', result: '{}' }, Date.now());
    expect(changed.filter((changedId) => changedId === id).length).toBeGreaterThanOrEqual(2);
  });

  it('answers a readiness round trip, and refuses work once closed with StoreUnavailableError', async () => {
    const engine = await setup();
    await expect(engine.checkReady()).resolves.toBeUndefined();
    await engine.close();
    engines.splice(engines.indexOf(engine), 1);
    await expect(engine.acceptJob(acceptRequest('late'))).rejects.toMatchObject({ name: 'StoreUnavailableError' });
    await expect(engine.checkReady()).rejects.toMatchObject({ name: 'StoreUnavailableError' });
  });

  // --- listing and counting --------------------------------------------------------------

  const idsOf = (page: { jobs: Array<{ id: string }> }) => page.jobs.map((job) => job.id);

  it("lists jobs newest first, filtered by principal, states, operation and creation time; without a principal, everyone's", async () => {
    const engine = await setup();
    const now = Date.now();
    const a1 = await acceptOne(engine, 'a1', { now: now - 3000 });
    const b1 = await acceptOne(engine, 'b1', { now: now - 2000, principal: 'bob' });
    const a2 = await acceptOne(engine, 'a2', { now: now - 1000, operation: 'other' });
    const a3 = await acceptOne(engine, 'a3', { now });
    const claimed = await claimOne(engine, 'worker-a');
    expect(claimed.id).toBe(a1);

    const all = await engine.listJobs({});
    expect(idsOf(all)).toEqual([a3, a2, b1, a1]);
    expect(all.nextCursor).toBeUndefined();
    expect(idsOf(await engine.listJobs({ principal: 'alice' }))).toEqual([a3, a2, a1]);
    expect(idsOf(await engine.listJobs({ principal: 'bob' }))).toEqual([b1]);
    expect(idsOf(await engine.listJobs({ principal: 'carol' }))).toEqual([]);
    expect(idsOf(await engine.listJobs({ statuses: ['running'] }))).toEqual([a1]);
    expect(idsOf(await engine.listJobs({ statuses: ['queued', 'running'] }))).toEqual([a3, a2, b1, a1]);
    expect(idsOf(await engine.listJobs({ statuses: ['succeeded', 'failed', 'canceled'] }))).toEqual([]);
    expect(idsOf(await engine.listJobs({ statuses: [] }))).toEqual([]);
    expect(idsOf(await engine.listJobs({ operation: 'other' }))).toEqual([a2]);
    expect(idsOf(await engine.listJobs({ createdAfter: now - 2000 }))).toEqual([a3, a2]);
    expect(idsOf(await engine.listJobs({ createdBefore: now - 1000 }))).toEqual([b1, a1]);
    expect(idsOf(await engine.listJobs({ createdAfter: now - 2500, createdBefore: now - 500 }))).toEqual([a2, b1]);
    expect(idsOf(await engine.listJobs({ principal: 'alice', operation: 'createReport', statuses: ['queued'] }))).toEqual([a3]);

    // The records are those getJob returns, with the lease of a running job and no input unless asked for.
    const [running] = (await engine.listJobs({ statuses: ['running'] })).jobs;
    expect(running).toMatchObject({ id: a1, principal: 'alice', status: 'running', attempts: 1, fence: 1, leaseOwner: 'worker-a', version: 1 });
    expect(running?.leaseExpiresInMs).toBeGreaterThan(0);
    expect(running?.leaseExpiresInMs).toBeLessThanOrEqual(30_000);
    expect(running?.input).toBeUndefined();
    const { leaseExpiresInMs: _left, ...stable } = running ?? {};
    expect(await engine.getJob('alice', a1)).toMatchObject(stable);
    const queued = (await engine.listJobs({ principal: 'bob' })).jobs[0];
    expect(queued).toMatchObject({ id: b1, principal: 'bob', status: 'queued', fence: 0, createdAt: now - 2000 });
    expect(queued?.leaseOwner).toBeUndefined();
    expect(queued?.leaseExpiresInMs).toBeUndefined();
    expect((await engine.listJobs({ principal: 'bob', withInput: true })).jobs[0]).toMatchObject({ id: b1, input: INPUT });

    // A finished job holds no lease; its fence stays the last attempt's.
    expect(await engine.finishJob(a1, claimed.fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);
    const [finished] = (await engine.listJobs({ statuses: ['succeeded'] })).jobs;
    expect(finished).toMatchObject({ id: a1, status: 'succeeded', fence: 1 });
    expect(finished?.leaseOwner).toBeUndefined();
    expect(finished?.leaseExpiresInMs).toBeUndefined();
  });

  it('lists every combination of principal and states exactly as a filter of every job would, in every state, newest first', async () => {
    const engine = await setup();
    // Twelve jobs of three principals, taken to every state: queued, running, succeeded, failed, canceled (from queued and from running).
    const principals = ['alice', 'bob', 'carol'];
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await acceptOne(engine, `every-state-${i}`, { principal: principals[i % 3] as string }));
    const claimed = await engine.claimJobs({ owner: 'worker-a', limit: 8, now: Date.now(), leaseMs: 30_000 });
    expect(claimed.map((job) => job.id)).toEqual(ids.slice(0, 8));
    const fenceOf = (id: string) => claimed.find((job) => job.id === id)?.fence ?? 0;
    const ownerOf = (i: number) => principals[i % 3] as string;
    for (const i of [0, 3])
      expect(await engine.finishJob(ids[i] as string, fenceOf(ids[i] as string), { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);
    for (const i of [1, 5]) {
      const failure = { status: 'failed' as const, error: problem('jobHandlerFailed', 'no') };
      expect(await engine.finishJob(ids[i] as string, fenceOf(ids[i] as string), failure, Date.now())).toBe(true);
    }
    expect((await engine.cancelJob(ownerOf(6), ids[6] as string, Date.now())).kind).toBe('signalled');
    expect(await engine.finishJob(ids[6] as string, fenceOf(ids[6] as string), { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);
    expect((await engine.cancelJob(ownerOf(10), ids[10] as string, Date.now())).kind).toBe('canceled');

    const every = (await engine.listJobs({ limit: 200 })).jobs;
    expect(every.map((job) => job.id)).toEqual([...ids].reverse());
    const statesSeen = new Set(every.map((job) => job.status));
    expect([...statesSeen].sort()).toEqual(['canceled', 'failed', 'queued', 'running', 'succeeded']);
    const stateSets: JobState[][] = [...JOB_STATES.map((state) => [state]), ['queued', 'running'], ['failed', 'canceled'], [...JOB_STATES]];
    for (const principal of [undefined, ...principals, 'dave']) {
      for (const statuses of [undefined, ...stateSets]) {
        const expected = every
          .filter((job) => (principal === undefined || job.principal === principal) && (statuses === undefined || statuses.includes(job.status)))
          .map((job) => job.id);
        const listed = await engine.listJobs({
          ...(principal === undefined ? {} : { principal }),
          ...(statuses === undefined ? {} : { statuses }),
          limit: 200,
        });
        expect(
          listed.jobs.map((job) => job.id),
          `principal ${principal ?? 'any'}, states ${statuses?.join('+') ?? 'any'}`,
        ).toEqual(expected);
        // Paged two at a time, the same jobs in the same order.
        const paged: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await engine.listJobs({
            ...(principal === undefined ? {} : { principal }),
            ...(statuses === undefined ? {} : { statuses }),
            limit: 2,
            ...(cursor === undefined ? {} : { cursor }),
          });
          paged.push(...page.jobs.map((job) => job.id));
          cursor = page.nextCursor;
        } while (cursor !== undefined);
        expect(paged, `paged: principal ${principal ?? 'any'}, states ${statuses?.join('+') ?? 'any'}`).toEqual(expected);
      }
    }
  });

  it("measures what a lease has left on the store's lease clock: it runs down, renewal extends it, and a lapsed one is 0 or less", async () => {
    const engine = await setup();
    const id = await acceptOne(engine, 'leased');
    const claimed = await claimOne(engine, 'worker-a', 150);
    const left = async () => (await engine.getJob('alice', id))?.leaseExpiresInMs ?? Number.NaN;
    const first = await left();
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(150);
    await sleep(30);
    expect(await left()).toBeLessThan(first);
    expect((await engine.renewLease(id, claimed.fence, 60_000, Date.now())).held).toBe(true);
    expect(await left()).toBeGreaterThan(150);
    expect((await engine.renewLease(id, claimed.fence, 100, Date.now())).held).toBe(true);
    await sleep(200);
    expect(await left()).toBeLessThanOrEqual(0);
    expect((await engine.getJob('alice', id))?.leaseOwner).toBe('worker-a');
  });

  it('pages with the cursor newest first, never repeating or skipping a job while new ones arrive', async () => {
    const engine = await setup();
    const older: string[] = [];
    for (let i = 0; i < 7; i++) {
      older.unshift(await acceptOne(engine, `old-${i}`));
      await acceptOne(engine, `bobs-old-${i}`, { principal: 'bob' });
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await engine.listJobs({ principal: 'alice', limit: 3, ...(cursor === undefined ? {} : { cursor }) });
      expect(page.jobs.length).toBeLessThanOrEqual(3);
      seen.push(...idsOf(page));
      cursor = page.nextCursor;
      pages++;
      // Jobs keep arriving (alice's and bob's) while the listing pages.
      await acceptOne(engine, `new-${pages}`);
      await acceptOne(engine, `bobs-new-${pages}`, { principal: 'bob' });
    } while (cursor !== undefined);
    expect(pages).toBe(3);
    expect(seen).toEqual(older);

    // Bob has 10 jobs: a last page that is exactly full says there is no next one.
    const first = await engine.listJobs({ principal: 'bob', limit: 5 });
    expect(idsOf(first)).toHaveLength(5);
    const second = await engine.listJobs({ principal: 'bob', limit: 5, cursor: first.nextCursor as string });
    expect(idsOf(second)).toHaveLength(5);
    expect(second.nextCursor).toBeUndefined();
    expect(new Set([...idsOf(first), ...idsOf(second)]).size).toBe(10);
  });

  it('pages 50 jobs when no limit is asked for, and at most 200 however many are asked for', async () => {
    const engine = await setup();
    const outcomes = await Promise.all(Array.from({ length: 205 }, (_, i) => engine.acceptJob(acceptRequest(`many-${i}`))));
    expect(outcomes.every((outcome) => outcome.kind === 'created')).toBe(true);
    const standard = await engine.listJobs({});
    expect(standard.jobs).toHaveLength(50);
    expect(standard.nextCursor).toBeDefined();
    const most = await engine.listJobs({ limit: 1000 });
    expect(most.jobs).toHaveLength(200);
    const rest = await engine.listJobs({ limit: 1000, cursor: most.nextCursor as string });
    expect(rest.jobs).toHaveLength(5);
    expect(rest.nextCursor).toBeUndefined();
    expect(new Set([...idsOf(most), ...idsOf(rest)])).toEqual(new Set(outcomes.map((outcome) => outcome.jobId)));
    expect((await engine.listJobs({ limit: 0 })).jobs).toHaveLength(1);
  });

  it('refuses a cursor no page gave out with the cursor-invalid problem', async () => {
    const engine = await setup();
    await acceptOne(engine, 'k1');
    await acceptOne(engine, 'k2');
    const { nextCursor } = await engine.listJobs({ limit: 1 });
    expect(nextCursor).toEqual(expect.any(String));
    const encoded = (text: string) => Buffer.from(text).toString('base64url');
    for (const cursor of [
      '',
      'not a cursor',
      `${nextCursor}!`,
      `${nextCursor}=`,
      encoded('p0'),
      encoded('p-1'),
      encoded('p1.5'),
      encoded('p99999999999999999'),
      encoded('12'),
    ]) {
      await expect(engine.listJobs({ cursor })).rejects.toMatchObject({
        name: 'ProblemError',
        problem: { type: 'urn:asyncfirst:problem:cursor-invalid', title: 'Invalid cursor', status: 400 },
      });
    }
    // The cursor it gave out reads the next (here the last) page; one past the oldest job is an empty page, not an error.
    const last = await engine.listJobs({ limit: 1, cursor: nextCursor as string });
    expect(last.jobs).toHaveLength(1);
    expect(last.nextCursor).toBeUndefined();
    expect(await engine.listJobs({ cursor: encoded('p1') })).toEqual({ jobs: [] });
  });

  it('counts jobs by operation and state, and the idempotency records, which it reads back as stored', async () => {
    const engine = await setup();
    expect(await engine.countJobs()).toEqual([]);
    expect(await engine.countIdempotencyRecords()).toBe(0);
    const now = Date.now();
    const first = await acceptOne(engine, 'c1', { now: now - 10, keyExpiresAt: now + 60_000 });
    await acceptOne(engine, 'c2');
    await acceptOne(engine, 'c3', { principal: 'bob' });
    await acceptOne(engine, 'c4', { operation: 'other' });
    const claimed = await claimOne(engine);
    expect(claimed.id).toBe(first);
    await engine.finishJob(first, claimed.fence, { status: 'succeeded', result: '{}' }, Date.now());
    await claimOne(engine);
    expect(await engine.countJobs()).toEqual([
      { operation: 'createReport', status: 'queued', count: 1 },
      { operation: 'createReport', status: 'running', count: 1 },
      { operation: 'createReport', status: 'succeeded', count: 1 },
      { operation: 'other', status: 'queued', count: 1 },
    ]);
    expect(await engine.countIdempotencyRecords()).toBe(4);
    expect(await engine.getIdempotencyRecord('alice', 'createReport', 'c1')).toEqual({
      principal: 'alice',
      operation: 'createReport',
      key: 'c1',
      fingerprint: 'fp-c1',
      jobId: first,
      createdAt: now - 10,
      expiresAt: now + 60_000,
    });
    expect(await engine.getIdempotencyRecord('bob', 'createReport', 'c1')).toBeUndefined();
    expect(await engine.getIdempotencyRecord('alice', 'other', 'c1')).toBeUndefined();
    // An expired record is still stored (and counted) until the sweeper deletes it.
    const expired = await acceptOne(engine, 'c5', { now: now - 20, keyExpiresAt: now - 10 });
    expect(await engine.getIdempotencyRecord('alice', 'createReport', 'c5')).toMatchObject({ jobId: expired, expiresAt: now - 10 });
    expect(await engine.countIdempotencyRecords()).toBe(5);
    expect(await engine.sweep(now, 0)).toEqual({ keys: 1, jobs: 0 });
    expect(await engine.getIdempotencyRecord('alice', 'createReport', 'c5')).toBeUndefined();
    expect(await engine.countIdempotencyRecords()).toBe(4);
  });

  it('queues a failed or canceled job again as new (same id, fresh attempts, job.queued), refuses the others, and scopes it to a principal unless none is given', async () => {
    const engine = await setup();
    const failed = await acceptOne(engine, 'failed', { callbackUrl: 'https://hooks.example.com/done' });
    const claimed = await claimOne(engine);
    await engine.reportProgress(failed, claimed.fence, { percent: 40 }, Date.now());
    expect(await engine.finishJob(failed, claimed.fence, { status: 'failed', error: problem('jobHandlerFailed', 'boom') }, Date.now())).toBe(true);
    let queued = 0;
    const changed = new Set<string>();
    engine.onJobsQueued(() => queued++);
    engine.onJobsChanged((ids) => {
      for (const id of ids) changed.add(id);
    });

    expect(await engine.retryEndedJob('bob', failed, Date.now())).toEqual({ kind: 'not-found' });
    const now = Date.now();
    const retried = await engine.retryEndedJob('alice', failed, now);
    expect(retried).toMatchObject({ kind: 'queued', job: { id: failed, status: 'queued', attempts: 0, maxAttempts: 3, version: 4, runAt: now } });
    const job = await engine.getJob('alice', failed);
    expect(job).toMatchObject({ status: 'queued', attempts: 0, cancelRequested: false, fence: claimed.fence });
    expect(job?.error).toBeUndefined();
    expect(job?.progress).toBeUndefined();
    expect(job?.finishedAt).toBeUndefined();
    expect(queued).toBeGreaterThan(0);
    expect(changed.has(failed)).toBe(true);
    const events = (await engine.getJobEvents('alice', failed, 0))?.events ?? [];
    expect(events.map((event) => [event.id, event.type])).toEqual([
      [1, 'job.running'],
      [2, 'job.progress'],
      [3, 'job.failed'],
      [4, 'job.queued'],
    ]);
    expect(JSON.parse(events[3]?.data as string)).toMatchObject({ id: failed, status: 'queued', attempts: 0 });
    // Repeating the retry changes nothing: the job is queued now.
    expect(await engine.retryEndedJob('alice', failed, Date.now())).toMatchObject({ kind: 'not-retryable', job: { status: 'queued', version: 4 } });

    // It runs again as a new job would: claimed with a new fence, and its new ending has a webhook delivery of its own.
    const again = await claimOne(engine);
    expect(again).toMatchObject({ id: failed, attempts: 1, fence: claimed.fence + 1 });
    expect(await engine.retryEndedJob('alice', failed, Date.now())).toMatchObject({ kind: 'not-retryable', job: { status: 'running' } });
    expect(await engine.finishJob(failed, again.fence, { status: 'succeeded', result: '{"ok":true}' }, Date.now())).toBe(true);
    const succeeded = await engine.getJob('alice', failed);
    expect(succeeded?.deliveries?.map((delivery) => delivery.eventType)).toEqual(['job.failed', 'job.succeeded']);
    expect(await engine.retryEndedJob('alice', failed, Date.now())).toMatchObject({ kind: 'not-retryable', job: { status: 'succeeded' } });

    // A canceled job, retried with no principal (an operator), by another process.
    const canceled = await acceptOne(engine, 'canceled', { principal: 'bob', now: Date.now() + 60_000 });
    expect((await engine.cancelJob('bob', canceled, Date.now())).kind).toBe('canceled');
    const other = await open();
    expect(await other.retryEndedJob(undefined, canceled, Date.now())).toMatchObject({ kind: 'queued', job: { principal: 'bob', status: 'queued' } });
    expect(await other.retryEndedJob(undefined, '01ARZ3NDEKTSV4RRFFQ69G5FAV', Date.now())).toEqual({ kind: 'not-found' });
    expect((await engine.getJob('bob', canceled))?.error).toBeUndefined();
    expect((await claimOne(engine)).id).toBe(canceled);
  });

  it('keeps the counts right through every change — batches, claims, takeovers, abandonment, cancels, retries, releases, sweeps — from two processes', async () => {
    const engine = await setup();
    const other = await open();
    /** What the counts must be: every job, listed and counted by hand. */
    const counted = async () => {
      const tally = new Map<string, number>();
      let cursor: string | undefined;
      do {
        const page = await engine.listJobs({ limit: 200, ...(cursor === undefined ? {} : { cursor }) });
        for (const job of page.jobs) tally.set(`${job.operation}|${job.status}`, (tally.get(`${job.operation}|${job.status}`) ?? 0) + 1);
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      return [...tally]
        .map(([pair, count]) => {
          const [operation = '', status = ''] = pair.split('|');
          return { operation, status, count };
        })
        .sort((a, b) => (a.operation === b.operation ? (a.status < b.status ? -1 : 1) : a.operation < b.operation ? -1 : 1));
    };
    const check = async () => {
      const expected = await counted();
      expect(await engine.countJobs()).toEqual(expected);
      expect(await other.countJobs()).toEqual(expected);
    };

    const now = Date.now();
    await Promise.all(
      Array.from({ length: 6 }, (_, i) => engine.acceptJob(acceptRequest(`b${i}`, { now: now - 100 + i, operation: i % 2 ? 'other' : 'createReport' }))),
    );
    await Promise.all(Array.from({ length: 3 }, (_, i) => other.acceptJob(acceptRequest(`o${i}`, { now: now - 50 + i, principal: 'bob' }))));
    await check();
    const [first, second, third, fourth] = await engine.claimJobs({ owner: 'a', limit: 4, now: Date.now(), leaseMs: 30_000 });
    await check();
    await engine.reportProgress(first?.id as string, first?.fence as number, { percent: 5 }, Date.now());
    await engine.renewLease(first?.id as string, first?.fence as number, 30_000, Date.now());
    await Promise.all([
      engine.finishJob(first?.id as string, first?.fence as number, { status: 'succeeded', result: '{}' }, Date.now()),
      engine.finishJob(second?.id as string, second?.fence as number, { status: 'failed', error: problem('jobHandlerFailed', 'x') }, Date.now()),
    ]);
    await other.retryJob(third?.id as string, third?.fence as number, problem('jobHandlerFailed', 'again'), Date.now(), Date.now());
    await other.releaseJob(fourth?.id as string, fourth?.fence as number, Date.now());
    await check();
    await other.cancelJob('alice', (await engine.listJobs({ statuses: ['queued'], limit: 1 })).jobs[0]?.id as string, Date.now());
    const running = await claimOne(other, 'b', 1);
    await other.cancelJob(running.principal, running.id, Date.now());
    await sleep(20);
    // The lapsed lease of a job being canceled ends it canceled; another lapsed one is taken over.
    await claimOne(engine, 'c', 1);
    await sleep(20);
    await engine.claimJobs({ owner: 'd', limit: 10, now: Date.now(), leaseMs: 30_000 });
    await check();
    expect((await engine.retryEndedJob(undefined, second?.id as string, Date.now())).kind).toBe('queued');
    await check();
    await engine.sweep(Date.now() + 1, Date.now() + 1);
    await check();
    expect(await engine.countJobs()).not.toEqual([]);
  });

  it('finds, per operation, since when its longest-due queued job has been due', async () => {
    const engine = await setup();
    const now = Date.now();
    expect(await engine.oldestDueJobs(now)).toEqual([]);
    await acceptOne(engine, 'd1', { now: now - 5000 });
    await acceptOne(engine, 'd2', { now: now - 1000 });
    await acceptOne(engine, 'd3', { now: now - 3000, operation: 'other' });
    await acceptOne(engine, 'later', { now: now + 60_000, operation: 'later' });
    expect(await engine.oldestDueJobs(now)).toEqual([
      { operation: 'createReport', dueSince: now - 5000 },
      { operation: 'other', dueSince: now - 3000 },
    ]);
    // A running job is no longer waiting.
    await claimOne(engine);
    expect(await engine.oldestDueJobs(now)).toEqual([
      { operation: 'createReport', dueSince: now - 1000 },
      { operation: 'other', dueSince: now - 3000 },
    ]);
  });
});

describe('cross-process announcements (PostgreSQL LISTEN/NOTIFY)', () => {
  const { schema, drop } = freshSchema('af_notify');
  const engines: Store[] = [];
  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.close();
    await drop();
  });

  it("wakes another process's listeners for jobs it accepted and changed, without polling", async () => {
    const open = async (): Promise<Store> => {
      const driver: Driver = new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax: 2 });
      const engine = await JobEngine.start(driver);
      engines.push(engine);
      return engine;
    };
    const writer = await open();
    const watcher = await open();
    expect(watcher.announcesOtherProcesses).toBe(true);
    const changed = new Set<string>();
    let queued = 0;
    watcher.onJobsChanged((ids) => {
      for (const id of ids) changed.add(id);
    });
    watcher.onJobsQueued(() => queued++);
    const outcome = await writer.acceptJob(acceptRequest('k1'));
    const deadline = Date.now() + 2000;
    while ((!changed.has(outcome.jobId) || queued === 0) && Date.now() < deadline) await sleep(10);
    expect(changed.has(outcome.jobId)).toBe(true);
    expect(queued).toBeGreaterThan(0);
  });
});

describe('PostgreSQL job counters', () => {
  const { schema, drop } = freshSchema('af_counters');
  const engines: Store[] = [];
  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.close();
    await drop();
  });

  it('appends a delta per changing statement and folds them into one row per pair when counted or the sweeper runs', async () => {
    const engine = await JobEngine.start(new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax: 2 }));
    engines.push(engine);
    const deltas = async () => Number((await queryPostgres<{ rows: string }>(schema, 'SELECT count(*) AS rows FROM job_count_deltas'))[0]?.rows);
    for (let i = 0; i < 6; i++) await engine.acceptJob(acceptRequest(`k${i}`, { operation: i % 2 ? 'other' : 'createReport' }));
    const claimed = await engine.claimJobs({ owner: 'w', limit: 2, now: Date.now(), leaseMs: 30_000 });
    for (const job of claimed) await engine.renewLease(job.id, job.fence, 30_000, Date.now());
    // Six acceptances; the claim of one job of each operation appends four (each one's queued -1 and running +1); renewals append nothing.
    expect(await deltas()).toBe(6 + 4);
    const sweeper = new Sweeper(engine, { intervalMs: 60_000, jobRetentionMs: 60_000, log: pino({ level: 'silent' }) });
    expect(await sweeper.sweepNow()).toEqual({ keys: 0, jobs: 0 });
    expect(await deltas()).toBe(4);
    expect(await engine.countJobs()).toEqual([
      { operation: 'createReport', status: 'queued', count: 2 },
      { operation: 'createReport', status: 'running', count: 1 },
      { operation: 'other', status: 'queued', count: 2 },
      { operation: 'other', status: 'running', count: 1 },
    ]);
    expect(await deltas()).toBe(4);
  });
});
