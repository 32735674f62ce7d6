import { type ClientRequest, get as httpGet, type IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import type { AnyHandler } from '../src/handlers.js';
import { appDatabases } from './driver-support.js';
import { ALICE, BOB } from './helpers.js';
import { type SseEvent, SseReader } from './sse-reader.js';
import { customApp, type DemoProcess, gates, killDemoProcess, startDemoProcess } from './worker-test-support.js';

/*
 * GET /jobs/events over real sockets, on both drivers: every event of the caller's jobs (an
 * operator's: every job's) in commit order, from now or after Last-Event-ID (also after a restart
 * of the server), filtered by operation and status, under the per-job stream's limit and heartbeat.
 */

const REPORT = { title: 'streamed', format: 'csv', rowCount: 7, bytes: 70, sha256: 'b'.repeat(64) };

const DATABASES = appDatabases('af_job_events');

describe.each(DATABASES)('GET /jobs/events on $name', (database) => {
  /* Titles "gated-…" run until the test opens that title's gate; "fail" fails; others succeed at once. */
  const { gateFor, release, openAll } = gates();
  const handler: AnyHandler = async (input, context) => {
    const body = input.body as { title: string };
    if (body.title.startsWith('gated')) {
      await new Promise<void>((resolve, reject) => {
        void gateFor(body.title).promise.then(resolve);
        context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
      });
    }
    if (body.title === 'fail') throw new Error('no source');
    return REPORT;
  };

  const apps: AsyncFirstApp[] = [];
  const requests: ClientRequest[] = [];
  const processes: DemoProcess[] = [];
  const drops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    openAll();
    for (const request of requests.splice(0)) request.destroy();
    for (const app of apps.splice(0)) await app.close();
    for (const demo of processes.splice(0)) await killDemoProcess(demo);
    for (const drop of drops.splice(0)) await drop();
  });

  function databaseForTest() {
    const made = database.make();
    drops.push(made.drop);
    return made;
  }

  async function listen(made: ReturnType<typeof databaseForTest>, config: Partial<AsyncFirstConfig> = {}) {
    const app = await customApp({
      dbPath: made.databaseUrl,
      createReport: handler,
      createReportOptions: { maxAttempts: 1 },
      config: { port: 0, host: '127.0.0.1', workerConcurrency: 4, sseHeartbeatMs: 60_000, ...made.config, ...config },
    });
    apps.push(app);
    const address = await app.listen();
    return { app, address };
  }

  async function accept(address: string, title: string, headers: Record<string, string> = ALICE) {
    const response = await fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `key-${title}`, ...headers },
      body: JSON.stringify({ title, rows: 7 }),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  }

  function open(address: string, query = '', headers: Record<string, string> = ALICE) {
    return new Promise<{ response: IncomingMessage; request: ClientRequest }>((resolve, reject) => {
      const request = httpGet(`${address}/jobs/events${query}`, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (response) =>
        resolve({ response, request }),
      );
      requests.push(request);
      request.on('error', reject);
    });
  }

  /** Opens a stream that must be accepted; resolves once its first line (the cursor it starts after) arrived. */
  async function stream(address: string, query = '', headers: Record<string, string> = ALICE) {
    const { response, request } = await open(address, query, headers);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    const reader = new SseReader(response, request);
    const first = await reader.next();
    expect(first).toMatchObject({ kind: 'event', event: undefined, data: '' });
    const start = first?.kind === 'event' ? first.id : undefined;
    expect(start).toMatch(/^[A-Za-z0-9_-]+$/);
    return { reader, start: start as string };
  }

  async function problemOf(response: IncomingMessage) {
    response.setEncoding('utf8');
    let text = '';
    for await (const chunk of response) text += String(chunk);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    return JSON.parse(text) as { type: string; status: number; errors?: Array<{ in: string }> };
  }

  /** Events (not cursor-only lines) until `count` events arrived. */
  async function events(reader: SseReader, count: number): Promise<SseEvent[]> {
    const seen: SseEvent[] = [];
    while (seen.length < count) {
      const item = await reader.next();
      if (!item) throw new Error(`the stream ended after ${seen.length} events`);
      if (item.kind === 'event' && item.event !== undefined) seen.push(item);
    }
    return seen;
  }

  const summary = (seen: SseEvent[]) => seen.map((event) => [(JSON.parse(event.data) as { id: string }).id, event.event]);

  it("streams the caller's jobs' events in commit order, and an operator's stream every job's with whose it is", async () => {
    const { address } = await listen(databaseForTest(), { adminPrincipals: 'bob' });
    const alice = await stream(address);
    const operator = await stream(address, '', BOB);
    const a = await accept(address, 'gated-a');
    const b = await accept(address, 'b', BOB);
    const aliceSaw = await events(alice.reader, 2);
    expect(summary(aliceSaw)).toEqual([
      [a, 'job.queued'],
      [a, 'job.running'],
    ]);
    release('gated-a');
    const finished = await events(alice.reader, 1);
    expect(summary(finished)).toEqual([[a, 'job.succeeded']]);
    expect(JSON.parse(finished[0]?.data ?? '')).toMatchObject({ id: a, status: 'succeeded', result: REPORT });
    expect(JSON.parse(aliceSaw[0]?.data ?? '')).not.toHaveProperty('principal');

    // The operator sees both principals' jobs, each event naming whose job it is, and each job's events in order.
    const all = await events(operator.reader, 6);
    const ofJob = (id: string) => all.filter((event) => JSON.parse(event.data).id === id).map((event) => event.event);
    expect(ofJob(a)).toEqual(['job.queued', 'job.running', 'job.succeeded']);
    expect(ofJob(b)).toEqual(['job.queued', 'job.running', 'job.succeeded']);
    expect(new Set(all.map((event) => JSON.parse(event.data).principal))).toEqual(new Set(['alice', 'bob']));
    expect(new Set(all.map((event) => event.id)).size).toBe(6);
  });

  it('resumes after Last-Event-ID, also from a server started again on the database, with nothing missed or repeated', async () => {
    const made = databaseForTest();
    const first = await listen(made, { workerConcurrency: 0 });
    const { reader, start } = await stream(first.address);
    const one = await accept(first.address, 'one');
    const [queued] = await events(reader, 1);
    expect(summary(queued ? [queued] : [])).toEqual([[one, 'job.queued']]);
    reader.close();
    const two = await accept(first.address, 'two');
    await first.app.close();
    apps.splice(apps.indexOf(first.app), 1);

    // Another server on the same database (with a worker now) resumes after the event the client saw last.
    const second = await listen(made);
    const resumed = await stream(second.address, '', { ...ALICE, 'last-event-id': queued?.id as string });
    expect(resumed.start).toBe(queued?.id);
    const rest = await events(resumed.reader, 5);
    const ofJob = (id: string) => rest.filter((event) => JSON.parse(event.data).id === id).map((event) => event.event);
    expect(ofJob(one)).toEqual(['job.running', 'job.succeeded']);
    expect(ofJob(two)).toEqual(['job.queued', 'job.running', 'job.succeeded']);
    // From the start cursor of the very first stream, the whole history again, in the same order.
    const replay = await stream(second.address, '', { ...ALICE, 'last-event-id': start });
    expect((await events(replay.reader, 6)).map((event) => event.id)).toEqual([queued?.id, ...rest.map((event) => event.id)]);
  });

  it('filters by status and operation, and moves its cursor past what it leaves out', async () => {
    const { address } = await listen(databaseForTest());
    const ended = await stream(address, '?status=succeeded&status=failed');
    const running = await stream(address, '?status=running&operation=createReport');
    const none = await stream(address, '?operation=estimateReport');
    const ok = await accept(address, 'ok');
    const failed = await accept(address, 'fail');
    const endings = await events(ended.reader, 2);
    expect(summary(endings).sort()).toEqual(
      [
        [ok, 'job.succeeded'],
        [failed, 'job.failed'],
      ].sort(),
    );
    expect(summary(await events(running.reader, 2)).sort()).toEqual(
      [
        [ok, 'job.running'],
        [failed, 'job.running'],
      ].sort(),
    );
    // The stream of another operation sends no event, only a cursor line past the ones it left out.
    for (;;) {
      const item = await none.reader.next();
      if (item?.kind !== 'event') continue;
      expect(item.event).toBeUndefined();
      if (item.id !== none.start) break;
    }
  });

  it('refuses a bad filter and a Last-Event-ID it never sent with 400 problem+json, holding no stream slot', async () => {
    const { address } = await listen(databaseForTest(), { sseMaxStreamsPerPrincipal: 1 });
    const badStatus = await open(address, '?status=lost');
    expect(badStatus.response.statusCode).toBe(400);
    const validation = await problemOf(badStatus.response);
    expect(validation).toMatchObject({ type: `${PROBLEM_TYPE_BASE}validation-failed`, status: 400 });
    expect(validation.errors?.[0]?.in).toBe('query');
    for (const lastEventId of ['7', 'not-a-cursor', Buffer.from('e999999999999.1').toString('base64url')]) {
      const bad = await open(address, '', { ...ALICE, 'last-event-id': lastEventId });
      expect(bad.response.statusCode, lastEventId).toBe(400);
      expect(await problemOf(bad.response)).toMatchObject({ type: `${PROBLEM_TYPE_BASE}last-event-id-invalid`, status: 400 });
    }
    const unauthorized = await open(address, '', {});
    expect(unauthorized.response.statusCode).toBe(401);
    // None of the refusals kept a slot: the one stream alice may hold opens.
    await stream(address);
  });

  it("shares the per-job stream's limit per principal and its heartbeat", async () => {
    const { address } = await listen(databaseForTest(), { sseMaxStreamsPerPrincipal: 2, sseHeartbeatMs: 100 });
    const job = await accept(address, 'gated-limit');
    const perJob = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = httpGet(`${address}/jobs/${job}/events`, { headers: ALICE, agent: false }, resolve);
      requests.push(request);
      request.on('error', reject);
    });
    expect(perJob.statusCode).toBe(200);
    const every = await stream(address);
    const third = await open(address);
    expect(third.response.statusCode).toBe(429);
    expect(third.response.headers['retry-after']).toBe('5');
    expect(await problemOf(third.response)).toMatchObject({ type: `${PROBLEM_TYPE_BASE}too-many-streams` });
    // Bob's limit is his own.
    await stream(address, '', BOB);
    let comments = 0;
    while (comments < 2) {
      const item = await every.reader.next();
      if (item?.kind === 'comment' && item.text === 'heartbeat') comments++;
    }
    // Closing the stream gives its slot back.
    every.reader.close();
    let reopened: IncomingMessage | undefined;
    for (let tries = 0; tries < 50 && reopened?.statusCode !== 200; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      reopened = (await open(address)).response;
    }
    expect(reopened?.statusCode).toBe(200);
  });

  it('sees the events of jobs a worker in another process runs', async () => {
    const made = databaseForTest();
    // The API process runs no worker; the other process does. (On SQLite the change check finds its
    // commits; on PostgreSQL its NOTIFY wakes the stream.)
    const { address } = await listen(made, { workerConcurrency: 0 });
    const worker = await startDemoProcess('worker', { DATABASE_URL: made.databaseUrl, ...made.env, WORKER_POLL_MS: '50', LOG_LEVEL: 'info' });
    processes.push(worker);
    const { reader } = await stream(address);
    const id = await accept(address, 'elsewhere');
    expect(summary(await events(reader, 3))).toEqual([
      [id, 'job.queued'],
      [id, 'job.running'],
      [id, 'job.succeeded'],
    ]);
  });
});
