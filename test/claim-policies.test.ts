import { describe, expect, it } from 'vitest';
import { problem } from '../src/core/problems.js';
import type { ClaimedJob, ClaimPolicy, Store } from '../src/store/store.js';
import { acceptRequest, driversUnderTest, useDatabase } from './driver-support.js';

/*
 * Claim policies at the engine, on both drivers: priority orders due jobs; an operation's
 * concurrency and rate limit hold across engines on one database (each stands in for a process:
 * on PostgreSQL each has its own pool, so their claims really run at once), through finishes,
 * retries and lease takeovers; and jobs of operations without a policy are claimed beside them.
 */

const LONG_LEASE_MS = 30_000;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const POLICIES = new Map<string, ClaimPolicy>([
  ['urgent', { priority: 10 }],
  ['bulk', { priority: -5 }],
  ['pair', { priority: 0, concurrency: 2 }],
  ['paced', { priority: 0, rateLimit: { max: 3, perMs: 600 } }],
]);

/** Engines on one database, each told the policies (as createAsyncFirst tells its store). */
async function openWithPolicies(db: ReturnType<typeof useDatabase>, count: number): Promise<Store[]> {
  const engines = await db.open(count);
  for (const engine of engines) engine.useClaimPolicies(POLICIES);
  return engines;
}

async function accept(engine: Store, operation: string, key: string, runAt?: number): Promise<string> {
  const outcome = await engine.acceptJob(acceptRequest(key, { operation, ...(runAt === undefined ? {} : { runAt }) }));
  if (outcome.kind !== 'created') throw new Error(`${key} was not created`);
  return outcome.jobId;
}

const claim = (engine: Store, limit: number, owner = 'worker', leaseMs = LONG_LEASE_MS) => engine.claimJobs({ owner, limit, now: Date.now(), leaseMs });

async function running(engine: Store, operation: string): Promise<number> {
  return (await engine.countJobs()).find((count) => count.operation === operation && count.status === 'running')?.count ?? 0;
}

describe.each(driversUnderTest('af_claim_policies'))('claim policies on $name', ({ database }) => {
  const db = useDatabase(database);

  it('claims due jobs by priority (highest first), then by run time and insertion, and shows each job its priority', async () => {
    const [engine] = (await openWithPolicies(db, 1)) as [Store];
    const now = Date.now();
    const ids = {
      bulk1: await accept(engine, 'bulk', 'bulk1'),
      plain1: await accept(engine, 'createReport', 'plain1'),
      urgent1: await accept(engine, 'urgent', 'urgent1'),
      urgentLater: await accept(engine, 'urgent', 'urgent-later', now + 60_000),
      plain2: await accept(engine, 'createReport', 'plain2'),
      urgent2: await accept(engine, 'urgent', 'urgent2'),
      bulk2: await accept(engine, 'bulk', 'bulk2'),
    };
    expect((await engine.getJob('alice', ids.urgent1))?.priority).toBe(10);
    expect((await engine.getJob('alice', ids.bulk1))?.priority).toBe(-5);
    expect((await engine.getJob('alice', ids.plain1))?.priority).toBe(0);

    // One at a time, as a worker with one free slot claims.
    const order: string[] = [];
    for (let i = 0; i < 6; i++) order.push(...(await claim(engine, 1)).map((job) => job.id));
    expect(order).toEqual([ids.urgent1, ids.urgent2, ids.plain1, ids.plain2, ids.bulk1, ids.bulk2]);
    // The urgent job that is not due yet waits for its time.
    expect(await claim(engine, 5)).toEqual([]);

    // Many at once come in the same order.
    const more = [await accept(engine, 'bulk', 'bulk3'), await accept(engine, 'createReport', 'plain3'), await accept(engine, 'urgent', 'urgent3')];
    expect((await claim(engine, 10)).map((job) => job.id)).toEqual([more[2], more[1], more[0]]);
  });

  it('never runs more than `concurrency` attempts of an operation at once across engines, through finishes, retries and takeovers', async () => {
    const [a, b] = (await openWithPolicies(db, 2)) as [Store, Store];
    // A first claim makes the operation's limit row (whose insertion alone would serialize the race below).
    expect(await claim(a, 4)).toEqual([]);
    for (let i = 0; i < 30; i++) await accept(a, 'pair', `pair-${i}`);
    const plain = await accept(a, 'createReport', 'plain');

    // Claims race from both engines: two of the pair's jobs start, and the plain job beside them.
    const claims = await Promise.all(Array.from({ length: 12 }, (_, i) => claim(i % 2 === 0 ? a : b, 4, `w${i}`)));
    const claimed = claims.flat();
    expect(claimed.filter((job) => job.operation === 'pair')).toHaveLength(2);
    expect(claimed.filter((job) => job.id === plain)).toHaveLength(1);
    expect(await running(a, 'pair')).toBe(2);

    // A finish frees one slot, for another engine's claim.
    const [first, second] = claimed.filter((job) => job.operation === 'pair') as [ClaimedJob, ClaimedJob];
    expect(await a.finishJob(first.id, first.fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);
    const third = await claim(b, 4);
    expect(third.map((job) => job.operation)).toEqual(['pair']);
    expect(await claim(a, 4)).toEqual([]);

    // A retry frees its slot while it waits, and takes one again when it runs.
    expect(await a.retryJob(second.id, second.fence, problem('jobHandlerFailed', 'once'), Date.now(), Date.now())).toBe(true);
    const afterRetry = await claim(a, 4);
    expect(afterRetry).toHaveLength(1);
    expect(await claim(b, 4)).toEqual([]);
    expect(await running(a, 'pair')).toBe(2);

    // Both leases lapse: the claims take them over (still two running), and start nothing more.
    const lapsing = [...third, ...afterRetry] as [ClaimedJob, ClaimedJob];
    for (const job of lapsing) expect(await a.renewLease(job.id, job.fence, 5, Date.now())).toMatchObject({ held: true });
    await sleep(40);
    const takeovers = (await Promise.all([claim(a, 4, 'heir-a'), claim(b, 4, 'heir-b')])).flat();
    expect(takeovers.map((job) => job.id).sort()).toEqual(lapsing.map((job) => job.id).sort());
    expect(takeovers.every((job) => job.takenOverFrom !== undefined)).toBe(true);
    expect(await running(a, 'pair')).toBe(2);
    expect(await claim(a, 4)).toEqual([]);

    // A job that ends failed, or canceled, frees its slot too.
    const [x, y] = takeovers as [ClaimedJob, ClaimedJob];
    expect(await b.finishJob(x.id, x.fence, { status: 'failed', error: problem('jobHandlerFailed', 'no') }, Date.now())).toBe(true);
    expect(await a.cancelJob('alice', y.id, Date.now())).toMatchObject({ kind: 'signalled' });
    expect(await a.finishJob(y.id, y.fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);
    expect((await a.getJob('alice', y.id))?.status).toBe('canceled');
    expect(await claim(b, 4)).toHaveLength(2);
    expect(await running(a, 'pair')).toBe(2);
  });

  it('starts at most rateLimit.max attempts of an operation in any rateLimit.per across engines, takeovers included', async () => {
    const [a, b] = (await openWithPolicies(db, 2)) as [Store, Store];
    for (let i = 0; i < 10; i++) await accept(a, 'paced', `paced-${i}`);
    const startedAt: number[] = [];
    const record = (jobs: ClaimedJob[]) => {
      for (const _ of jobs) startedAt.push(Date.now());
      return jobs;
    };

    const first = record((await Promise.all(Array.from({ length: 6 }, (_, i) => claim(i % 2 === 0 ? a : b, 4, `w${i}`)))).flat());
    expect(first).toHaveLength(3);
    // Finished or not, those three starts fill the window.
    for (const job of first) await a.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, Date.now());
    expect(await claim(b, 4)).toEqual([]);

    await sleep(650);
    const second = record((await Promise.all([claim(a, 4), claim(b, 4)])).flat());
    expect(second).toHaveLength(3);
    // Their leases lapse at once; a takeover is a start, so the window is full until it slides on.
    for (const job of second) expect(await a.renewLease(job.id, job.fence, 5, Date.now())).toMatchObject({ held: true });
    await sleep(40);
    expect(await claim(a, 4)).toEqual([]);
    await sleep(650);
    const takeovers = record(await claim(b, 4));
    expect(takeovers.map((job) => job.id).sort()).toEqual(second.map((job) => job.id).sort());
    expect(await claim(a, 4)).toEqual([]);
  });

  it('claims jobs of operations without a policy while a limited operation is at its limit', async () => {
    const [engine] = (await openWithPolicies(db, 1)) as [Store];
    for (let i = 0; i < 5; i++) await accept(engine, 'pair', `pair-${i}`);
    expect(await claim(engine, 5)).toHaveLength(2);
    const plain = [await accept(engine, 'createReport', 'p1'), await accept(engine, 'createReport', 'p2')];
    expect((await claim(engine, 5)).map((job) => job.id)).toEqual(plain);
  });
});
