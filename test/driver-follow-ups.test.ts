import { describe, expect, it } from 'vitest';
import { problem } from '../src/core/problems.js';
import type { ClaimedJob, FollowUpRequest, Store } from '../src/store/store.js';
import { acceptRequest, driversUnderTest, useDatabase } from './driver-support.js';

/*
 * Follow-ups (ctx.enqueue) in the store, on every driver: the jobs a finish carries are stored in
 * the transaction that records the parent's success, and only then — not with a failure, not when
 * a cancel wins, not with a stale fence's finish — each naming its parent, which lists them.
 */

const TRACE = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };

/** A follow-up of alice's createReport, keyed `key` under its parent. */
function followUp(parent: string, key: string, overrides: Partial<FollowUpRequest> = {}): FollowUpRequest {
  return {
    principal: 'alice',
    operation: 'createReport',
    key: `followup:${parent}:${key}`,
    fingerprint: `fp-${key}`,
    input: `{"body":{"rows":2,"title":"${key}"},"params":{},"query":{}}`,
    maxAttempts: 2,
    keyRetentionMs: 60_000,
    ...overrides,
  };
}

async function acceptAndClaim(engine: Store, key: string, owner = 'worker-a', leaseMs = 30_000): Promise<ClaimedJob> {
  const accepted = await engine.acceptJob(acceptRequest(key, { traceContext: TRACE }));
  expect(accepted.kind).toBe('created');
  const [claimed] = await engine.claimJobs({ owner, limit: 1, now: Date.now(), leaseMs });
  expect(claimed?.id).toBe(accepted.jobId);
  return claimed as ClaimedJob;
}

/** Every job of alice's, by id. */
async function jobsById(engine: Store) {
  const page = await engine.listJobs({ principal: 'alice', limit: 200 });
  return new Map(page.jobs.map((job) => [job.id, job]));
}

describe.each(driversUnderTest('af_follow_ups'))('follow-ups on the $name driver', ({ database }) => {
  const db = useDatabase(database);

  it("stores a succeeded job's follow-ups with its success: queued children naming their parent, in the parent's principal and trace context, listed by the parent and its job.succeeded", async () => {
    const [engine] = (await db.open(1)) as [Store];
    const parent = await acceptAndClaim(engine, 'parent');
    const finished = await engine.finishJob(parent.id, parent.fence, { status: 'succeeded', result: '{"ok":1}' }, Date.now(), [
      followUp(parent.id, 'b', { traceContext: parent.traceContext as typeof TRACE }),
      followUp(parent.id, 'a'),
    ]);
    expect(finished).toBe(true);

    const stored = await engine.getJob('alice', parent.id);
    expect(stored?.status).toBe('succeeded');
    expect(stored?.children).toHaveLength(2);
    const [first, second] = (stored?.children ?? []) as [string, string];
    const jobs = await jobsById(engine);
    // In the order they were asked for, not their keys' order.
    expect(JSON.parse((await engine.jobInput('alice', first)) as string).body.title).toBe('b');
    expect(JSON.parse((await engine.jobInput('alice', second)) as string).body.title).toBe('a');
    for (const id of [first, second]) {
      expect(jobs.get(id)).toMatchObject({ status: 'queued', operation: 'createReport', principal: 'alice', parentId: parent.id, maxAttempts: 2 });
      expect((await engine.getJob('alice', id))?.parentId).toBe(parent.id);
    }
    expect(await engine.getIdempotencyRecord('alice', 'createReport', `followup:${parent.id}:a`)).toMatchObject({ jobId: second });

    const { events } = (await engine.getJobEvents('alice', parent.id, 0)) ?? { events: [] };
    const succeeded = events.find((event) => event.type === 'job.succeeded');
    expect(JSON.parse(succeeded?.data as string)).toMatchObject({ status: 'succeeded', children: [first, second] });

    // The children run as any job does, with the trace context they were given.
    const claimed = await engine.claimJobs({ owner: 'worker-b', limit: 5, now: Date.now(), leaseMs: 30_000 });
    expect(claimed.map((job) => job.id).sort()).toEqual([first, second].sort());
    expect(claimed.find((job) => job.id === first)?.traceContext).toEqual(TRACE);
    expect(claimed.find((job) => job.id === second)?.traceContext).toBeUndefined();
  });

  it('stores no follow-up with a failure, with an outcome a cancel won over, or with a stale fence (a lease taken over)', async () => {
    const [engine, other] = (await db.open(2)) as [Store, Store];
    const failing = await acceptAndClaim(engine, 'failing');
    expect(
      await engine.finishJob(failing.id, failing.fence, { status: 'failed', error: problem('jobHandlerFailed', 'boom') }, Date.now(), [
        followUp(failing.id, 'x'),
      ]),
    ).toBe(true);

    const canceled = await acceptAndClaim(engine, 'canceled');
    expect((await engine.cancelJob('alice', canceled.id, Date.now())).kind).toBe('signalled');
    expect(await engine.finishJob(canceled.id, canceled.fence, { status: 'succeeded', result: '{}' }, Date.now(), [followUp(canceled.id, 'x')])).toBe(true);
    expect((await engine.getJob('alice', canceled.id))?.status).toBe('canceled');

    // The first lease lapses and another process takes the job over; the stale attempt's finish is refused whole.
    const stale = await acceptAndClaim(engine, 'stale', 'worker-a', 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [takenOver] = await other.claimJobs({ owner: 'worker-b', limit: 1, now: Date.now(), leaseMs: 30_000 });
    expect(takenOver).toMatchObject({ id: stale.id, takenOverFrom: 'worker-a' });
    expect(await engine.finishJob(stale.id, stale.fence, { status: 'succeeded', result: '{}' }, Date.now(), [followUp(stale.id, 'x')])).toBe(false);

    const jobs = await jobsById(engine);
    expect(jobs.size).toBe(3);
    expect([...jobs.values()].filter((job) => job.parentId !== undefined)).toEqual([]);
    expect(await engine.getIdempotencyRecord('alice', 'createReport', `followup:${stale.id}:x`)).toBeUndefined();

    // The attempt that holds the lease stores its own.
    expect(await other.finishJob(stale.id, (takenOver as ClaimedJob).fence, { status: 'succeeded', result: '{}' }, Date.now(), [followUp(stale.id, 'x')])).toBe(
      true,
    );
    expect((await engine.getJob('alice', stale.id))?.children).toHaveLength(1);
  });

  it("makes each child once: a replayed finish is refused, and a stale finish in the same batch as the current one stores only the current one's", async () => {
    const [engine] = (await db.open(1)) as [Store];
    const parent = await acceptAndClaim(engine, 'parent', 'worker-a', 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [retried] = await engine.claimJobs({ owner: 'worker-b', limit: 1, now: Date.now(), leaseMs: 30_000 });
    const current = retried as ClaimedJob;
    const [staleDone, currentDone] = await Promise.all([
      engine.finishJob(parent.id, parent.fence, { status: 'succeeded', result: '{"who":"stale"}' }, Date.now(), [followUp(parent.id, 'same')]),
      engine.finishJob(parent.id, current.fence, { status: 'succeeded', result: '{"who":"current"}' }, Date.now(), [followUp(parent.id, 'same')]),
    ]);
    expect([staleDone, currentDone]).toEqual([false, true]);
    // The same finish again (a worker that did not hear the commit) finds the job ended.
    expect(await engine.finishJob(parent.id, current.fence, { status: 'succeeded', result: '{}' }, Date.now(), [followUp(parent.id, 'same')])).toBe(false);
    const children = [...(await jobsById(engine)).values()].filter((job) => job.parentId === parent.id);
    expect(children).toHaveLength(1);
    expect((await engine.getJob('alice', parent.id))?.children).toEqual([children[0]?.id]);
  });

  it('holds a follow-up with a later runAt back until then, its nextAttemptAt that time', async () => {
    const [engine] = (await db.open(1)) as [Store];
    const parent = await acceptAndClaim(engine, 'parent');
    const runAt = Date.now() + 60_000;
    await engine.finishJob(parent.id, parent.fence, { status: 'succeeded', result: '{}' }, Date.now(), [
      followUp(parent.id, 'later', { runAt }),
      followUp(parent.id, 'now'),
    ]);
    const [later, now] = ((await engine.getJob('alice', parent.id))?.children ?? []) as [string, string];
    const claimed = await engine.claimJobs({ owner: 'worker-b', limit: 5, now: Date.now(), leaseMs: 30_000 });
    expect(claimed.map((job) => job.id)).toEqual([now]);
    expect((await engine.getJob('alice', later))?.runAt).toBe(runAt);
    expect((await engine.getIdempotencyRecord('alice', 'createReport', `followup:${parent.id}:later`))?.expiresAt).toBe(runAt + 60_000);
    expect((await engine.claimJobs({ owner: 'worker-b', limit: 5, now: runAt, leaseMs: 30_000 })).map((job) => job.id)).toEqual([later]);
  });

  it('stores the follow-ups of a batch of finishes with the batch, each under its own parent; a finish without any lists no children', async () => {
    const [engine] = (await db.open(1)) as [Store];
    const parents: ClaimedJob[] = [];
    for (const key of ['p1', 'p2', 'p3']) parents.push(await acceptAndClaim(engine, key));
    const [p1, p2, p3] = parents as [ClaimedJob, ClaimedJob, ClaimedJob];
    const finished = await Promise.all([
      engine.finishJob(p1.id, p1.fence, { status: 'succeeded', result: '{}' }, Date.now(), [followUp(p1.id, 'x'), followUp(p1.id, 'y')]),
      engine.finishJob(p2.id, p2.fence, { status: 'succeeded', result: '{}' }, Date.now()),
      engine.finishJob(p3.id, p3.fence, { status: 'succeeded', result: '{}' }, Date.now(), [followUp(p3.id, 'x')]),
    ]);
    expect(finished).toEqual([true, true, true]);
    const jobs = [...(await jobsById(engine)).values()];
    expect(jobs.filter((job) => job.parentId === p1.id)).toHaveLength(2);
    expect(jobs.filter((job) => job.parentId === p3.id)).toHaveLength(1);
    expect((await engine.getJob('alice', p1.id))?.children).toHaveLength(2);
    expect((await engine.getJob('alice', p2.id))?.children).toEqual([]);
    const { events } = (await engine.getJobEvents('alice', p2.id, 0)) ?? { events: [] };
    expect(JSON.parse(events.find((event) => event.type === 'job.succeeded')?.data as string).children).toBeUndefined();
    expect((await engine.countJobs()).find((count) => count.status === 'queued')?.count).toBe(3);
  });
});
