import { afterEach, describe, expect, it } from 'vitest';
import type { components, paths } from '../generated/api.js';
import type { AsyncFirstApp } from '../src/app.js';
import { createClient } from '../src/client/index.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import type { AnyHandler } from '../src/handlers.js';
import { appDatabases } from './driver-support.js';
import { customApp, gates, sleep, waitFor } from './worker-test-support.js';

/*
 * The client's waitForJobs against real servers on both drivers: many jobs waited for over one
 * stream of events (GET /jobs/events), each job's ending in the order given, already-ended jobs
 * included, resumed with Last-Event-ID when the stream drops, and bounded by a timeout.
 */

type Report = components['schemas']['Report'];
type Accepted = components['schemas']['JobAccepted'] & { operation: 'createReport' };

const KEY_A = { 'X-API-Key': 'key-a' };
const reportFor = (title: string): Report => ({ title, format: 'csv', rowCount: 1, bytes: 10, sha256: 'c'.repeat(64) });

const DATABASES = appDatabases('af_wait_jobs');

describe.each(DATABASES)('waitForJobs on $name', (database) => {
  /* Titles "gated-…" run until the test opens that title's gate; "fail…" fail; others succeed. */
  const { gateFor, release, openAll } = gates();
  const handler: AnyHandler = async (input, context) => {
    const { title } = (input as { body: { title: string } }).body;
    if (title.startsWith('gated')) {
      await new Promise<void>((resolve, reject) => {
        void gateFor(title).promise.then(resolve);
        context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
      });
    }
    if (title.startsWith('fail')) throw new Error(`${title} broke`);
    return reportFor(title);
  };

  const apps: AsyncFirstApp[] = [];
  const drops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    openAll();
    for (const app of apps.splice(0)) await app.close();
    for (const drop of drops.splice(0)) await drop();
  });

  async function serve(workerConcurrency = 4) {
    const made = database.make();
    drops.push(made.drop);
    const app = await customApp({
      dbPath: made.databaseUrl,
      createReport: handler,
      createReportOptions: { maxAttempts: 1 },
      config: { port: 0, host: '127.0.0.1', workerConcurrency, ...made.config },
    });
    apps.push(app);
    return { app, address: await app.listen() };
  }

  function recordingClient(baseUrl: string) {
    const sent: Request[] = [];
    const api = createClient<paths>({
      baseUrl,
      headers: KEY_A,
      fetch: (request) => {
        sent.push(request);
        return globalThis.fetch(request);
      },
    });
    return { api, sent };
  }

  async function submit(api: ReturnType<typeof recordingClient>['api'], title: string): Promise<Accepted> {
    const { data, response } = await api.POST('/reports', { body: { title, rows: 1 } });
    expect(response.status).toBe(202);
    return data as Accepted;
  }

  const eventStreams = (sent: Request[]) => sent.filter((request) => new URL(request.url).pathname === '/jobs/events');

  it("resolves with each job's ending in the order given, over one stream, the ones that had ended already included", async () => {
    const { app, address } = await serve();
    const { api, sent } = recordingClient(address);
    const done = await submit(api, 'done-before');
    await api.waitFor(done, { timeout: 10_000 });
    const gatedA = await submit(api, 'gated-a');
    const failing = await submit(api, 'fail-later');
    const gatedB = await submit(api, 'gated-b');

    const waiting = api.waitForJobs([gatedA, done, failing, gatedB.job_id] as const, { timeout: 20_000 });
    await waitFor('the stream to open', () => (app.runtime.streams.open === 1 ? true : undefined));
    release('gated-b');
    await sleep(100);
    release('gated-a');
    const [a, before, failed, b] = await waiting;

    expect(a.status).toBe('succeeded');
    if (a.status !== 'succeeded') throw new Error('unreachable');
    // Typed from the operation's 200 response: a Report.
    const report: Report = a.result;
    expect(report).toEqual(reportFor('gated-a'));
    expect(a.job).toMatchObject({ id: gatedA.job_id, status: 'succeeded' });
    expect(before).toMatchObject({ id: done.job_id, status: 'succeeded', result: reportFor('done-before') });
    expect(failed).toMatchObject({ id: failing.job_id, status: 'failed', error: { type: `${PROBLEM_TYPE_BASE}job-handler-failed` } });
    expect(b).toMatchObject({ id: gatedB.job_id, status: 'succeeded', result: reportFor('gated-b') });

    // One stream, of the events that end jobs; each job read once; the stream closed at the end.
    const streams = eventStreams(sent);
    expect(streams).toHaveLength(1);
    expect(new URL(streams[0]?.url ?? '').searchParams.getAll('status')).toEqual(['succeeded', 'failed', 'canceled']);
    expect(sent.filter((request) => request.method === 'GET' && /^\/jobs\/[0-9A-Z]{26}$/.test(new URL(request.url).pathname))).toHaveLength(
      1 /* waitFor's */ + 4,
    );
    await waitFor('the stream to close', () => (app.runtime.streams.open === 0 ? true : undefined));
  });

  it('resumes with Last-Event-ID when the stream drops, and misses no ending meanwhile', async () => {
    const { app, address } = await serve();
    const { api, sent } = recordingClient(address);
    const first = await submit(api, 'gated-first');
    const second = await submit(api, 'gated-second');
    const waiting = api.waitForJobs([first, second], { timeout: 20_000 });
    await waitFor('the stream to open', () => (app.runtime.streams.open === 1 ? true : undefined));
    release('gated-first');
    await waitFor('the first job to end', async () => ((await app.store.getJob('alice', first.job_id))?.status === 'succeeded' ? true : undefined));
    // The server ends every stream (as a restart would); the second job ends before the client is back.
    app.runtime.streams.closeAll();
    release('gated-second');
    const endings = await waiting;
    expect(endings.map((ending) => ending.status)).toEqual(['succeeded', 'succeeded']);
    const streams = eventStreams(sent);
    expect(streams.length).toBeGreaterThanOrEqual(2);
    expect(streams[0]?.headers.get('last-event-id')).toBeNull();
    expect(streams[1]?.headers.get('last-event-id')).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('rejects with a TimeoutError after `timeout` ms and closes its stream; rejects for a job that does not exist', async () => {
    const { app, address } = await serve(0);
    const { api } = recordingClient(address);
    const job = await submit(api, 'never-runs');
    const timedOut = await api.waitForJobs([job], { timeout: 500 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((timedOut as Error).name).toBe('TimeoutError');
    await waitFor('the stream to close', () => (app.runtime.streams.open === 0 ? true : undefined));

    const unknown = await api.waitForJobs([job.job_id, '01ARZ3NDEKTSV4RRFFQ69G5FAV'], { timeout: 5000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((unknown as Error).message).toContain('01ARZ3NDEKTSV4RRFFQ69G5FAV');
  });
});
