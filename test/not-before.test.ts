import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE, ProblemError } from '../src/core/problems.js';
import type { AnyHandler } from '../src/handlers.js';
import { countStored } from './helpers.js';
import { DATABASES, httpDate, taskContract } from './policy-support.js';
import { sleep, waitFor } from './worker-test-support.js';

/*
 * Later work over real HTTP on both drivers: Not-Before (delta-seconds or an HTTP date) and
 * enqueue's runAt hold a job queued, its nextAttemptAt the time asked, until that time, and it
 * starts within the poll interval after it; a bad or too distant value is 400 not-before-invalid
 * with nothing stored; and the time asked is part of the request for its Idempotency-Key.
 */

type Handlers = Record<string, AnyHandler>;

interface JobView {
  id: string;
  status: string;
  createdAt: string;
  nextAttemptAt?: string;
}

const POLL_MS = 100;

describe.each(DATABASES)('Not-Before on $name', (database) => {
  const apps: AsyncFirstApp[] = [];
  const drops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const drop of drops.splice(0)) await drop();
  });

  /** When each task's handler started (its name → Date.now()). */
  const started = new Map<string, number>();
  const runTask: AnyHandler = async (input) => {
    const { name } = (input as { body: { name: string } }).body;
    started.set(name, Date.now());
    return { name };
  };

  async function serve(config: Partial<AsyncFirstConfig> = {}) {
    started.clear();
    const made = database.make();
    drops.push(made.drop);
    const app = await createAsyncFirst<Handlers>({
      contract: taskContract(),
      handlers: { runTask, previewTask: () => ({}) },
      config: { ...made.config, logLevel: 'silent', port: 0, pollIntervalMs: POLL_MS, ...config },
    });
    apps.push(app);
    return { app, address: await app.listen() };
  }

  const submit = (address: string, name: string, headers: Record<string, string> = {}, key = name) =>
    fetch(`${address}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
      body: JSON.stringify({ name }),
    });

  const readJob = async (address: string, id: string) => (await (await fetch(`${address}/jobs/${id}`)).json()) as JobView;

  it('holds a job asked to start in 2 seconds (delta-seconds) queued until then, and starts it within the poll interval after', async () => {
    const { address } = await serve();
    const sentAt = Date.now();
    const response = await submit(address, 'delta', { 'not-before': '2' });
    expect(response.status).toBe(202);
    const { job_id: id } = (await response.json()) as { job_id: string };
    const queued = await readJob(address, id);
    expect(queued.status).toBe('queued');
    const runAt = Date.parse(queued.nextAttemptAt ?? '');
    // Two seconds from when the request arrived, a moment before the job was stored.
    expect(runAt - Date.parse(queued.createdAt)).toBeGreaterThan(1900);
    expect(runAt - Date.parse(queued.createdAt)).toBeLessThanOrEqual(2000);
    expect(runAt).toBeGreaterThanOrEqual(sentAt + 2000);
    await sleep(1500);
    expect(started.has('delta')).toBe(false);
    expect((await readJob(address, id)).status).toBe('queued');
    const startedAt = await waitFor('the job to start', () => started.get('delta'), 5000);
    expect(startedAt).toBeGreaterThanOrEqual(runAt);
    expect(startedAt - runAt).toBeLessThan(POLL_MS + 400);
  });

  it('holds a job until an HTTP date, and runs one whose date has passed at once', async () => {
    const { address } = await serve();
    // An HTTP date has whole seconds: the next second but one.
    const at = (Math.floor(Date.now() / 1000) + 2) * 1000;
    const response = await submit(address, 'dated', { 'not-before': httpDate(at) });
    expect(response.status).toBe(202);
    const { job_id: id } = (await response.json()) as { job_id: string };
    expect(await readJob(address, id)).toMatchObject({ status: 'queued', nextAttemptAt: new Date(at).toISOString() });
    const startedAt = await waitFor('the dated job to start', () => started.get('dated'), 5000);
    expect(startedAt).toBeGreaterThanOrEqual(at);
    expect(startedAt - at).toBeLessThan(POLL_MS + 400);

    const pastAt = Date.now();
    const past = await submit(address, 'past', { 'not-before': 'Sun, 06 Nov 1994 08:49:37 GMT' });
    expect(past.status).toBe(202);
    expect((await waitFor('the past job to start', () => started.get('past'), 5000)) - pastAt).toBeLessThan(1000);
  });

  it.each([
    ['soon', 'is not delta-seconds'],
    ['-5', 'is not delta-seconds'],
    ['1.5', 'is not delta-seconds'],
    ['', 'is not delta-seconds'],
    ['2026-12-07T03:00:00Z', 'is not delta-seconds'],
    ['Sun, 06 Nov 1994 08:49:37 UTC', 'is not delta-seconds'],
    ['Mon, 06 Nov 1994 08:49:37 GMT', 'is not delta-seconds'],
    ['Sun, 31 Feb 2027 08:49:37 GMT', 'is not delta-seconds'],
    ['61', 'asks for a start 61 s from now; this server accepts at most 60 s ahead (NOT_BEFORE_MAX_SECONDS)'],
  ])('answers Not-Before %j with 400 not-before-invalid and stores nothing', async (value, detail) => {
    const { app, address } = await serve({ notBeforeMaxSeconds: 60 });
    const response = await submit(address, 'bad', { 'not-before': value });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    const body = (await response.json()) as { type: string; title: string; status: number; detail: string };
    expect(body).toMatchObject({ type: `${PROBLEM_TYPE_BASE}not-before-invalid`, title: 'Invalid Not-Before', status: 400 });
    expect(body.detail).toContain(detail);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
    // The key was not used up.
    expect((await submit(address, 'bad')).status).toBe(202);
  });

  it('refuses Not-Before sent on two header lines', async () => {
    const { app, address } = await serve();
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const sent = request(`${address}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'twice' } }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
      });
      // An array is sent as one header line per value.
      sent.setHeader('not-before', ['5', '10']);
      sent.on('error', reject);
      sent.end(JSON.stringify({ name: 'twice' }));
    });
    expect(status).toBe(400);
    expect(JSON.parse(body)).toMatchObject({ type: `${PROBLEM_TYPE_BASE}not-before-invalid`, detail: expect.stringContaining('2 header lines') });
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('refuses an HTTP date past NOT_BEFORE_MAX_SECONDS too', async () => {
    const { address } = await serve({ notBeforeMaxSeconds: 60 });
    const response = await submit(address, 'far', { 'not-before': httpDate(Date.now() + 120_000) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { detail: string }).detail).toContain('at most 60 s ahead (NOT_BEFORE_MAX_SECONDS)');
  });

  it('replays a retry with the same key and Not-Before (the first start time stands); another Not-Before, or none, is 422', async () => {
    const { app, address } = await serve();
    const first = await submit(address, 'once', { 'not-before': '60' });
    expect(first.status).toBe(202);
    // Nothing changes before the start: pollers are told to come back then.
    expect(first.headers.get('retry-after')).toBe('60');
    const { job_id: id } = (await first.json()) as { job_id: string };
    const polled = await fetch(`${address}/jobs/${id}`);
    expect(Number(polled.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
    expect(Number(polled.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    const runAt = ((await polled.json()) as JobView).nextAttemptAt;
    // The key stays bound for IDEMPOTENCY_RETENTION_MS (24 h) after the job's start, not after its submission.
    const record = await app.store.getIdempotencyRecord('anonymous', 'runTask', 'once');
    expect(record?.expiresAt).toBe(Date.parse(runAt ?? '') + 24 * 60 * 60 * 1000);
    await sleep(1100);
    const retried = await submit(address, 'once', { 'not-before': '60' });
    expect(retried.status).toBe(202);
    expect(retried.headers.get('idempotent-replayed')).toBe('true');
    expect(((await retried.json()) as { job_id: string }).job_id).toBe(id);
    expect((await readJob(address, id)).nextAttemptAt).toBe(runAt);
    for (const headers of [{ 'not-before': '120' }, {}] as Record<string, string>[]) {
      const other = await submit(address, 'once', headers);
      expect(other.status).toBe(422);
      expect(((await other.json()) as { type: string }).type).toBe(`${PROBLEM_TYPE_BASE}idempotency-key-reused`);
    }
    // And the other way round: a key first used without Not-Before refuses one with it.
    expect((await submit(address, 'plain')).status).toBe(202);
    expect((await submit(address, 'plain', { 'not-before': '5' })).status).toBe(422);
    expect(await countStored(app.store)).toEqual({ jobs: 2, keys: 2 });
  });

  it("takes enqueue's runAt alike: held until then, replayed with the same runAt, refused past the cap or when invalid", async () => {
    const { app } = await serve({ notBeforeMaxSeconds: 60 });
    const runAt = new Date(Date.now() + 1500);
    const { jobId, replayed } = await app.enqueue('runTask', { body: { name: 'coded' } }, { key: 'coded', runAt });
    expect(replayed).toBe(false);
    const job = await app.store.getJob('anonymous', jobId);
    expect(job).toMatchObject({ status: 'queued', runAt: runAt.getTime() });
    expect(await app.enqueue('runTask', { body: { name: 'coded' } }, { key: 'coded', runAt: runAt.getTime() })).toEqual({ jobId, replayed: true });
    const reused = await app.enqueue('runTask', { body: { name: 'coded' } }, { key: 'coded', runAt: runAt.getTime() + 1000 }).catch((error: unknown) => error);
    expect(reused).toBeInstanceOf(ProblemError);
    expect((reused as ProblemError).problem.type).toBe(`${PROBLEM_TYPE_BASE}idempotency-key-reused`);
    for (const [bad, detail] of [
      [new Date('not a date'), 'runAt is not a valid time'],
      [Date.now() + 120_000, 'runAt asks for a start'],
    ] as const) {
      const error = await app.enqueue('runTask', { body: { name: 'bad' } }, { runAt: bad }).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(ProblemError);
      expect((error as ProblemError).problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}not-before-invalid`, status: 400 });
      expect((error as ProblemError).problem.detail).toContain(detail);
    }
    await sleep(1000);
    expect(started.has('coded')).toBe(false);
    const startedAt = await waitFor('the enqueued job to start', () => started.get('coded'), 5000);
    expect(startedAt).toBeGreaterThanOrEqual(runAt.getTime());
    expect(startedAt - runAt.getTime()).toBeLessThan(POLL_MS + 400);
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });

  it('declares Not-Before on every asynchronous operation of the served document', async () => {
    const { app } = await serve();
    const served = app.servedDocument as unknown as {
      paths: Record<string, Record<string, { parameters?: unknown[] }>>;
      components: { parameters: Record<string, unknown> };
    };
    expect(served.paths['/tasks']?.post?.parameters).toContainEqual({ $ref: '#/components/parameters/NotBefore' });
    expect(served.paths['/tasks/preview']?.get?.parameters ?? []).not.toContainEqual({ $ref: '#/components/parameters/NotBefore' });
    expect(served.components.parameters.NotBefore).toMatchObject({ name: 'Not-Before', in: 'header', required: false, schema: { type: 'string' } });
  });
});
