import { type ClientRequest, get as httpGet, type IncomingMessage } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { reportHandlers } from '../src/demo/service.js';
import { type AnyHandler, PermanentJobError } from '../src/handlers.js';
import type { Store } from '../src/store/store.js';
import { ALICE, BOB, tempDir } from './helpers.js';
import { type SseEvent, type SseItem, SseReader } from './sse-reader.js';
import { customApp, type DemoProcess, gates, killDemoProcess, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * GET /jobs/{id}/events over a real socket: the job's changes as Server-Sent Events, in order,
 * resumable with Last-Event-ID, kept alive by heartbeats, limited per principal, and fed by a
 * worker in another process through the shared database. Streams are read with node:http, so a
 * test can drop a connection the way a client does (an aborted fetch leaves undici opening a
 * spare connection that holds server.close() for its 4 s keep-alive).
 */

const REPORT = { title: 'streamed', format: 'csv', rowCount: 7, bytes: 70, sha256: 'b'.repeat(64) };

interface JobView {
  id: string;
  status: string;
  progress?: { percent: number; message?: string };
  result?: { rowCount: number };
  error?: { type: string };
}

interface Problem {
  type: string;
  status: number;
  detail?: string;
}

interface EventRow {
  id: number;
  type: string;
  data: string;
}

const typesOf = (events: SseEvent[]) => events.map((event) => event.event);
const idsOf = (events: SseEvent[]) => events.map((event) => Number(event.id));

/** The events the store recorded for one of alice's jobs, oldest first (none for an unknown job). */
async function storedEvents(store: Store, jobId: string): Promise<EventRow[]> {
  return (await store.getJobEvents('alice', jobId, 0))?.events ?? [];
}

/** Asserts the common shape: strictly increasing ids, data is this job's JSON with the status the event names. */
function expectWellFormed(events: SseEvent[], jobId: string): void {
  const ids = idsOf(events);
  for (let index = 1; index < ids.length; index++) expect(ids[index]).toBeGreaterThan(ids[index - 1] as number);
  for (const event of events) {
    const job = JSON.parse(event.data) as JobView;
    expect(job.id).toBe(jobId);
    const expected = event.event === 'job.progress' ? 'running' : event.event?.replace(/^job\./, '');
    expect(job.status).toBe(expected);
  }
}

describe('GET /jobs/{id}/events streams the job’s changes over a real socket', () => {
  /*
   * Report titles choose what the job handler does: "gated-…" runs until the test opens that
   * title's gate (or the job is aborted); "steps-…" reports 10% and 20%, waits for its gate,
   * reports 70% and succeeds; "fail" fails permanently; anything else builds the demo report.
   */
  const { gateFor, release, openAll } = gates();
  const held = (title: string, signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      void gateFor(title).promise.then(resolve);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  const handler: AnyHandler = async (input, context) => {
    const body = input.body as { title: string; rows: number; format?: 'csv' | 'json' };
    if (body.title.startsWith('gated')) {
      await held(body.title, context.signal);
      return REPORT;
    }
    if (body.title.startsWith('steps')) {
      await context.progress(10, 'first tenth');
      await context.progress(20, 'second tenth');
      await held(body.title, context.signal);
      await context.progress(70, 'most of it');
      return REPORT;
    }
    if (body.title === 'fail') throw new PermanentJobError('the report source is gone');
    return reportHandlers.createReport({ params: {}, query: {}, body }, context);
  };

  let shared: { app: AsyncFirstApp; address: string; dbPath: string } | undefined;
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  const requests: ClientRequest[] = [];
  const processes: DemoProcess[] = [];
  beforeAll(async () => {
    shared = await listen({ workerConcurrency: 8, sseHeartbeatMs: 150 });
  });
  afterEach(async () => {
    openAll();
    for (const request of requests.splice(0)) request.destroy();
    for (const app of apps.splice(0)) await app.close();
    for (const demo of processes.splice(0)) await killDemoProcess(demo);
  });
  afterAll(async () => {
    await shared?.app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(config: Partial<AsyncFirstConfig> = {}, dbPath?: string) {
    let path = dbPath;
    if (path === undefined) {
      const tmp = tempDir();
      cleanups.push(tmp.cleanup);
      path = tmp.dbPath;
    }
    const app = await customApp({ dbPath: path, createReport: handler, config: { port: 0, host: '127.0.0.1', ...config } });
    const address = await app.listen();
    return { app, address, dbPath: path };
  }

  async function server(config?: Partial<AsyncFirstConfig>) {
    if (config === undefined) {
      if (!shared) throw new Error('the shared app did not start');
      return shared;
    }
    const own = await listen(config);
    apps.push(own.app);
    return own;
  }

  async function accept(address: string, title: string, rows = 7, headers: Record<string, string> = ALICE) {
    const response = await fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `key-${title}`, ...headers },
      body: JSON.stringify({ title, rows }),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  }

  /** Opens the job's event stream over node:http; the response is returned whatever its status. */
  function open(address: string, id: string, headers: Record<string, string> = ALICE) {
    return new Promise<{ response: IncomingMessage; request: ClientRequest }>((resolve, reject) => {
      const request = httpGet(`${address}/jobs/${id}/events`, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (response) =>
        resolve({ response, request }),
      );
      requests.push(request);
      request.on('error', reject);
    });
  }

  /** The whole body of a (non-stream) response, as JSON. */
  async function json<T>(response: IncomingMessage): Promise<T> {
    response.setEncoding('utf8');
    let text = '';
    for await (const chunk of response) text += String(chunk);
    return JSON.parse(text) as T;
  }

  /** Opens a stream that must be accepted, and a reader for it. */
  async function stream(address: string, id: string, headers: Record<string, string> = ALICE) {
    const { response, request } = await open(address, id, headers);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    return { reader: new SseReader(response, request), response };
  }

  it('sends job.queued (id 0), job.running, job.progress with rising percent, job.succeeded in order, with the job as data, then ends', async () => {
    const { address, app } = await server();
    const id = await accept(address, 'Streamed demo report', 300_000);
    const { reader, response } = await stream(address, id);
    expect(response.headers['cache-control']).toBe('no-cache');

    const events = await reader.rest();
    const types = typesOf(events);
    expect(types[0]).toBe('job.queued');
    expect(events[0]?.id).toBe('0');
    expect(types[1]).toBe('job.running');
    expect(types.at(-1)).toBe('job.succeeded');
    const middle = types.slice(2, -1);
    expect(middle.length).toBeGreaterThanOrEqual(3);
    expect(new Set(middle)).toEqual(new Set(['job.progress']));
    expectWellFormed(events, id);

    const percents = events.filter((event) => event.event === 'job.progress').map((event) => (JSON.parse(event.data) as JobView).progress?.percent ?? -1);
    for (let index = 1; index < percents.length; index++) expect(percents[index]).toBeGreaterThan(percents[index - 1] as number);
    expect(percents[0]).toBeGreaterThan(0);
    expect(percents.at(-1)).toBeLessThanOrEqual(100);
    const finished = JSON.parse(events.at(-1)?.data ?? '{}') as JobView;
    expect(finished.result?.rowCount).toBe(300_000);

    // Everything after the synthetic job.queued is the job's event log, in the stored order.
    const rows = await storedEvents(app.store, id);
    expect(events.slice(1).map((event) => ({ id: Number(event.id), type: event.event, data: event.data }))).toEqual(rows);
    // The stream ended by itself after the terminal event.
    expect(await reader.next()).toBeUndefined();
  });

  it('resumes with Last-Event-ID: a reconnect gets exactly the events after that id, none twice and none missed', async () => {
    const { address, app } = await server();
    const title = 'steps-resume';
    const id = await accept(address, title);
    const first = await stream(address, id);
    const seen = await first.reader.eventsUntil((event) => event.event === 'job.progress');
    expect(typesOf(seen)).toEqual(['job.queued', 'job.running', 'job.progress']);
    const lastId = seen.at(-1)?.id as string;
    expect(Number(lastId)).toBeGreaterThan(0);
    first.reader.close();

    // The handler is still held, so the job cannot have finished while nobody listened.
    const resumed = await stream(address, id, { ...ALICE, 'last-event-id': lastId });
    release(title);
    const replayed = await resumed.reader.rest();
    expect(typesOf(replayed)).toEqual(['job.progress', 'job.progress', 'job.succeeded']);
    expect(idsOf(replayed)[0]).toBeGreaterThan(Number(lastId));
    expectWellFormed(replayed, id);
    expect(replayed.map((event) => (JSON.parse(event.data) as JobView).progress?.percent)).toEqual([20, 70, 70]);

    const rows = await storedEvents(app.store, id);
    expect(replayed.map((event) => ({ id: Number(event.id), type: event.event, data: event.data }))).toEqual(rows.filter((row) => row.id > Number(lastId)));
    // Together, the two connections saw the whole history once: what a fresh stream replays now.
    const fresh = await (await stream(address, id)).reader.rest();
    expect([...seen, ...replayed].map((event) => `${event.id}:${event.event}`)).toEqual(fresh.map((event) => `${event.id}:${event.event}`));

    // Resuming after the terminal event sends nothing and ends.
    const after = await stream(address, id, { ...ALICE, 'last-event-id': String(idsOf(replayed).at(-1)) });
    expect(await after.reader.rest()).toEqual([]);
  });

  /** An event as the stream sent it, in the shape of its job_events row. */
  const asRow = (event: SseEvent) => ({ id: Number(event.id), type: event.event, data: event.data });

  it('sends a finished job’s terminal event, then ends, to a Last-Event-ID past its end, of another job, or not a number', async () => {
    const { address, app } = await server();
    const id = await accept(address, 'fail');
    expect(typesOf(await (await stream(address, id)).reader.rest()).at(-1)).toBe('job.failed');
    const rows = await storedEvents(app.store, id);
    const terminal = rows.at(-1) as EventRow;
    expect(terminal.type).toBe('job.failed');
    const otherId = await accept(address, 'Another job with events');
    await (await stream(address, otherId)).reader.rest();
    const otherEventId = ((await storedEvents(app.store, otherId))[0] as EventRow).id;

    for (const lastEventId of [String(terminal.id + 1), String(terminal.id + 1_000_000), String(otherEventId), 'not-a-number', '99999999999999999999999']) {
      const { reader, response } = await stream(address, id, { ...ALICE, 'last-event-id': lastEventId });
      expect(response.headers['cache-control'], lastEventId).toBe('no-cache');
      const events = await reader.rest();
      expect(events.map(asRow), lastEventId).toEqual([terminal]);
      expect((JSON.parse(events[0]?.data ?? '{}') as JobView).error?.type, lastEventId).toBe(`${PROBLEM_TYPE_BASE}job-handler-failed`);
    }
    // Streams only read: the log is as it was.
    expect(await storedEvents(app.store, id)).toEqual(rows);
  });

  it('sends a running job’s newest event first to a Last-Event-ID it never sent, then the later events; a valid id gets only what came after it', async () => {
    const { address, app } = await server();
    const title = 'steps-current-state';
    const id = await accept(address, title);
    const watching = await stream(address, id);
    const seen = await watching.reader.eventsUntil((event) => event.event === 'job.progress' && (JSON.parse(event.data) as JobView).progress?.percent === 20);
    expect(typesOf(seen)).toEqual(['job.queued', 'job.running', 'job.progress', 'job.progress']);
    watching.reader.close();
    const newest = (await storedEvents(app.store, id)).at(-1) as EventRow;
    expect(asRow(seen.at(-1) as SseEvent)).toEqual(newest);

    // The handler is held at 20%: nothing newer can exist yet.
    const future = await stream(address, id, { ...ALICE, 'last-event-id': String(newest.id + 1_000_000) });
    expect((await future.reader.eventsUntil(() => true)).map(asRow)).toEqual([newest]);
    const resumed = await stream(address, id, { ...ALICE, 'last-event-id': String(newest.id) });
    release(title);
    const later = await future.reader.rest();
    expect(typesOf(later)).toEqual(['job.progress', 'job.succeeded']);
    expectWellFormed(later, id);
    const rows = await storedEvents(app.store, id);
    expect(later.map(asRow)).toEqual(rows.filter((row) => row.id > newest.id));
    // The valid id: exactly what came after it, the same two events.
    expect((await resumed.reader.rest()).map(asRow)).toEqual(rows.filter((row) => row.id > newest.id));
  });

  it('sends job.queued (id 0) first to a Last-Event-ID it never sent when the job has no events yet, then the later ones', async () => {
    const { address, app } = await server({ workerConcurrency: 0 });
    for (const lastEventId of ['1000000000', 'not-a-number']) {
      const id = await accept(address, `gated-never-claimed-${lastEventId}`);
      expect(await storedEvents(app.store, id)).toEqual([]);
      const { reader } = await stream(address, id, { ...ALICE, 'last-event-id': lastEventId });
      const queued = await reader.eventsUntil(() => true);
      expect(
        queued.map((event) => [event.id, event.event]),
        lastEventId,
      ).toEqual([['0', 'job.queued']]);
      expectWellFormed(queued, id);

      const cancel = await fetch(`${address}/jobs/${id}`, { method: 'DELETE', headers: ALICE });
      expect(cancel.status).toBe(200);
      const rest = await reader.rest();
      expect(typesOf(rest), lastEventId).toEqual(['job.canceled']);
      expect(rest.map(asRow), lastEventId).toEqual(await storedEvents(app.store, id));
    }
  });

  it('streams job.failed for a failing job, with the problem in the data, then ends', async () => {
    const { address } = await server();
    const id = await accept(address, 'fail');
    const { reader } = await stream(address, id);
    const events = await reader.rest();
    expect(typesOf(events)).toEqual(['job.queued', 'job.running', 'job.failed']);
    expectWellFormed(events, id);
    expect((JSON.parse(events[2]?.data ?? '{}') as JobView).error?.type).toBe(`${PROBLEM_TYPE_BASE}job-handler-failed`);
  });

  it('streams job.canceled when the running job is canceled, then ends', async () => {
    const { address } = await server();
    const id = await accept(address, 'gated-cancel');
    const { reader } = await stream(address, id);
    const before = await reader.eventsUntil((event) => event.event === 'job.running');
    expect(typesOf(before)).toEqual(['job.queued', 'job.running']);

    const cancel = await fetch(`${address}/jobs/${id}`, { method: 'DELETE', headers: ALICE });
    expect(cancel.status).toBe(202);
    const after = await reader.rest();
    expect(typesOf(after)).toEqual(['job.canceled']);
    expectWellFormed([...before, ...after], id);
    expect((JSON.parse(after[0]?.data ?? '{}') as JobView).error?.type).toBe(`${PROBLEM_TYPE_BASE}job-canceled`);
  });

  it('sends ": heartbeat" comments on an idle stream', async () => {
    const { address } = await server();
    const id = await accept(address, 'gated-heartbeat');
    const { reader } = await stream(address, id);
    await reader.eventsUntil((event) => event.event === 'job.running');

    // Nothing happens to the job now; the next items are heartbeat comments, not events.
    const items: SseItem[] = [];
    while (items.filter((item) => item.kind === 'comment').length < 2) {
      const item = await reader.next();
      if (!item) throw new Error('the idle stream ended');
      items.push(item);
    }
    expect(items).toEqual([
      { kind: 'comment', text: 'heartbeat' },
      { kind: 'comment', text: 'heartbeat' },
    ]);
  });

  it('answers 404 problem+json for another principal’s job and for an unknown job', async () => {
    const { address } = await server();
    const id = await accept(address, 'gated-not-yours');
    for (const [headers, jobId] of [
      [BOB, id],
      [ALICE, '01ARZ3NDEKTSV4RRFFQ69G5FAV'],
    ] as const) {
      const { response } = await open(address, jobId, headers);
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect((await json<Problem>(response)).type).toBe(`${PROBLEM_TYPE_BASE}job-not-found`);
    }
  });

  it('refuses a stream beyond sseMaxStreamsPerPrincipal with 429 and Retry-After, per principal, and accepts again after one closes', async () => {
    const { address } = await server({ sseMaxStreamsPerPrincipal: 2 });
    const firstJob = await accept(address, 'gated-limit-1');
    const secondJob = await accept(address, 'gated-limit-2');
    const bobJob = await accept(address, 'gated-limit-bob', 7, BOB);

    const one = await stream(address, firstJob);
    await one.reader.eventsUntil((event) => event.event === 'job.queued');
    const two = await stream(address, secondJob);
    await two.reader.eventsUntil((event) => event.event === 'job.queued');

    const third = await open(address, firstJob);
    expect(third.response.statusCode).toBe(429);
    expect(third.response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(third.response.headers['retry-after']).toMatch(/^\d+$/);
    const problem = await json<Problem>(third.response);
    expect(problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}too-many-streams`, status: 429 });

    // Another principal has streams of its own.
    const bobs = await stream(address, bobJob, BOB);
    expect(((await bobs.reader.eventsUntil(() => true))[0] as SseEvent).event).toBe('job.queued');

    // The first job finishes: its stream ends, which frees a slot.
    release('gated-limit-1');
    expect(typesOf(await one.reader.rest()).at(-1)).toBe('job.succeeded');
    const again = await stream(address, secondJob);
    expect(typesOf(await again.reader.eventsUntil((event) => event.event === 'job.queued'))).toEqual(['job.queued']);

    // Two open again: refused; a client that disconnects frees its slot too.
    const refused = await open(address, secondJob);
    expect(refused.response.statusCode).toBe(429);
    await json<Problem>(refused.response);
    two.reader.close();
    const afterAbort = await waitFor('a slot after the client disconnected', async () => {
      const attempt = await open(address, secondJob);
      if (attempt.response.statusCode === 200) return attempt;
      expect(attempt.response.statusCode).toBe(429);
      await json<Problem>(attempt.response);
      return undefined;
    });
    const reader = new SseReader(afterAbort.response, afterAbort.request);
    expect(typesOf(await reader.eventsUntil(() => true))).toEqual(['job.queued']);
  });

  it('delivers job.running, job.progress and job.succeeded from a worker in another process', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const local = await listen({ workerConcurrency: 0, changeCheckMs: 50 }, tmp.dbPath);
    apps.push(local.app);
    expect(local.app.worker).toBeUndefined();
    const worker = await startDemoProcess('worker', { DATABASE_URL: tmp.dbPath, WORKER_POLL_MS: '50', WORKER_CONCURRENCY: '1' });
    processes.push(worker);

    const id = await accept(local.address, 'Report built elsewhere', 300_000);
    const { reader } = await stream(local.address, id);
    const events = await reader.rest();
    const types = typesOf(events);
    expect(types[0]).toBe('job.queued');
    expect(types[1]).toBe('job.running');
    expect(types.at(-1)).toBe('job.succeeded');
    expect(types.filter((type) => type === 'job.progress').length).toBeGreaterThanOrEqual(3);
    expect(new Set(types.slice(2, -1))).toEqual(new Set(['job.progress']));
    expectWellFormed(events, id);
    expect((JSON.parse(events.at(-1)?.data ?? '{}') as JobView).result?.rowCount).toBe(300_000);
    expect(events.slice(1).map((event) => ({ id: Number(event.id), type: event.event, data: event.data }))).toEqual(await storedEvents(local.app.store, id));
  });
});
