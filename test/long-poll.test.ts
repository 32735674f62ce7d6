import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { buildReport } from '../src/demo/report.js';
import { reportHandlers } from '../src/demo/service.js';
import { type AnyHandler, PermanentJobError, seeOther } from '../src/handlers.js';
import { ALICE, allJobs, BOB, tempDir } from './helpers.js';
import { customApp, gates, sleep, waitFor } from './worker-test-support.js';

/*
 * Prefer: wait=N over a real socket: GET /jobs/{id} and GET /jobs/{id}/result hold the request
 * until the job finishes (or N seconds pass), submissions answer with the result when the job
 * finishes in time, and GET /jobs/{id}/result turns the job's outcome into an HTTP answer.
 */

const REPORT = { title: 'gated', format: 'csv', rowCount: 7, bytes: 70, sha256: 'a'.repeat(64) };

interface JobView {
  id: string;
  status: string;
  attempts: number;
  result?: unknown;
  resultLocation?: string;
  error?: { type: string; status: number; detail?: string };
}

interface Accepted {
  status: string;
  job_id: string;
  operation: string;
  location: string;
}

interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
}

/** Records when a promise settled, so a test can tell "not yet" from "already". */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; at: number } = { settled: false, at: 0 };
  const tracked = promise.finally(() => {
    state.settled = true;
    state.at = Date.now();
  });
  return { state, promise: tracked };
}

function varyNames(response: Response): string[] {
  return (response.headers.get('vary') ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean);
}

describe('Prefer: wait=N over a real socket', () => {
  /*
   * One app serves most tests (building an app costs a few hundred ms); its createReport handler
   * does what the report's title says: "gated-…" runs until the test opens that title's gate (or
   * the job is aborted), "fail" fails permanently, "see-other" ends with seeOther(), anything else
   * builds the demo report.
   */
  const { gateFor, release, openAll } = gates();
  const started: string[] = [];
  const handler: AnyHandler = async (input, context) => {
    const body = input.body as { title: string; rows: number; format?: 'csv' | 'json' };
    started.push(body.title);
    if (body.title.startsWith('gated')) {
      const held = gateFor(body.title).promise;
      await new Promise<void>((resolve, reject) => {
        void held.then(resolve);
        context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
      });
      return REPORT;
    }
    if (body.title === 'fail') throw new PermanentJobError('the report source is gone');
    if (body.title === 'see-other') return seeOther('/reports/files/abc');
    return reportHandlers.createReport({ params: {}, query: {}, body }, context);
  };

  let shared: { app: AsyncFirstApp; address: string } | undefined;
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  beforeAll(async () => {
    shared = await listen({ workerConcurrency: 16 });
  });
  afterEach(async () => {
    // Let every held handler finish, so no test leaves a job occupying the shared worker.
    openAll();
    for (const app of apps.splice(0)) await app.close();
  });
  afterAll(async () => {
    await shared?.app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(config: Partial<AsyncFirstConfig> = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await customApp({ dbPath: tmp.dbPath, createReport: handler, config: { port: 0, host: '127.0.0.1', ...config } });
    const address = await app.listen();
    return { app, address };
  }

  /** The shared app, or (with config) an app of the test's own. */
  async function server(config?: Partial<AsyncFirstConfig>) {
    if (config === undefined) {
      if (!shared) throw new Error('the shared app did not start');
      return shared;
    }
    const own = await listen(config);
    apps.push(own.app);
    return own;
  }

  const submit = (address: string, key: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE, ...headers },
      body: JSON.stringify(body),
      redirect: 'manual',
    });

  async function accept(address: string, key: string, body: unknown = { title: key, rows: 7 }) {
    const response = await submit(address, key, body);
    expect(response.status).toBe(202);
    return ((await response.json()) as Accepted).job_id;
  }

  const getJob = (address: string, id: string, headers: Record<string, string> = {}, path = '') =>
    fetch(`${address}/jobs/${id}${path}`, { headers: { ...ALICE, ...headers }, redirect: 'manual' });

  async function waitUntilRunning(address: string, id: string) {
    await waitFor(`job ${id} to run`, async () => {
      const job = (await (await getJob(address, id)).json()) as JobView;
      return job.status === 'running' ? job : undefined;
    });
  }

  describe('GET /jobs/{id} with Prefer: wait=N', () => {
    it('holds the request until the job finishes, then answers 200 with the finished job, Preference-Applied and Vary: Prefer', async () => {
      const { address, app } = await server();
      const id = await accept(address, 'gated-lp-finish');
      await waitUntilRunning(address, id);

      const asked = Date.now();
      const poll = track(getJob(address, id, { prefer: 'wait=10' }));
      // While the handler is held, the long-poll is not answered.
      await sleep(300);
      expect(poll.state.settled).toBe(false);

      const releasedAt = Date.now();
      release('gated-lp-finish');
      const response = await poll.promise;
      // Completion woke it: after the release, and well before the 10-second deadline.
      expect(poll.state.at).toBeGreaterThanOrEqual(releasedAt);
      expect(poll.state.at - asked).toBeLessThan(10_000);

      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      expect(response.headers.get('preference-applied')).toBe('wait=10');
      expect(varyNames(response)).toContain('prefer');
      expect(response.headers.get('retry-after')).toBeNull();
      const job = (await response.json()) as JobView;
      expect(job).toMatchObject({ id, status: 'succeeded', attempts: 1, result: REPORT });
      expect(await app.store.getJob('alice', id)).toMatchObject({ status: 'succeeded', result: JSON.stringify(REPORT) });
    });

    it('answers after about N seconds with the unfinished job when it does not finish', async () => {
      const { address } = await server();
      const id = await accept(address, 'gated-lp-timeout');
      await waitUntilRunning(address, id);

      const asked = Date.now();
      const response = await getJob(address, id, { prefer: 'wait=1' });
      const elapsed = Date.now() - asked;
      expect(elapsed).toBeGreaterThanOrEqual(1000 - 50);
      expect(response.status).toBe(200);
      expect(response.headers.get('preference-applied')).toBe('wait=1');
      expect(varyNames(response)).toContain('prefer');
      expect(response.headers.get('retry-after')).toBe('1');
      const job = (await response.json()) as JobView;
      expect(job.id).toBe(id);
      expect(['queued', 'running']).toContain(job.status);
      expect(job.result).toBeUndefined();
    });

    it('caps N at longPollMaxSeconds (wait=30 with a cap of 1 answers after about 1 s with Preference-Applied: wait=1)', async () => {
      const { address } = await server({ longPollMaxSeconds: 1 });
      const id = await accept(address, 'gated-lp-capped');

      const asked = Date.now();
      const response = await getJob(address, id, { prefer: 'wait=30' });
      const elapsed = Date.now() - asked;
      expect(elapsed).toBeGreaterThanOrEqual(1000 - 50);
      expect(elapsed).toBeLessThan(5000);
      expect(response.status).toBe(200);
      expect(response.headers.get('preference-applied')).toBe('wait=1');
      expect(varyNames(response)).toContain('prefer');
      const job = (await response.json()) as JobView;
      expect(job.id).toBe(id);
      expect(['queued', 'running']).toContain(job.status);
    });

    it('answers 404 for another principal’s job, even with Prefer: wait', async () => {
      const { address } = await server();
      const id = await accept(address, 'gated-lp-other');
      const asked = Date.now();
      const response = await getJob(address, id, { ...BOB, prefer: 'wait=10' });
      expect(Date.now() - asked).toBeLessThan(10_000);
      expect(response.status).toBe(404);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(((await response.json()) as Problem).type).toBe(`${PROBLEM_TYPE_BASE}job-not-found`);
    });

    it('answers a waiting long-poll promptly when app.close() is called, instead of holding the shutdown for N seconds', async () => {
      const { app, address } = await server({ shutdownGraceMs: 100 });
      const id = await accept(address, 'gated-lp-close');
      await waitUntilRunning(address, id);

      const arrived = new Promise<void>((resolve) => app.server.server.once('request', () => resolve()));
      const asked = Date.now();
      const poll = track(getJob(address, id, { prefer: 'wait=30' }));
      await arrived;
      await sleep(150);
      expect(poll.state.settled).toBe(false);

      const closing = track(app.close());
      const response = await poll.promise;
      await closing.promise;
      // Both well before the 30-second wait would have ended.
      expect(poll.state.at - asked).toBeLessThan(10_000);
      expect(closing.state.at - asked).toBeLessThan(10_000);
      expect(response.status).toBe(200);
      expect(response.headers.get('preference-applied')).toBe('wait=30');
      const job = (await response.json()) as JobView;
      expect(job.id).toBe(id);
      expect(['queued', 'running']).toContain(job.status);
    });
  });

  describe('a submission with Prefer: wait=N', () => {
    it('answers 200 with the result body, X-Job-ID, Content-Location, Preference-Applied and Vary when the job finishes in time', async () => {
      const { address, app } = await server();
      const input = { title: 'Fast report', rows: 100, format: 'json' as const };
      const response = await submit(address, 'wait-fast', input, { prefer: 'wait=5' });

      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      expect(response.headers.get('preference-applied')).toBe('wait=5');
      expect(varyNames(response)).toContain('prefer');
      const id = response.headers.get('x-job-id');
      expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      expect(response.headers.get('content-location')).toBe(`/jobs/${id}`);
      expect(response.headers.get('idempotent-replayed')).toBeNull();
      const body = (await response.json()) as Record<string, unknown>;
      const expected = await buildReport(input, new AbortController().signal);
      expect(body).toEqual(expected);
      expect(Object.keys(body).sort()).toEqual(['bytes', 'format', 'rowCount', 'sha256', 'title']);
      expect(body.rowCount).toBe(100);
      expect(body.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(await app.store.getJob('alice', id as string)).toMatchObject({ status: 'succeeded', result: JSON.stringify(expected) });
    });

    it('answers 202 with the acceptance after about N seconds when the job is still running', async () => {
      const { address, app } = await server();
      const asked = Date.now();
      const response = await submit(address, 'wait-slow', { title: 'gated-wait-slow', rows: 7 }, { prefer: 'wait=1' });
      const elapsed = Date.now() - asked;

      expect(elapsed).toBeGreaterThanOrEqual(1000 - 50);
      expect(response.status).toBe(202);
      expect(response.headers.get('preference-applied')).toBe('wait=1');
      expect(varyNames(response)).toContain('prefer');
      expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
      const body = (await response.json()) as Accepted;
      expect(body).toEqual({ status: 'accepted', job_id: body.job_id, operation: 'createReport', location: `/jobs/${body.job_id}` });
      expect(response.headers.get('location')).toBe(body.location);
      expect(response.headers.get('x-job-id')).toBe(body.job_id);
      expect(started).toContain('gated-wait-slow');
      expect((await app.store.getJob('alice', body.job_id))?.status).toBe('running');
    });

    it('answers 202 at once for Prefer: respond-async, wait=5, although the job would finish in time', async () => {
      const { address } = await server();
      const asked = Date.now();
      const response = await submit(address, 'wait-async', { title: 'async', rows: 10 }, { prefer: 'respond-async, wait=5' });
      expect(Date.now() - asked).toBeLessThan(5000);
      expect(response.status).toBe(202);
      expect(varyNames(response)).toContain('prefer');
      const body = (await response.json()) as Accepted;
      expect(body.status).toBe('accepted');
      expect(response.headers.get('location')).toBe(`/jobs/${body.job_id}`);
      // The job itself still runs to completion.
      const done = (await (await getJob(address, body.job_id, { prefer: 'wait=5' })).json()) as JobView;
      expect(done.status).toBe('succeeded');
    });

    it('answers a replayed submission with Prefer: wait the same way: 200 with the result and Idempotent-Replayed once the job is done', async () => {
      const { address, app } = await server();
      const body = { title: 'gated-replay', rows: 7 };
      const id = await accept(address, 'wait-replay', body);
      await waitUntilRunning(address, id);

      // A replay while the job runs waits for it, then answers with the result.
      const replay = track(submit(address, 'wait-replay', body, { prefer: 'wait=10' }));
      await sleep(300);
      expect(replay.state.settled).toBe(false);
      const releasedAt = Date.now();
      release('gated-replay');
      const waited = await replay.promise;
      expect(replay.state.at).toBeGreaterThanOrEqual(releasedAt);
      expect(waited.status).toBe(200);
      expect(waited.headers.get('idempotent-replayed')).toBe('true');
      expect(waited.headers.get('x-job-id')).toBe(id);
      expect(waited.headers.get('content-location')).toBe(`/jobs/${id}`);
      expect(waited.headers.get('preference-applied')).toBe('wait=10');
      expect(varyNames(waited)).toContain('prefer');
      expect(await waited.json()).toEqual(REPORT);

      // A replay after the job is done answers with the result at once.
      const later = await submit(address, 'wait-replay', body, { prefer: 'wait=5' });
      expect(later.status).toBe(200);
      expect(later.headers.get('idempotent-replayed')).toBe('true');
      expect(later.headers.get('x-job-id')).toBe(id);
      expect(later.headers.get('content-location')).toBe(`/jobs/${id}`);
      expect(varyNames(later)).toContain('prefer');
      expect(await later.json()).toEqual(REPORT);

      // Without Prefer, the replay is the plain 202.
      const plain = await submit(address, 'wait-replay', body);
      expect(plain.status).toBe(202);
      expect(plain.headers.get('idempotent-replayed')).toBe('true');
      expect(((await plain.json()) as Accepted).job_id).toBe(id);
      expect((await allJobs(app.store)).filter((job) => job.id === id)).toHaveLength(1);
      // The key's one record (alice's: bob never used it) points at the job.
      expect((await app.store.getIdempotencyRecord('alice', 'createReport', 'wait-replay'))?.jobId).toBe(id);
      expect(await app.store.getIdempotencyRecord('bob', 'createReport', 'wait-replay')).toBeUndefined();
    });
  });

  describe('GET /jobs/{id}/result', () => {
    it('answers 202 with the job and Retry-After while it runs, and 200 with the result once it succeeded (waking a Prefer: wait)', async () => {
      const { address } = await server();
      const id = await accept(address, 'gated-result-ok');
      await waitUntilRunning(address, id);

      const pending = await getJob(address, id, {}, '/result');
      expect(pending.status).toBe(202);
      expect(pending.headers.get('retry-after')).toBe('1');
      const pendingJob = (await pending.json()) as JobView;
      expect(pendingJob).toMatchObject({ id, status: 'running' });
      expect(pendingJob.result).toBeUndefined();

      const waiting = track(getJob(address, id, { prefer: 'wait=10' }, '/result'));
      await sleep(200);
      expect(waiting.state.settled).toBe(false);
      release('gated-result-ok');
      const waited = await waiting.promise;
      expect(waited.status).toBe(200);
      expect(waited.headers.get('preference-applied')).toBe('wait=10');
      expect(await waited.json()).toEqual(REPORT);

      const done = await getJob(address, id, {}, '/result');
      expect(done.status).toBe(200);
      expect(done.headers.get('content-type')).toMatch(/^application\/json/);
      expect(done.headers.get('retry-after')).toBeNull();
      expect(await done.json()).toEqual(REPORT);
    });

    it('answers the stored problem with status 500 for a job whose handler failed', async () => {
      const { address, app } = await server();
      const id = await accept(address, 'result-failed', { title: 'fail', rows: 7 });
      const job = (await (await getJob(address, id, { prefer: 'wait=5' })).json()) as JobView;
      expect(job.status).toBe('failed');

      const response = await getJob(address, id, {}, '/result');
      expect(response.status).toBe(500);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = (await response.json()) as Problem;
      expect(problem).toMatchObject({
        type: `${PROBLEM_TYPE_BASE}job-handler-failed`,
        status: 500,
        detail: 'the report source is gone',
        instance: `/jobs/${id}`,
      });
      const stored = (await app.store.getJob('alice', id))?.error as Problem;
      expect(problem).toEqual({ ...stored, instance: `/jobs/${id}` });
    });

    it('answers the stored problem with status 409 for a canceled job', async () => {
      const { address, app } = await server();
      const id = await accept(address, 'gated-result-canceled');
      await waitUntilRunning(address, id);
      const cancel = await fetch(`${address}/jobs/${id}`, { method: 'DELETE', headers: ALICE });
      expect(cancel.status).toBe(202);
      const job = (await (await getJob(address, id, { prefer: 'wait=5' })).json()) as JobView;
      expect(job.status).toBe('canceled');

      const response = await getJob(address, id, {}, '/result');
      expect(response.status).toBe(409);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = (await response.json()) as Problem;
      expect(problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}job-canceled`, status: 409, instance: `/jobs/${id}` });
      const stored = (await app.store.getJob('alice', id))?.error as Problem;
      expect(problem).toEqual({ ...stored, instance: `/jobs/${id}` });
    });

    it('answers 303 See Other with the Location the handler returned with seeOther()', async () => {
      const { address, app } = await server();
      const id = await accept(address, 'result-see-other', { title: 'see-other', rows: 7 });
      const job = (await (await getJob(address, id, { prefer: 'wait=5' })).json()) as JobView;
      expect(job).toMatchObject({ status: 'succeeded', resultLocation: '/reports/files/abc' });

      const response = await getJob(address, id, {}, '/result');
      expect(response.status).toBe(303);
      expect(response.headers.get('location')).toBe('/reports/files/abc');
      expect(await app.store.getJob('alice', id)).toMatchObject({ status: 'succeeded', result: 'null' });

      // A submission that waits for such a job answers 303 as well.
      const waited = await submit(address, 'result-see-other-2', { title: 'see-other', rows: 8 }, { prefer: 'wait=5' });
      expect(waited.status).toBe(303);
      expect(waited.headers.get('location')).toBe('/reports/files/abc');
      const otherId = waited.headers.get('x-job-id');
      expect(otherId).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      expect(waited.headers.get('content-location')).toBe(`/jobs/${otherId}`);
    });
  });
});
