import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import type { AnyHandler } from '../src/handlers.js';
import { ALICE, BOB, submitReport, tempDir, waitForJob } from './helpers.js';
import { customApp, expectNoLease, gate, sleep, waitFor } from './worker-test-support.js';

const REPORT = { title: 'ok', format: 'csv', rowCount: 1, bytes: 1, sha256: 'd'.repeat(64) };

interface JobView {
  id: string;
  status: string;
  attempts: number;
  cancelRequested?: boolean;
  finishedAt?: string;
  error?: { type: string; detail?: string };
}

interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  jobStatus?: string;
}

describe('DELETE /jobs/{id} cancels a job', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function appWith(createReport: AnyHandler, workerConcurrency: number, dbPath?: string, config: Partial<AsyncFirstConfig> = {}) {
    let path = dbPath;
    if (path === undefined) {
      const tmp = tempDir();
      cleanups.push(tmp.cleanup);
      path = tmp.dbPath;
    }
    const app = await customApp({ dbPath: path, createReport, config: { workerConcurrency, ...config } });
    apps.push(app);
    app.startBackground();
    return { app, dbPath: path };
  }

  async function submit(app: AsyncFirstApp, key: string, headers: Record<string, string> = ALICE) {
    const accepted = await submitReport(app, { title: key, rows: 1 }, { ...headers, 'idempotency-key': key });
    expect(accepted.statusCode).toBe(202);
    return accepted.json<{ job_id: string }>().job_id;
  }

  const cancel = (app: AsyncFirstApp, id: string, headers: Record<string, string> = ALICE) =>
    app.server.inject({ method: 'DELETE', url: `/jobs/${id}`, headers });

  it('cancels a queued job at once with 200 and status canceled, and no worker ever runs it', async () => {
    const ran: string[] = [];
    const handler: AnyHandler = async (input) => {
      ran.push((input.body as { title: string }).title);
      return REPORT;
    };
    const { app: acceptor, dbPath } = await appWith(handler, 0);
    const id = await submit(acceptor, 'queued-then-canceled');
    const stored = () => acceptor.store.getJob('alice', id);

    const response = await cancel(acceptor, id);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['retry-after']).toBeUndefined();
    const body = response.json<JobView>();
    expect(body).toMatchObject({ id, status: 'canceled', attempts: 0 });
    expect(body.finishedAt).toBeDefined();
    const canceled = await stored();
    expect(canceled).toMatchObject({ status: 'canceled', attempts: 0 });
    expectNoLease(canceled);
    expect(canceled?.finishedAt).toBeDefined();

    // A worker on the same file runs a later job, so it has looked at the queue, and never the canceled one.
    const { app: worker } = await appWith(handler, 2, dbPath);
    const laterId = await submit(worker, 'later-job');
    expect(((await waitForJob(worker, laterId)) as JobView).status).toBe('succeeded');
    expect(ran).toEqual(['later-job']);
    expect(await stored()).toMatchObject({ status: 'canceled', attempts: 0, fence: 0 });

    // Canceling again: it has finished (canceled), so there is nothing to cancel.
    const again = await cancel(acceptor, id);
    expect(again.statusCode).toBe(409);
    expect(again.json<Problem>()).toMatchObject({ type: 'urn:asyncfirst:problem:job-finished', jobStatus: 'canceled' });
  });

  it("answers 202 for a running job, fires the handler's AbortSignal, and the job ends canceled", async () => {
    let started = false;
    let abortReason: unknown;
    const handler: AnyHandler = (_input, context) =>
      new Promise((_resolve, reject) => {
        started = true;
        context.signal.addEventListener('abort', () => {
          abortReason = context.signal.reason;
          reject(context.signal.reason);
        });
      });
    const { app } = await appWith(handler, 1);
    const id = await submit(app, 'running-then-canceled');
    await waitFor('the handler to start', () => (started ? true : undefined));
    expect((await app.store.getJob('alice', id))?.status).toBe('running');

    const response = await cancel(app, id);
    expect(response.statusCode).toBe(202);
    expect(response.headers['retry-after']).toBe('1');
    expect(response.json<JobView>()).toMatchObject({ id, status: 'running', cancelRequested: true, attempts: 1 });

    const job = (await waitForJob(app, id)) as JobView;
    expect(job.status).toBe('canceled');
    expect(job.attempts).toBe(1);
    expect(job.error?.type).toBe('urn:asyncfirst:problem:job-canceled');
    expect(abortReason).toBeInstanceOf(Error);
    expect((abortReason as Error).message).toMatch(/canceled/);
    const stored = await app.store.getJob('alice', id);
    expect(stored).toMatchObject({ status: 'canceled', cancelRequested: true });
    expectNoLease(stored);
    expect(stored?.result).toBeUndefined();
    expect(stored?.finishedAt).toBeDefined();
  });

  it('cancels a job running in another process on the same file: its worker sees the flag at lease renewal and aborts', async () => {
    let started = false;
    let aborted = false;
    const handler: AnyHandler = (_input, context) =>
      new Promise((_resolve, reject) => {
        started = true;
        context.signal.addEventListener('abort', () => {
          aborted = true;
          reject(context.signal.reason);
        });
      });
    const { app: front, dbPath } = await appWith(handler, 0);
    const worker = await customApp({ dbPath, createReport: handler, config: { workerConcurrency: 1, leaseMs: 300 } });
    apps.push(worker);
    worker.startBackground();
    const id = await submit(front, 'cancel-elsewhere');
    await waitFor('the other worker to start the handler', () => (started ? true : undefined));

    const response = await cancel(front, id);
    expect(response.statusCode).toBe(202);
    expect(response.json<JobView>()).toMatchObject({ status: 'running', cancelRequested: true });
    const job = (await waitForJob(front, id)) as JobView;
    expect(job.status).toBe('canceled');
    expect(job.error?.type).toBe('urn:asyncfirst:problem:job-canceled');
    expect(aborted).toBe(true);
    const stored = await front.store.getJob('alice', id);
    expect(stored?.status).toBe('canceled');
    expectNoLease(stored);
    expect(stored?.result).toBeUndefined();
  });

  it('ends a running job canceled even if its handler ignores the signal and returns a result', async () => {
    const release: Array<() => void> = [];
    let aborted = false;
    const handler: AnyHandler = async (_input, context) => {
      context.signal.addEventListener('abort', () => {
        aborted = true;
      });
      await new Promise<void>((resolve) => release.push(resolve));
      return REPORT;
    };
    const { app } = await appWith(handler, 1);
    const id = await submit(app, 'stubborn');
    await waitFor('the handler to start', () => (release.length > 0 ? true : undefined));

    expect((await cancel(app, id)).statusCode).toBe(202);
    expect(aborted).toBe(true);
    for (const resolve of release) resolve();
    const job = (await waitForJob(app, id)) as JobView;
    expect(job.status).toBe('canceled');
    const stored = await app.store.getJob('alice', id);
    expect(stored?.status).toBe('canceled');
    expect(stored?.result).toBeUndefined();
  });

  it('a 202 cancel wins over a handler in another process that returns after the flag was stored, before its worker saw it', async () => {
    const release = gate();
    let started = false;
    const stubborn: AnyHandler = async () => {
      started = true;
      await release.promise; // ignores its signal
      return REPORT;
    };
    // The worker renews (and so sees the flag) only every min(JOB_LEASE_MS/5, 5 s) = 5 s: the handler returns long before.
    const { app: worker, dbPath } = await appWith(stubborn, 1, undefined, { leaseMs: 30_000 });
    const { app: front } = await appWith(stubborn, 0, dbPath);
    const id = await submit(front, 'cancel-races-finish');
    await waitFor('the handler to start', () => (started ? true : undefined));
    const asked = await cancel(front, id);
    expect(asked.statusCode).toBe(202);
    release.open();
    const job = await waitForJob(worker, id);
    expect(job.status).toBe('canceled');
    expect(job.result).toBeUndefined();
    expect(job.error.type).toBe('urn:asyncfirst:problem:job-canceled');
    const stored = await front.store.getJob('alice', id);
    expect(stored?.status).toBe('canceled');
    expect(stored?.result).toBeUndefined();
  });

  it('never answers 202 to a cancel whose job then succeeds: every 202 ends canceled, every 409 had finished', async () => {
    const quick: AnyHandler = async () => {
      await sleep(Math.random() * 4);
      return REPORT;
    };
    const { app } = await appWith(quick, 8);
    const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => submit(app, `race-${i}`)));
    const answers = await Promise.all(ids.map(async (id) => ({ id, status: (await cancel(app, id)).statusCode })));
    const seen = new Map<number, number>();
    for (const { id, status } of answers) {
      seen.set(status, (seen.get(status) ?? 0) + 1);
      const job = await waitForJob(app, id);
      if (status === 202 || status === 200) expect({ id, status, ended: job.status }).toEqual({ id, status, ended: 'canceled' });
      else expect({ id, status, ended: job.status }).toEqual({ id, status: 409, ended: 'succeeded' });
    }
    expect([...seen.keys()].every((status) => [200, 202, 409].includes(status))).toBe(true);
  });

  it('answers 409 problem+json for a finished job and leaves it unchanged', async () => {
    const { app } = await appWith(async () => REPORT, 1);
    const id = await submit(app, 'finished');
    expect(((await waitForJob(app, id)) as JobView).status).toBe('succeeded');
    const before = await app.store.getJob('alice', id);
    expect(before?.status).toBe('succeeded');

    const response = await cancel(app, id);
    expect(response.statusCode).toBe(409);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json<Problem>()).toMatchObject({
      type: 'urn:asyncfirst:problem:job-finished',
      title: 'Job already finished',
      status: 409,
      jobStatus: 'succeeded',
    });
    expect(response.json<Problem>().detail).toContain(id);
    expect(await app.store.getJob('alice', id)).toEqual(before);
  });

  it("answers 404 to DELETE and GET of another principal's job, and leaves the job alone", async () => {
    const { app } = await appWith(async () => REPORT, 0);
    const id = await submit(app, 'alices-job');

    for (const method of ['DELETE', 'GET'] as const) {
      const response = await app.server.inject({ method, url: `/jobs/${id}`, headers: BOB });
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json<Problem>()).toMatchObject({ type: 'urn:asyncfirst:problem:job-not-found', status: 404 });
    }
    expect(await app.store.getJob('alice', id)).toMatchObject({ status: 'queued', cancelRequested: false, principal: 'alice' });
    const own = await app.server.inject({ method: 'GET', url: `/jobs/${id}`, headers: ALICE });
    expect(own.json<JobView>().status).toBe('queued');
  });

  it('answers 404 problem+json for an unknown id and for a malformed one', async () => {
    const { app } = await appWith(async () => REPORT, 0);
    for (const id of ['01ARZ3NDEKTSV4RRFFQ69G5FAV', 'not-a-job-id']) {
      const response = await cancel(app, id);
      expect(response.statusCode).toBe(404);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      const body = response.json<Problem>();
      expect(body).toMatchObject({ type: 'urn:asyncfirst:problem:job-not-found', title: 'Job not found', status: 404 });
      expect(body.detail).toContain(id);
    }
  });

  it('answers 401 problem+json to a DELETE without credentials', async () => {
    const { app } = await appWith(async () => REPORT, 0);
    const id = await submit(app, 'anonymous-cancel');
    const response = await app.server.inject({ method: 'DELETE', url: `/jobs/${id}` });
    expect(response.statusCode).toBe(401);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect((await app.store.getJob('alice', id))?.status).toBe('queued');
  });
});
