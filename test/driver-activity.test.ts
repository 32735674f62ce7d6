import { describe, expect, it } from 'vitest';
import { problem } from '../src/core/problems.js';
import { acceptRequest, driversUnderTest, INPUT, useDatabase } from './driver-support.js';

/*
 * The dashboard's reads, on every driver: accepted and finished jobs per minute (its chart) and a
 * job's input (its job page).
 */

const MINUTE = 60_000;

describe.each(driversUnderTest('af_activity'))('the $name driver', ({ database }) => {
  const { open } = useDatabase(database);

  it('counts the jobs accepted per minute, and the jobs finished per minute in each end state, since a time', async () => {
    const [engine] = await open(1);
    if (!engine) throw new Error('no engine');
    const thisMinute = Math.floor(Date.now() / MINUTE) * MINUTE;
    const since = thisMinute - 10 * MINUTE;
    expect(await engine.jobActivity(since)).toEqual([]);

    // Accepted before the window (left out), in it, and in this minute.
    await engine.acceptJob(acceptRequest('old', { now: since - 1 }));
    await engine.acceptJob(acceptRequest('first', { now: since }));
    await engine.acceptJob(acceptRequest('third', { now: since + 2 * MINUTE + 59_999 }));
    for (const key of ['a', 'b', 'c']) await engine.acceptJob(acceptRequest(key, { now: thisMinute + 1 }));

    const claimed = await engine.claimJobs({ owner: 'w', limit: 10, now: Date.now(), leaseMs: 30_000 });
    expect(claimed).toHaveLength(6);
    const [j1, j2, j3, j4] = claimed;
    if (!j1 || !j2 || !j3 || !j4) throw new Error('fewer claims');
    expect(await engine.finishJob(j1.id, j1.fence, { status: 'succeeded', result: '{}' }, since - 5)).toBe(true);
    expect(await engine.finishJob(j2.id, j2.fence, { status: 'succeeded', result: '{}' }, since + MINUTE)).toBe(true);
    expect(await engine.finishJob(j3.id, j3.fence, { status: 'failed', error: problem('jobHandlerFailed', 'boom') }, since + MINUTE + 1)).toBe(true);
    expect(await engine.finishJob(j4.id, j4.fence, { status: 'canceled', error: problem('jobCanceled') }, thisMinute + 5)).toBe(true);

    expect(await engine.jobActivity(since)).toEqual([
      { minute: since, accepted: 1, succeeded: 0, failed: 0, canceled: 0 },
      { minute: since + MINUTE, accepted: 0, succeeded: 1, failed: 1, canceled: 0 },
      { minute: since + 2 * MINUTE, accepted: 1, succeeded: 0, failed: 0, canceled: 0 },
      { minute: thisMinute, accepted: 3, succeeded: 0, failed: 0, canceled: 1 },
    ]);
    // A retried job is no longer finished; its acceptance still counts.
    expect((await engine.retryEndedJob(undefined, j3.id, Date.now())).kind).toBe('queued');
    expect((await engine.jobActivity(since))[1]).toEqual({ minute: since + MINUTE, accepted: 0, succeeded: 1, failed: 0, canceled: 0 });
    expect(await engine.jobActivity(thisMinute)).toEqual([{ minute: thisMinute, accepted: 3, succeeded: 0, failed: 0, canceled: 1 }]);
  });

  it("adds up the jobs finished per minute across operations, whichever operation's jobs are older", async () => {
    const [engine] = await open(1);
    if (!engine) throw new Error('no engine');
    const thisMinute = Math.floor(Date.now() / MINUTE) * MINUTE;
    const since = thisMinute - 10 * MINUTE;
    for (const operation of ['alpha', 'createReport', 'zeta']) {
      for (const key of ['a', 'b']) await engine.acceptJob(acceptRequest(`${operation}-${key}`, { operation, now: since - MINUTE }));
    }
    const claimed = await engine.claimJobs({ owner: 'w', limit: 10, now: Date.now(), leaseMs: 30_000 });
    expect(claimed).toHaveLength(6);
    // One job of each operation finishes in the window's first minute; the others before it (alpha's), or in this minute.
    for (const [index, job] of claimed.entries()) {
      const at = index % 2 === 0 ? since + 1 : job.operation === 'alpha' ? since - 1 : thisMinute + 1;
      const outcome =
        job.operation === 'zeta' ? { status: 'failed' as const, error: problem('jobHandlerFailed', 'boom') } : { status: 'succeeded' as const, result: '{}' };
      expect(await engine.finishJob(job.id, job.fence, outcome, at)).toBe(true);
    }
    expect(await engine.jobActivity(since)).toEqual([
      { minute: since, accepted: 0, succeeded: 2, failed: 1, canceled: 0 },
      { minute: thisMinute, accepted: 0, succeeded: 1, failed: 1, canceled: 0 },
    ]);
  });

  it("reads a job's input for its own principal only", async () => {
    const [engine] = await open(1);
    if (!engine) throw new Error('no engine');
    const outcome = await engine.acceptJob(acceptRequest('k1'));
    expect(await engine.jobInput('alice', outcome.jobId)).toBe(INPUT);
    expect(await engine.jobInput('bob', outcome.jobId)).toBeUndefined();
    expect(await engine.jobInput('alice', '01ARZ3NDEKTSV4RRFFQ69G5FAV')).toBeUndefined();
  });
});
