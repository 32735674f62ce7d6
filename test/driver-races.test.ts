import { describe, expect, it } from 'vitest';
import { problem } from '../src/core/problems.js';
import type { AcceptOutcome, ClaimedJob, JobOutcome, JobRecord, Store } from '../src/store/store.js';
import { acceptRequest, driversUnderTest, useDatabase } from './driver-support.js';

/*
 * The races the guarantees promise to win, run against each driver many times over: engines on
 * one database stand in for processes. On PostgreSQL each has its own pool, so their statements
 * really run at once. On SQLite each has its own connection, and as better-sqlite3 runs a
 * transaction synchronously, two engines in one process never overlap: there the race is whose
 * transaction commits first, and what else shares it. Each round starts the two sides of a race
 * in one of several orders — in the same turn, one a little later, or one only after the other
 * has committed — and spreads each side's operations over a few milliseconds, so both outcomes
 * of every race occur; then it checks what must hold whichever side won, down to the events each
 * job recorded.
 */

const CANCELED = 'urn:asyncfirst:problem:job-canceled';
/** A lease that has lapsed by the time the race starts. */
const SHORT_LEASE_MS = 5;
const LEASE_LAPSE_MS = 25;
const LONG_LEASE_MS = 30_000;
/** Rounds per race, and jobs raced at once in each round. */
const ROUNDS = 15;
const PER_ROUND = 10;

const ORDERS = ['together', 'first-lags', 'second-lags', 'first-then-second', 'second-then-first'] as const;
type Order = (typeof ORDERS)[number];
const orderOf = (round: number): Order => ORDERS[round % ORDERS.length] as Order;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `run` a turn later (0) or `ms` milliseconds later. */
function later<T>(ms: number, run: () => Promise<T>): Promise<T> {
  return new Promise<void>((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms))).then(run);
}

/** Spreads one side's operations: the i-th starts at once, a turn later, or 1 or 2 ms later. */
function staggered<T>(i: number, run: () => Promise<T>): Promise<T> {
  const slot = i % 4;
  return slot === 0 ? run() : later(slot - 1, run);
}

/** Starts the two sides of a race in the round's order; resolves with both sides' results. */
async function race<A, B>(order: Order, round: number, first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> {
  const lag = round % 3;
  switch (order) {
    case 'together': {
      // In the same turn; which is asked first alternates (on SQLite it decides whose transaction goes first).
      if (round % 2 === 0) return Promise.all([first(), second()]);
      const b = second();
      return Promise.all([first(), b]);
    }
    case 'first-lags':
      return Promise.all([later(lag, first), second()]);
    case 'second-lags':
      return Promise.all([first(), later(lag, second)]);
    case 'first-then-second': {
      const a = await first();
      return [a, await second()];
    }
    case 'second-then-first': {
      const b = await second();
      return [await first(), b];
    }
  }
}

function at<T>(items: readonly T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`nothing at index ${index}`);
  return item;
}

async function acceptMany(engine: Store, prefix: string, count: number, callbackOf: (i: number) => string | undefined = () => undefined): Promise<string[]> {
  const outcomes = await Promise.all(
    Array.from({ length: count }, (_, i) => {
      const callbackUrl = callbackOf(i);
      return engine.acceptJob(acceptRequest(`${prefix}-${i}`, callbackUrl === undefined ? {} : { callbackUrl }));
    }),
  );
  expect(outcomes.map((outcome) => outcome.kind)).toEqual(outcomes.map(() => 'created'));
  return outcomes.map((outcome) => outcome.jobId);
}

/** Claims exactly these jobs for `owner` (nothing else is due), with fence 1. */
async function claimExactly(engine: Store, owner: string, ids: string[], leaseMs: number): Promise<void> {
  const claimed = await engine.claimJobs({ owner, limit: ids.length, now: Date.now(), leaseMs });
  expect(claimed.map((job) => job.id).sort()).toEqual([...ids].sort());
  expect(claimed.every((job) => job.fence === 1 && job.attempts === 1)).toBe(true);
}

function claimFor(engine: Store, owner: string, limit: number): Promise<ClaimedJob[]> {
  return engine.claimJobs({ owner, limit, now: Date.now(), leaseMs: LONG_LEASE_MS });
}

/** The job and the types of its events, checking that they are numbered 1, 2, 3… up to the job's version. */
async function history(engine: Store, id: string): Promise<{ job: JobRecord; types: string[] }> {
  const found = await engine.getJobEvents('alice', id, 0);
  if (!found) throw new Error(`job ${id} is gone`);
  expect(found.events.map((event) => event.id)).toEqual(found.events.map((_, i) => i + 1));
  expect(found.job.version).toBe(found.events.length);
  return { job: found.job, types: found.events.map((event) => event.type) };
}

/** Who took each job over, checking that no job was claimed twice. */
function claimsById(batches: Array<{ owner: string; engine: Store; jobs: ClaimedJob[] }>): Map<string, { owner: string; engine: Store; job: ClaimedJob }> {
  const byId = new Map<string, { owner: string; engine: Store; job: ClaimedJob }>();
  for (const { owner, engine, jobs } of batches) {
    for (const job of jobs) {
      expect(byId.has(job.id), `job ${job.id} claimed twice`).toBe(false);
      byId.set(job.id, { owner, engine, job });
    }
  }
  return byId;
}

describe.each(driversUnderTest('af_races'))('races on the $name driver', ({ database }) => {
  const db = useDatabase(database);

  it('a takeover of an expired lease racing a cancel: the job ends canceled, never runs after the cancel was recorded, and both owners are fenced', async () => {
    const engines = await db.open(3);
    const [dead, rescuerA, rescuerB] = engines as [Store, Store, Store];
    const seen = { takenOver: 0, notTakenOver: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const order = orderOf(round);
      const ids = await acceptMany(dead, `takeover-${round}`, PER_ROUND);
      await claimExactly(dead, 'dead', ids, SHORT_LEASE_MS);
      await sleep(LEASE_LAPSE_MS);
      const half = PER_ROUND / 2;
      const [claims, cancels] = await race(
        order,
        round,
        () =>
          Promise.all([
            claimFor(rescuerA, 'rescuer-a', half).then((jobs) => ({ owner: 'rescuer-a', engine: rescuerA, jobs })),
            later(round % 2, () => claimFor(rescuerB, 'rescuer-b', PER_ROUND - half)).then((jobs) => ({ owner: 'rescuer-b', engine: rescuerB, jobs })),
          ]),
        () => Promise.all(ids.map((id, i) => staggered(i, () => at(engines, i % 3).cancelJob('alice', id, Date.now())))),
      );
      const takenOver = claimsById(claims);
      expect([...takenOver.keys()].every((id) => ids.includes(id))).toBe(true);
      if (order === 'first-then-second') expect(takenOver.size).toBe(PER_ROUND);
      if (order === 'second-then-first') expect(takenOver.size).toBe(0);
      seen.takenOver += takenOver.size;
      seen.notTakenOver += PER_ROUND - takenOver.size;

      await Promise.all(
        ids.map(async (id, i) => {
          const cancel = at(cancels, i);
          expect(cancel.kind).toBe('signalled');
          if (cancel.kind !== 'signalled') return;
          const taken = takenOver.get(id);
          // The job as the cancel left it says which claim the cancel was recorded under: one recorded
          // under the dead owner's claim (attempt 1) is never followed by a takeover.
          expect(cancel.job.attempts).toBe(taken ? 2 : 1);
          if (taken) {
            expect(taken.job).toMatchObject({ fence: 2, attempts: 2, takenOverFrom: 'dead' });
            expect(await taken.engine.renewLease(id, 2, LONG_LEASE_MS, Date.now())).toEqual({ held: true, cancelRequested: true });
          }
          // Half the dead owners come back and report success with their old fence.
          if (i % 2 === 0) {
            const before = await dead.getJob('alice', id);
            const accepted = await dead.finishJob(id, 1, { status: 'succeeded', result: '{"who":"dead"}' }, Date.now());
            expect(accepted).toBe(!taken && before?.status === 'running');
          }
          if (taken) expect(await taken.engine.finishJob(id, 2, { status: 'succeeded', result: '{"who":"rescuer"}' }, Date.now())).toBe(true);
        }),
      );
      // The jobs nobody finished are ended by the next claim, which runs none of them.
      const late = await Promise.all(engines.map((engine, i) => claimFor(engine, `late-${i}`, PER_ROUND)));
      expect(late.flat()).toEqual([]);
      await Promise.all(
        ids.map(async (id) => {
          const taken = takenOver.get(id);
          const { job, types } = await history(dead, id);
          expect(job).toMatchObject({ status: 'canceled', error: { type: CANCELED } });
          expect(job.result).toBeUndefined();
          expect(types).toEqual(taken ? ['job.running', 'job.running', 'job.canceled'] : ['job.running', 'job.canceled']);
          expect(await dead.finishJob(id, 1, { status: 'succeeded', result: '{}' }, Date.now())).toBe(false);
          expect(await rescuerA.finishJob(id, 2, { status: 'succeeded', result: '{}' }, Date.now())).toBe(false);
        }),
      );
    }
    expect(seen.takenOver).toBeGreaterThan(0);
    expect(seen.notTakenOver).toBeGreaterThan(0);
  });

  it('an abandoned job with no attempts left racing a cancel: a cancel answered as signalled ends it canceled, not failed', async () => {
    const engines = await db.open(3);
    const [dead, rescuerA, rescuerB] = engines as [Store, Store, Store];
    const seen = { canceled: 0, failed: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const order = orderOf(round);
      const ids = (
        await Promise.all(Array.from({ length: PER_ROUND }, (_, i) => dead.acceptJob(acceptRequest(`spent-${round}-${i}`, { maxAttempts: 1 }))))
      ).map((outcome) => outcome.jobId);
      await claimExactly(dead, 'dead', ids, SHORT_LEASE_MS);
      await sleep(LEASE_LAPSE_MS);
      // Every third job was already asked to cancel before the race (answered signalled): the cancel in the race repeats it.
      const askedBefore = new Set(ids.filter((_, i) => i % 3 === 0));
      for (const id of askedBefore) expect((await rescuerB.cancelJob('alice', id, Date.now())).kind).toBe('signalled');
      const [claims, cancels] = await race(
        order,
        round,
        () => Promise.all([claimFor(rescuerA, 'rescuer-a', PER_ROUND), later(round % 2, () => claimFor(rescuerB, 'rescuer-b', PER_ROUND))]),
        () => Promise.all(ids.map((id, i) => staggered(i, () => at(engines, i % 3).cancelJob('alice', id, Date.now())))),
      );
      // With no attempts left, nobody runs them again.
      expect(claims.flat()).toEqual([]);
      expect((await Promise.all(engines.map((engine, i) => claimFor(engine, `late-${i}`, PER_ROUND)))).flat()).toEqual([]);
      await Promise.all(
        ids.map(async (id, i) => {
          const cancel = at(cancels, i);
          const { job, types } = await history(dead, id);
          if (askedBefore.has(id) || cancel.kind === 'signalled') {
            seen.canceled++;
            expect(job, `${order}: cancel ${cancel.kind}, asked before: ${askedBefore.has(id)}`).toMatchObject({
              status: 'canceled',
              error: { type: CANCELED },
            });
            expect(types).toEqual(['job.running', 'job.canceled']);
          } else {
            seen.failed++;
            expect(cancel.kind).toBe('finished');
            expect(job).toMatchObject({ status: 'failed', error: { type: 'urn:asyncfirst:problem:job-lease-expired' } });
            expect(types).toEqual(['job.running', 'job.failed']);
          }
        }),
      );
    }
    expect(seen.canceled).toBeGreaterThan(0);
    expect(seen.failed).toBeGreaterThan(0);
  });

  it('a cancel racing a retry or a release: the job ends canceled and is never queued again after the cancel', async () => {
    const engines = await db.open(3);
    const [worker, api, thief] = engines as [Store, Store, Store];
    const seen = { cancelFirst: 0, requeueFirst: 0, stolen: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const order = orderOf(round);
      const ids = await acceptMany(api, `retry-${round}`, PER_ROUND);
      await claimExactly(worker, 'worker', ids, LONG_LEASE_MS);
      // Every fourth job is released (shutdown) rather than retried; half the retries are due at once.
      const isRelease = (i: number) => i % 4 === 3;
      // Meanwhile a third process claims whatever falls due (a retry due at once, a released job).
      const stolenBatches: Array<{ owner: string; engine: Store; jobs: ClaimedJob[] }> = [];
      const stealing = Promise.all(
        [0, 1, 2, 3].map((ms) => later(ms, async () => stolenBatches.push({ owner: 'thief', engine: thief, jobs: await claimFor(thief, 'thief', PER_ROUND) }))),
      );
      const [requeued, cancels] = await race(
        order,
        round,
        () =>
          Promise.all(
            ids.map((id, i) =>
              staggered(i, () =>
                isRelease(i)
                  ? worker.releaseJob(id, 1, Date.now())
                  : worker.retryJob(id, 1, problem('jobHandlerFailed', 'attempt 1 failed'), i % 2 === 0 ? Date.now() : Date.now() + 60_000, Date.now()),
              ),
            ),
          ),
        () => Promise.all(ids.map((id, i) => staggered(i + 1, () => (i % 2 === 0 ? api : thief).cancelJob('alice', id, Date.now())))),
      );
      await stealing;
      const stolen = claimsById(stolenBatches);
      expect([...stolen.keys()].every((id) => ids.includes(id))).toBe(true);
      expect(requeued).toEqual(ids.map(() => true));

      await Promise.all(
        ids.map(async (id, i) => {
          const cancel = at(cancels, i);
          const theft = stolen.get(id);
          if (theft) {
            // Queued again before the cancel came, and claimed: the cancel reaches that run, which then ends canceled.
            seen.stolen++;
            expect(cancel.kind).toBe('signalled');
            expect(cancel.kind === 'signalled' && cancel.job.attempts).toBe(theft.job.attempts);
            expect(theft.job.fence).toBe(2);
            expect(await thief.renewLease(id, 2, LONG_LEASE_MS, Date.now())).toEqual({ held: true, cancelRequested: true });
            expect(await thief.finishJob(id, 2, { status: 'succeeded', result: '{"who":"thief"}' }, Date.now())).toBe(true);
          } else if (cancel.kind === 'signalled') {
            seen.cancelFirst++;
            expect(cancel.job).toMatchObject({ status: 'running', attempts: 1 });
          } else {
            seen.requeueFirst++;
            expect(cancel.kind).toBe('canceled');
          }
          const { job, types } = await history(api, id);
          expect(job).toMatchObject({ status: 'canceled', error: { type: CANCELED } });
          if (theft) expect(types).toEqual(['job.running', 'job.queued', 'job.running', 'job.canceled']);
          else if (cancel.kind === 'signalled') expect(types).toEqual(['job.running', 'job.canceled']);
          else expect(types).toEqual(['job.running', 'job.queued', 'job.canceled']);
          // A release gives the attempt back only when it put the job back in the queue.
          expect(job.attempts).toBe(isRelease(i) && types[1] === 'job.queued' ? (theft ? 1 : 0) : theft ? 2 : 1);
          expect(await worker.retryJob(id, 1, problem('jobHandlerFailed', 'again'), Date.now(), Date.now())).toBe(false);
        }),
      );
      // Not queued again: nothing of this round is ever claimed, even once every retry is due.
      const late = await Promise.all(
        engines.map((engine, i) => engine.claimJobs({ owner: `late-${i}`, limit: PER_ROUND, now: Date.now() + 120_000, leaseMs: LONG_LEASE_MS })),
      );
      expect(late.flat()).toEqual([]);
    }
    expect(seen.cancelFirst).toBeGreaterThan(0);
    expect(seen.requeueFirst).toBeGreaterThan(0);
  });

  it('a cancel racing a finish: a cancel answered as signalled ends the job canceled, one answered as finished leaves its outcome', async () => {
    const engines = await db.open(3);
    const [worker, api, other] = engines as [Store, Store, Store];
    const outcomeOf = (i: number): JobOutcome =>
      [
        { status: 'succeeded', result: `{"n":${i}}` } as const,
        { status: 'succeeded', result: 'null', location: `/reports/${i}` } as const,
        { status: 'failed', error: problem('jobHandlerFailed', `boom ${i}`) } as const,
      ][i % 3] as JobOutcome;
    const seen = { signalled: 0, finished: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const ids = await acceptMany(api, `finish-${round}`, PER_ROUND, (i) => (i % 2 === 0 ? 'https://hooks.example.com/done' : undefined));
      await claimExactly(worker, 'worker', ids, LONG_LEASE_MS);
      const [finishes, cancels] = await race(
        orderOf(round),
        round,
        () => Promise.all(ids.map((id, i) => staggered(i, () => worker.finishJob(id, 1, outcomeOf(i), Date.now())))),
        () => Promise.all(ids.map((id, i) => staggered(i + 2, () => (i % 2 === 0 ? api : other).cancelJob('alice', id, Date.now())))),
      );
      expect(finishes).toEqual(ids.map(() => true));
      await Promise.all(
        ids.map(async (id, i) => {
          const cancel = at(cancels, i);
          const outcome = outcomeOf(i);
          const { job, types } = await history(api, id);
          if (cancel.kind === 'signalled') {
            seen.signalled++;
            expect(cancel.job.status).toBe('running');
            expect(job).toMatchObject({ status: 'canceled', error: { type: CANCELED } });
            expect(job.result).toBeUndefined();
            expect(job.resultLocation).toBeUndefined();
            expect(types).toEqual(['job.running', 'job.canceled']);
          } else {
            seen.finished++;
            expect(cancel.kind).toBe('finished');
            expect(cancel.kind === 'finished' && cancel.job.status).toBe(outcome.status);
            expect(job.status).toBe(outcome.status);
            if (outcome.status === 'succeeded')
              expect(job).toMatchObject({ result: outcome.result, ...(outcome.location ? { resultLocation: outcome.location } : {}) });
            if (outcome.status === 'failed') expect(job.error).toEqual(outcome.error);
            expect(types).toEqual(['job.running', `job.${outcome.status}`]);
          }
          // The webhook announces how the job really ended.
          const full = await api.getJob('alice', id);
          if (i % 2 === 0) {
            expect(full?.deliveries?.map((delivery) => delivery.eventType)).toEqual([`job.${job.status}`]);
            expect(JSON.parse(full?.deliveries?.[0]?.payload ?? '{}')).toMatchObject({ type: `job.${job.status}`, data: { id, status: job.status } });
          } else {
            expect(full?.deliveries).toBeUndefined();
          }
          // Later, both are answered from the finished job, which stays as it is.
          expect((await other.cancelJob('alice', id, Date.now())).kind).toBe('finished');
          expect(await worker.finishJob(id, 1, { status: 'succeeded', result: '{"late":true}' }, Date.now())).toBe(false);
          expect((await api.getJob('alice', id))?.version).toBe(job.version);
        }),
      );
    }
    expect(seen.signalled).toBeGreaterThan(0);
    expect(seen.finished).toBeGreaterThan(0);
  });

  it('two processes racing to claim the same due jobs: each claimed once, with fence 1, none lost', async () => {
    const [a, b] = (await db.open(2)) as [Store, Store];
    const limits = [1, 3, 5, 8];
    const batch = 24;
    for (let round = 0; round < 30; round++) {
      const ids = await acceptMany(round % 2 === 0 ? a : b, `claim-${round}`, batch);
      const lanes = [a, b, a, b].map((engine, lane) => async () => {
        const owner = `lane-${lane}`;
        const jobs: ClaimedJob[] = [];
        for (;;) {
          const claimed = await engine.claimJobs({ owner, limit: at(limits, (lane + round) % limits.length), now: Date.now(), leaseMs: LONG_LEASE_MS });
          if (claimed.length === 0) return { owner, engine, jobs };
          jobs.push(...claimed);
        }
      });
      const claims = claimsById(await Promise.all(lanes.map((lane, i) => staggered(i + round, lane))));
      expect([...claims.keys()].sort()).toEqual([...ids].sort());
      for (const { job } of claims.values()) {
        expect(job).toMatchObject({ fence: 1, attempts: 1 });
        expect(job.takenOverFrom).toBeUndefined();
      }
      expect(await a.claimJobs({ owner: 'late', limit: batch, now: Date.now(), leaseMs: LONG_LEASE_MS })).toEqual([]);
      // One claim each: one job.running event, version 1.
      expect(await b.jobVersions(ids)).toEqual(new Map(ids.map((id) => [id, 1])));
    }
  });

  it('many same-key submissions racing a sweep that expires the key record: exactly one new job, and every answer names it', async () => {
    const [a, b] = (await db.open(2)) as [Store, Store];
    // Sweeping one record a statement spreads the sweep among the submissions.
    const [sweeper] = (await db.open(1, { sweepBatchSize: 1 })) as [Store];
    const keysPerRound = 6;
    const submissionsPerKey = 8;
    const seen = { swept: 0, rebound: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const order = orderOf(round);
      const base = Date.now();
      const keys = Array.from({ length: keysPerRound }, (_, k) => `same-${round}-${k}`);
      // Each key's record expired a second ago; the jobs of half of them finished long enough ago to be swept too.
      const old = (await Promise.all(keys.map((key) => a.acceptJob(acceptRequest(key, { now: base - 20_000, keyExpiresAt: base - 1000 }))))).map(
        (outcome) => outcome.jobId,
      );
      const claimed = await a.claimJobs({ owner: 'w', limit: keysPerRound, now: base - 20_000, leaseMs: LONG_LEASE_MS });
      expect(claimed.map((job) => job.id).sort()).toEqual([...old].sort());
      await Promise.all(old.map((id, k) => a.finishJob(id, 1, { status: 'succeeded', result: '{}' }, k % 2 === 0 ? base - 15_000 : base)));

      const fingerprintOf = (key: string, j: number) => (j % 4 === 3 ? 'fp-other' : `fp-${key}`);
      const [outcomes, swept] = await race(
        order,
        round,
        () =>
          Promise.all(
            keys.map((key) =>
              Promise.all(
                Array.from({ length: submissionsPerKey }, (_, j) =>
                  staggered(j, () => (j % 2 === 0 ? a : b).acceptJob(acceptRequest(key, { fingerprint: fingerprintOf(key, j) }))),
                ),
              ),
            ),
          ),
        () => sweeper.sweep(Date.now(), base - 10_000),
      );
      // Every expired record is either swept or rebound by a submission; the old finished jobs go.
      expect(swept.keys).toBeLessThanOrEqual(keysPerRound);
      expect(swept.jobs).toBe(keysPerRound / 2);
      if (order === 'first-then-second') expect(swept.keys).toBe(0);
      if (order === 'second-then-first') expect(swept.keys).toBe(keysPerRound);
      seen.swept += swept.keys;
      seen.rebound += keysPerRound - swept.keys;

      await Promise.all(
        keys.map(async (key, k) => {
          const answers = at(outcomes, k);
          const created = answers.map((outcome, j) => ({ outcome, j })).filter(({ outcome }) => outcome.kind === 'created');
          expect(created, `key ${key}: ${JSON.stringify(answers)}`).toHaveLength(1);
          const { outcome: winner, j: winnerIndex } = at(created, 0);
          const expected = answers.map(
            (_, j): AcceptOutcome =>
              j === winnerIndex ? winner : { kind: fingerprintOf(key, j) === fingerprintOf(key, winnerIndex) ? 'replayed' : 'mismatch', jobId: winner.jobId },
          );
          expect(answers).toEqual(expected);
          expect(winner.jobId).not.toBe(at(old, k));
          expect((await a.getJob('alice', winner.jobId))?.status).toBe('queued');
          // The key now binds the new job, in every process.
          expect(await b.acceptJob(acceptRequest(key, { fingerprint: fingerprintOf(key, winnerIndex) }))).toEqual({ kind: 'replayed', jobId: winner.jobId });
          expect((await a.getJob('alice', at(old, k)))?.status).toBe(k % 2 === 0 ? undefined : 'succeeded');
        }),
      );
      // The new records are live: a sweep now takes none of them.
      expect(await sweeper.sweep(Date.now(), base - 10_000)).toEqual({ keys: 0, jobs: 0 });
    }
    expect(seen.swept).toBeGreaterThan(0);
    expect(seen.rebound).toBeGreaterThan(0);
  });

  it("renewals (or a late finish) racing a takeover: exactly one wins; after a takeover the old owner's renewal reports the lease lost and its writes are refused", async () => {
    const engines = await db.open(3);
    const [owner, rescuerA, rescuerB] = engines as [Store, Store, Store];
    const seen = { kept: 0, takenOver: 0 };
    // Every fifth job's slow owner reports its outcome instead of renewing: a finish with a lapsed lease.
    const finishesLate = (i: number) => i % 5 === 4;
    for (let round = 0; round < ROUNDS; round++) {
      const order = orderOf(round);
      const ids = await acceptMany(owner, `renew-${round}`, PER_ROUND);
      await claimExactly(owner, 'slow-owner', ids, SHORT_LEASE_MS);
      await sleep(LEASE_LAPSE_MS);
      const half = PER_ROUND / 2;
      const [claims, ownerWrites] = await race(
        order,
        round,
        () =>
          Promise.all([
            claimFor(rescuerA, 'rescuer-a', half).then((jobs) => ({ owner: 'rescuer-a', engine: rescuerA, jobs })),
            later(round % 2, () => claimFor(rescuerB, 'rescuer-b', PER_ROUND - half)).then((jobs) => ({ owner: 'rescuer-b', engine: rescuerB, jobs })),
          ]),
        // Every third job has two renewals in flight at once (the renewal timer fired while one hung).
        () =>
          Promise.all(
            ids.map((id, i) =>
              staggered(i, async () =>
                finishesLate(i)
                  ? { finished: await owner.finishJob(id, 1, { status: 'succeeded', result: '{"who":"old"}' }, Date.now()) }
                  : {
                      renewals: await Promise.all([
                        owner.renewLease(id, 1, LONG_LEASE_MS, Date.now()),
                        ...(i % 3 === 0 ? [later(0, () => owner.renewLease(id, 1, LONG_LEASE_MS, Date.now()))] : []),
                      ]),
                    },
              ),
            ),
          ),
      );
      const takenOver = claimsById(claims);
      if (order === 'first-then-second') expect(takenOver.size).toBe(PER_ROUND);
      if (order === 'second-then-first') expect(takenOver.size).toBe(0);
      seen.takenOver += takenOver.size;
      seen.kept += PER_ROUND - takenOver.size;
      // A renewed lease holds: nobody else takes those jobs.
      expect((await Promise.all(engines.map((engine, i) => claimFor(engine, `late-${i}`, PER_ROUND)))).flat()).toEqual([]);

      await Promise.all(
        ids.map(async (id, i) => {
          const taken = takenOver.get(id);
          const written = at(ownerWrites, i);
          if ('finished' in written) expect(written.finished).toBe(!taken);
          else for (const renewal of written.renewals) expect(renewal).toEqual({ held: !taken, cancelRequested: false });
          if (taken) {
            expect(taken.job).toMatchObject({ fence: 2, attempts: 2, takenOverFrom: 'slow-owner' });
            const now = Date.now();
            // Whatever the old owner tries next is refused, and changes nothing.
            expect(await owner.renewLease(id, 1, LONG_LEASE_MS, now)).toEqual({ held: false, cancelRequested: false });
            expect(await owner.reportProgress(id, 1, { percent: 99 }, now)).toBe(false);
            expect(await owner.retryJob(id, 1, problem('jobHandlerFailed', 'old owner'), now, now)).toBe(false);
            expect(await owner.releaseJob(id, 1, now)).toBe(false);
            expect(await owner.finishJob(id, 1, { status: 'succeeded', result: '{"who":"old"}' }, now)).toBe(false);
            expect(await taken.engine.renewLease(id, 2, LONG_LEASE_MS, now)).toEqual({ held: true, cancelRequested: false });
            expect(await taken.engine.reportProgress(id, 2, { percent: 50 }, now)).toBe(true);
            expect(await taken.engine.finishJob(id, 2, { status: 'succeeded', result: '{"who":"new"}' }, now)).toBe(true);
          } else if (!finishesLate(i)) {
            expect(await owner.finishJob(id, 1, { status: 'succeeded', result: '{"who":"old"}' }, Date.now())).toBe(true);
          }
          const { job, types } = await history(owner, id);
          expect(job).toMatchObject({ status: 'succeeded', result: taken ? '{"who":"new"}' : '{"who":"old"}', attempts: taken ? 2 : 1 });
          expect(types).toEqual(taken ? ['job.running', 'job.running', 'job.progress', 'job.succeeded'] : ['job.running', 'job.succeeded']);
        }),
      );
    }
    expect(seen.kept).toBeGreaterThan(0);
    expect(seen.takenOver).toBeGreaterThan(0);
  });
});
