import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ProblemError } from '../src/core/problems.js';
import { JobEngine } from '../src/engine/job-engine.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import { SQL } from '../src/store/postgres/statements.js';
import type { AcceptRequest, ClaimedJob, EventQuery, Store, StreamedEvent } from '../src/store/store.js';
import { acceptRequest, driversUnderTest, useDatabase } from './driver-support.js';
import { freshSchema, TEST_DATABASE_URL } from './postgres-support.js';

/*
 * The log of every job's events (what GET /jobs/events streams), run against each driver: every
 * change of every job, acceptance included, after a cursor, in commit order, filtered; resumable
 * from any cursor it gave out, across processes and past the sweeper.
 */

const DRIVERS = driversUnderTest('af_event_log');

/**
 * Waits until no committed event after `after` is held back by an older transaction still running
 * (on PostgreSQL, any of the cluster's: other suites run beside this one); from then on every
 * event committed so far is read.
 */
async function settle(engine: Store, after: string): Promise<void> {
  for (let reads = 0; reads < 500; reads++) {
    if (!(await engine.readEvents({ after })).heldBack) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('events stayed held back');
}

/** Every event after `after`, read a page of `limit` at a time, and the cursor after the last read. */
async function readAll(engine: Store, query: EventQuery): Promise<{ events: StreamedEvent[]; cursor: string }> {
  await settle(engine, query.after);
  const events: StreamedEvent[] = [];
  let after = query.after;
  for (let reads = 0; reads < 100; reads++) {
    const slice = await engine.readEvents({ ...query, after });
    events.push(...slice.events);
    if (slice.cursor === after && slice.events.length === 0) return { events, cursor: after };
    after = slice.cursor;
  }
  throw new Error('the log did not come to an end');
}

const summary = (events: StreamedEvent[]) => events.map((event) => [event.jobId, event.type]);

describe.each(DRIVERS)('the $name event log', ({ database }) => {
  const databases = useDatabase(database);
  /** One more engine on the test's database (the first call makes the database). */
  const open = async (): Promise<Store> => (await databases.open(1))[0] as Store;

  async function acceptOne(engine: Store, key: string, overrides: Partial<AcceptRequest> = {}): Promise<string> {
    const outcome = await engine.acceptJob(acceptRequest(key, overrides));
    expect(outcome.kind).toBe('created');
    return outcome.jobId;
  }

  async function claimOne(engine: Store): Promise<ClaimedJob> {
    const [claimed] = await engine.claimJobs({ owner: 'worker', limit: 1, now: Date.now(), leaseMs: 30_000 });
    if (!claimed) throw new Error('nothing was claimed');
    return claimed;
  }

  it("logs every job's changes, acceptance first, in commit order after a cursor, from two processes", async () => {
    const first = await open();
    const second = await open();
    const start = await first.eventCursor();
    const a = await acceptOne(first, 'a');
    const b = await acceptOne(second, 'b', { principal: 'bob', operation: 'other' });
    const claimed = await claimOne(second);
    expect(claimed.id).toBe(a);
    await first.reportProgress(a, claimed.fence, { percent: 50 }, Date.now());
    await second.finishJob(a, claimed.fence, { status: 'succeeded', result: '{"ok":1}' }, Date.now());

    const { events, cursor } = await readAll(second, { after: start });
    expect(summary(events)).toEqual([
      [a, 'job.queued'],
      [b, 'job.queued'],
      [a, 'job.running'],
      [a, 'job.progress'],
      [a, 'job.succeeded'],
    ]);
    // An acceptance's event is the job as accepted; every later one the job after its change.
    expect(JSON.parse(events[0]?.data ?? '')).toMatchObject({ id: a, operation: 'createReport', status: 'queued', attempts: 0, maxAttempts: 3 });
    expect(JSON.parse(events[1]?.data ?? '')).toMatchObject({ id: b, operation: 'other', status: 'queued' });
    expect(events[1]?.principal).toBe('bob');
    expect(JSON.parse(events[4]?.data ?? '')).toMatchObject({ id: a, status: 'succeeded', result: { ok: 1 } });
    expect(new Set(events.map((event) => event.cursor)).size).toBe(events.length);

    // From any event's cursor, exactly the ones after it; from the last read's cursor, nothing until something new.
    expect(summary((await readAll(first, { after: events[1]?.cursor ?? '' })).events)).toEqual(summary(events.slice(2)));
    expect((await first.readEvents({ after: cursor })).events).toEqual([]);
    const c = await acceptOne(first, 'c');
    expect(summary((await readAll(first, { after: cursor })).events)).toEqual([[c, 'job.queued']]);
    // A stream that starts now (no cursor) starts after everything committed so far.
    expect((await first.readEvents({ after: await first.eventCursor() })).events).toEqual([]);
  });

  it('reads a page at a time in order, and never past the limit', async () => {
    const engine = await open();
    const start = await engine.eventCursor();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await acceptOne(engine, `k${i}`));
    await settle(engine, start);
    const firstPage = await engine.readEvents({ after: start, limit: 3 });
    expect(firstPage.events.map((event) => event.jobId)).toEqual(ids.slice(0, 3));
    expect(firstPage.cursor).toBe(firstPage.events[2]?.cursor);
    const rest = await readAll(engine, { after: firstPage.cursor, limit: 3 });
    expect(rest.events.map((event) => event.jobId)).toEqual(ids.slice(3));
  });

  it('filters by principal, operation and the state an event leaves its job in', async () => {
    const engine = await open();
    const start = await engine.eventCursor();
    const a = await acceptOne(engine, 'a');
    const b = await acceptOne(engine, 'b', { principal: 'bob' });
    const c = await acceptOne(engine, 'c', { operation: 'other' });
    const claimed = await claimOne(engine);
    expect(claimed.id).toBe(a);
    await engine.reportProgress(a, claimed.fence, { percent: 10 }, Date.now());
    await engine.finishJob(a, claimed.fence, { status: 'failed', error: { type: 'about:blank', title: 'no', status: 500 } }, Date.now());
    expect((await engine.cancelJob('bob', b, Date.now())).kind).toBe('canceled');

    expect(summary((await readAll(engine, { after: start, principal: 'bob' })).events)).toEqual([
      [b, 'job.queued'],
      [b, 'job.canceled'],
    ]);
    expect(summary((await readAll(engine, { after: start, operation: 'other' })).events)).toEqual([[c, 'job.queued']]);
    expect(summary((await readAll(engine, { after: start, principal: 'alice', statuses: ['running'] })).events)).toEqual([
      [a, 'job.running'],
      [a, 'job.progress'],
    ]);
    expect(summary((await readAll(engine, { after: start, statuses: ['failed', 'canceled'] })).events)).toEqual([
      [a, 'job.failed'],
      [b, 'job.canceled'],
    ]);
    expect((await readAll(engine, { after: start, statuses: ['succeeded'] })).events).toEqual([]);
    // A read whose events all fail the filter still moves its cursor on, past them.
    await settle(engine, start);
    const filtered = await engine.readEvents({ after: start, principal: 'carol' });
    expect(filtered.events).toEqual([]);
    expect(filtered.cursor).not.toBe(start);
    expect((await engine.readEvents({ after: filtered.cursor })).events).toEqual([]);
  });

  it('refuses a cursor it never gave out with last-event-id-invalid, and accepts every one it gave', async () => {
    const engine = await open();
    const start = await engine.eventCursor();
    await acceptOne(engine, 'a');
    await settle(engine, start);
    const slice = await engine.readEvents({ after: start });
    for (const cursor of [start, slice.cursor, slice.events[0]?.cursor ?? '']) await expect(engine.checkEventCursor(cursor)).resolves.toBeUndefined();
    const beyond = Buffer.from('e99999999999.99999', 'latin1').toString('base64url');
    for (const cursor of ['', 'nope', '12', Buffer.from('e1.x').toString('base64url'), `${slice.cursor}!`, beyond]) {
      const refused = await engine.checkEventCursor(cursor).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused, cursor).toBeInstanceOf(ProblemError);
      expect((refused as ProblemError).problem).toMatchObject({ type: 'urn:asyncfirst:problem:last-event-id-invalid', status: 400 });
    }
    await expect(engine.readEvents({ after: 'nope' })).rejects.toBeInstanceOf(ProblemError);
  });

  it("goes on from a cursor older than what the sweeper kept: the swept jobs' events are gone, none after them is skipped", async () => {
    const engine = await open();
    const start = await engine.eventCursor();
    const old = await acceptOne(engine, 'old');
    const claimed = await claimOne(engine);
    const now = Date.now();
    await engine.finishJob(old, claimed.fence, { status: 'succeeded', result: '{}' }, now);
    const { cursor } = await readAll(engine, { after: start });
    // Every event of the log is swept, the newest included: the next one still comes after the cursor.
    expect((await engine.sweep(now + 10, now + 5)).jobs).toBe(1);
    expect((await engine.readEvents({ after: start })).events).toEqual([]);
    const fresh = await acceptOne(engine, 'fresh');
    expect(summary((await readAll(engine, { after: cursor })).events)).toEqual([[fresh, 'job.queued']]);
    expect(summary((await readAll(engine, { after: start })).events)).toEqual([[fresh, 'job.queued']]);
    await expect(engine.checkEventCursor(cursor)).resolves.toBeUndefined();
  });
});

describe('the PostgreSQL event log under concurrent transactions', () => {
  const { schema, drop } = freshSchema('af_event_order');
  const engines: Store[] = [];
  const clients: pg.Client[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => {});
    for (const engine of engines.splice(0)) await engine.close();
    await drop();
  });
  const start = async () => {
    const engine = await JobEngine.start(new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax: 2 }));
    engines.push(engine);
    return engine;
  };
  const connect = async () => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema}` });
    await client.connect();
    clients.push(client);
    return client;
  };

  it('skips nothing when a transaction that began first commits last: its events wait, then come first', async () => {
    const engine = await start();
    const early = (await engine.acceptJob(acceptRequest('early'))).jobId;
    // Past the early job's own job.queued, which another suite's open transaction may still hold back.
    const { cursor } = await readAll(engine, { after: await engine.eventCursor() });
    // The early transaction writes an event (taking its transaction id and a smaller row id) and stays open…
    const slow = await connect();
    await slow.query('BEGIN');
    await slow.query(`INSERT INTO job_events (job_id, version, type, data, created_at) VALUES ($1, 1, 'job.progress', '{}', 0)`, [early]);
    // …while a later one commits an acceptance: a larger transaction id, and a larger row id.
    const late = (await engine.acceptJob(acceptRequest('late'))).jobId;
    const [ids] = (
      await slow.query<{ early: string; late: string }>(
        `SELECT (SELECT id FROM job_events WHERE job_id = $1 AND version = 1) AS early, (SELECT id FROM job_events WHERE job_id = $2) AS late`,
        [early, late],
      )
    ).rows;
    expect(Number(ids?.early)).toBeLessThan(Number(ids?.late));

    // A reader by row id alone would deliver the late event now and move past the early one for good.
    // This one delivers nothing yet, and says events are held back.
    const waiting = await engine.readEvents({ after: cursor });
    expect(waiting.events).toEqual([]);
    expect(waiting.heldBack).toBe(true);
    await slow.query('COMMIT');
    const both = await readAll(engine, { after: waiting.cursor });
    expect(summary(both.events)).toEqual([
      [early, 'job.progress'],
      [late, 'job.queued'],
    ]);
    expect((await engine.readEvents({ after: both.cursor })).events).toEqual([]);
  });

  it("keeps a job's events in order when a batch that took its transaction id first records the job's next change last", async () => {
    const engine = await start();
    const cursor = await engine.eventCursor();
    const first = (await engine.acceptJob(acceptRequest('first'))).jobId;
    const second = (await engine.acceptJob(acceptRequest('second'))).jobId;
    const claimed = await engine.claimJobs({ owner: 'w', limit: 2, now: Date.now(), leaseMs: 30_000 });
    expect(claimed.map((job) => job.id)).toEqual([first, second]);
    // Another session holds the first job's row, so the batch that finishes both takes its
    // transaction id on that row and waits there…
    const holder = await connect();
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE', [first]);
    const finishing = Promise.all(claimed.map((job) => engine.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, Date.now())));
    const [{ pid }] = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
    const waiting = async () =>
      Number((await holder.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid])).rows[0]?.n);
    for (let tries = 0; (await waiting()) === 0; tries++) {
      if (tries > 200) throw new Error('the batch never waited for the held row');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // …while a later transaction (a larger id) records the second job's next change and commits.
    const progress = await connect();
    await progress.query('SET lock_timeout = 2000');
    await progress.query('BEGIN');
    const bumped = await progress.query<{ version: number }>(
      `UPDATE jobs SET version = version + 1, progress = '{"percent":50}' WHERE id = $1 RETURNING version`,
      [second],
    );
    const version = bumped.rows[0]?.version as number;
    await progress.query(`INSERT INTO job_events (job_id, version, type, data, created_at) VALUES ($1, $2, 'job.progress', '{}', 0)`, [second, version]);
    await progress.query('COMMIT');
    await holder.query('COMMIT');
    expect(await finishing).toEqual([true, true]);

    // The batch's event of the second job was written again under a transaction id after the progress's: in order.
    const log = await readAll(engine, { after: cursor });
    const ofSecond = log.events.filter((event) => event.jobId === second).map((event) => event.type);
    expect(ofSecond).toEqual(['job.queued', 'job.running', 'job.progress', 'job.succeeded']);
    const ofFirst = log.events.filter((event) => event.jobId === first).map((event) => event.type);
    expect(ofFirst).toEqual(['job.queued', 'job.running', 'job.succeeded']);
  });

  it("finds a job's event written by a transaction older than the one that wrote the job's previous event, so the driver runs it again", async () => {
    const engine = await start();
    const id = (await engine.acceptJob(acceptRequest('k'))).jobId;
    // This transaction takes its id first…
    const older = await connect();
    await older.query('BEGIN');
    await older.query('SELECT pg_current_xact_id()');
    // …then another records the job's next event and commits (the claim: version 1)…
    const [claimed] = await engine.claimJobs({ owner: 'w', limit: 1, now: Date.now(), leaseMs: 30_000 });
    expect(claimed?.id).toBe(id);
    // …and the older one then records version 2: it would be read before version 1.
    const written = await older.query<{ out_of_order: boolean }>({
      name: 'test_insert_events',
      text: SQL.insertEvents.text,
      values: [[id], [2], ['job.progress'], ['{}'], [Date.now()], 'test_channel', '{}'],
    });
    expect(written.rows[0]?.out_of_order).toBe(true);
    await older.query('ROLLBACK');
    // Written in a transaction that took its id after the claim's, the same event is in order.
    await older.query('BEGIN');
    const again = await older.query<{ out_of_order: boolean }>({
      name: 'test_insert_events',
      text: SQL.insertEvents.text,
      values: [[id], [2], ['job.progress'], ['{}'], [Date.now()], 'test_channel', '{}'],
    });
    expect(again.rows[0]?.out_of_order).toBe(false);
    await older.query('ROLLBACK');
  });
});
