import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { components, paths } from '../generated/api.js';
import type { AsyncFirstApp } from '../src/app.js';
import { createClient, JobFailedError, type RetryOptions } from '../src/client/index.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { createDemo } from '../src/demo/service.js';
import type { AnyHandler } from '../src/handlers.js';
import { API_KEYS, allJobs, tempDir } from './helpers.js';
import { customApp, gate, REPO_ROOT, sleep, waitFor } from './worker-test-support.js';

/*
 * The typed client (src/client) against real servers on 127.0.0.1:0, a TCP proxy that loses an
 * answer after the server committed, and stub fetches for the retry rules.
 */

type Report = components['schemas']['Report'];
type Accepted = components['schemas']['JobAccepted'];

// RFC 9562 UUID version 7: a 48-bit millisecond timestamp, then version 7, the variant and random bits.
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const KEY_A = { 'X-API-Key': 'key-a' };

const reportFor = (input: unknown): Report => {
  const { title, rows } = (input as { body: { title: string; rows: number } }).body;
  return { title, format: 'csv', rowCount: rows, bytes: rows * 10, sha256: 'b'.repeat(64) };
};

/** The job ids the app's store holds, how many idempotency records, and the job each of these (alice's createReport) keys binds. */
async function stored(app: AsyncFirstApp, keys: string[]): Promise<{ jobIds: string[]; records: number; jobOfKey: Array<string | undefined> }> {
  const records = await Promise.all(keys.map((key) => app.store.getIdempotencyRecord('alice', 'createReport', key)));
  return {
    jobIds: (await allJobs(app.store)).map((job) => job.id),
    records: await app.store.countIdempotencyRecords(),
    jobOfKey: records.map((record) => record?.jobId),
  };
}

/** The job reference of a submission's answer (the 202 body), failing the test on anything else. */
function accepted(data: Report | Accepted | undefined): Accepted & { operation: 'createReport' } {
  if (!data || !('job_id' in data)) throw new Error(`expected a 202 job reference, got ${JSON.stringify(data)}`);
  return data as Accepted & { operation: 'createReport' };
}

/**
 * A TCP proxy to `target`. The first connection that carries a POST is forwarded to the server,
 * and when the server's answer arrives (so the job was committed) the client's connection is
 * destroyed without relaying a byte. It records each request's Idempotency-Key as the server got it.
 */
async function startDroppingProxy(target: string) {
  const { hostname, port } = new URL(target);
  const keys: string[] = [];
  let dropped = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    let sent = '';
    let seen = 0;
    let drop: boolean | undefined;
    client.on('data', (chunk: Buffer) => {
      sent += chunk.toString('latin1');
      if (drop === undefined) drop = sent.startsWith('POST ') && dropped === 0;
      if (drop && dropped === 0) dropped = 1;
      const found = [...sent.matchAll(/\r\nidempotency-key: *([^\r\n]*)/gi)].map((match) => match[1] as string);
      keys.push(...found.slice(seen));
      seen = found.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (drop) {
        client.destroy();
        upstream.destroy();
      } else {
        client.write(chunk);
      }
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: proxyPort } = server.address() as net.AddressInfo;
  return {
    origin: `http://127.0.0.1:${proxyPort}`,
    keys,
    dropped: () => dropped,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('the typed client against a real server', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  async function serve(options: { createReport?: AnyHandler; config?: Partial<AsyncFirstConfig>; maxAttempts?: number } = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await customApp({
      dbPath: tmp.dbPath,
      createReport: options.createReport ?? (async (input) => reportFor(input)),
      ...(options.maxAttempts === undefined ? {} : { createReportOptions: { maxAttempts: options.maxAttempts } }),
      config: { port: 0, host: '127.0.0.1', ...options.config },
    });
    apps.push(app);
    const address = await app.listen();
    return { app, address, dbPath: tmp.dbPath };
  }

  /** A client whose requests are recorded as they leave it. */
  function recordingClient(baseUrl: string, retry?: RetryOptions) {
    const sent: Request[] = [];
    const api = createClient<paths>({
      baseUrl,
      headers: KEY_A,
      ...(retry ? { retry } : {}),
      fetch: (request) => {
        sent.push(request);
        return globalThis.fetch(request);
      },
    });
    return { api, sent };
  }

  it('POST without an Idempotency-Key sends a generated time-ordered UUIDv7 key, the one the server stored', async () => {
    const { app, address } = await serve({ config: { workerConcurrency: 0 } });
    const { api, sent } = recordingClient(address);

    const first = await api.POST('/reports', { body: { title: 'Q1', rows: 10 } });
    const second = await api.POST('/reports', { body: { title: 'Q1', rows: 10 } });
    expect(first.response.status).toBe(202);
    expect(second.response.status).toBe(202);
    const keys = sent.map((request) => request.headers.get('idempotency-key'));
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(UUID_V7);
    expect(keys[1]).toMatch(UUID_V7);
    // One key per logical call: two calls are two jobs.
    expect(keys[1]).not.toBe(keys[0]);
    // Time-ordered: a later call's key sorts after an earlier one's (the server's key index grows at its end).
    expect((keys[0] as string) < (keys[1] as string)).toBe(true);
    expect(accepted(second.data).job_id).not.toBe(accepted(first.data).job_id);

    // The server stored exactly these two keys, the first for the first job.
    const rows = await stored(app, keys as string[]);
    expect(rows.records).toBe(2);
    expect(rows.jobOfKey).toEqual([accepted(first.data).job_id, accepted(second.data).job_id]);

    // A key given by the caller is sent as is.
    const own = await api.POST('/reports', { body: { title: 'Q1', rows: 10 }, params: { header: { 'Idempotency-Key': 'caller-key-1' } } });
    expect(own.response.status).toBe(202);
    expect(sent[2]?.headers.get('idempotency-key')).toBe('caller-key-1');
  });

  it('waitFor long-polls GET /jobs/{id} with Prefer: wait and resolves with the job’s result', async () => {
    const release = gate();
    const { address } = await serve({
      createReport: async (input) => {
        await release.promise;
        return reportFor(input);
      },
    });
    const { api, sent } = recordingClient(address);
    const { data } = await api.POST('/reports', { body: { title: 'Long poll', rows: 321 } });
    const job = accepted(data);
    expect(job.operation).toBe('createReport');

    const waiting = api.waitFor(job, { pollSeconds: 20 });
    // The one long-poll request is out while the job still runs; then the job finishes.
    await waitFor('the long-poll request', () => (sent.some((request) => request.method === 'GET') ? true : undefined));
    await sleep(150);
    release.open();
    const report = await waiting;

    expect(report).toEqual({ title: 'Long poll', format: 'csv', rowCount: 321, bytes: 3210, sha256: 'b'.repeat(64) });
    const polls = sent.filter((request) => request.method === 'GET');
    expect(polls).toHaveLength(1);
    expect(new URL(polls[0]?.url ?? '').pathname).toBe(`/jobs/${job.job_id}`);
    expect(polls[0]?.headers.get('prefer')).toBe('wait=20');
  });

  it('waitFor also takes a job read back from GET /jobs/{id}', async () => {
    const { address } = await serve();
    const { api } = recordingClient(address);
    const job = accepted((await api.POST('/reports', { body: { title: 'By job', rows: 5 } })).data);
    const { data: read } = await api.GET('/jobs/{id}', { params: { path: { id: job.job_id } } });
    expect(read?.id).toBe(job.job_id);
    if (!read) throw new Error('no job');
    await expect(api.waitFor(read, { timeout: 10_000 })).resolves.toMatchObject({ title: 'By job', rowCount: 5 });
  });

  it('waitFor rejects with JobFailedError carrying the stored problem when the job fails', async () => {
    const { address } = await serve({
      createReport: async () => {
        throw new Error('the generator broke');
      },
      maxAttempts: 1,
    });
    const { api } = recordingClient(address);
    const job = accepted((await api.POST('/reports', { body: { title: 'Failing', rows: 1 } })).data);

    const failure = await api.waitFor(job, { timeout: 10_000 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(JobFailedError);
    const error = failure as JobFailedError;
    expect(error.status).toBe('failed');
    expect(error.problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}job-handler-failed`, status: 500 });
    expect(error.job).toMatchObject({ id: job.job_id, status: 'failed' });
    expect(error.message).toMatch(/job failed/);
  });

  it('waitFor rejects with JobFailedError (canceled) when the job is canceled while it waits', async () => {
    const { address } = await serve({ config: { workerConcurrency: 0 } });
    const { api, sent } = recordingClient(address);
    const job = accepted((await api.POST('/reports', { body: { title: 'Canceled', rows: 1 } })).data);

    const waiting = api.waitFor(job).then(
      () => undefined,
      (error: unknown) => error,
    );
    await waitFor('the long-poll request', () => (sent.some((request) => request.method === 'GET') ? true : undefined));
    const canceled = await api.DELETE('/jobs/{id}', { params: { path: { id: job.job_id } } });
    expect(canceled.response.status).toBe(200);

    const failure = await waiting;
    expect(failure).toBeInstanceOf(JobFailedError);
    expect((failure as JobFailedError).status).toBe('canceled');
    expect((failure as JobFailedError).problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}job-canceled` });
  });

  it('waitFor rejects with a TimeoutError after `timeout` ms, and with the abort reason when its signal fires', async () => {
    const { app, address } = await serve({ config: { workerConcurrency: 0 } });
    const { api } = recordingClient(address);
    const job = accepted((await api.POST('/reports', { body: { title: 'Never runs', rows: 1 } })).data);

    const timedOut = await api.waitFor(job, { timeout: 300 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(timedOut).toBeInstanceOf(Error);
    expect((timedOut as Error).name).toBe('TimeoutError');

    const controller = new AbortController();
    const waiting = api.waitFor(job, { signal: controller.signal }).then(
      () => undefined,
      (error: unknown) => error,
    );
    await sleep(100);
    controller.abort();
    expect(((await waiting) as Error).name).toBe('AbortError');
    // After an aborted request fetch (undici) may open a spare connection that never carries a
    // request; the server's close would wait for the client's keep-alive timeout to drop it.
    app.server.server.closeAllConnections();
  });

  it('retries a submission whose answer was lost after the server committed: same key, the replay, exactly one job', async () => {
    const { app, address } = await serve();
    const proxy = await startDroppingProxy(address);
    cleanups.push(proxy.close);
    const { api } = recordingClient(proxy.origin, { baseDelayMs: 20 });

    const { data, response } = await api.POST('/reports', { body: { title: 'Lost answer', rows: 42 } });
    expect(proxy.dropped()).toBe(1);
    expect(response.status).toBe(202);
    expect(response.headers.get('idempotent-replayed')).toBe('true');
    const job = accepted(data);

    // Both tries reached the server with the same generated key.
    expect(proxy.keys).toHaveLength(2);
    expect(proxy.keys[0]).toMatch(UUID_V7);
    expect(proxy.keys[1]).toBe(proxy.keys[0]);
    expect(await stored(app, [proxy.keys[0] as string])).toEqual({ jobIds: [job.job_id], records: 1, jobOfKey: [job.job_id] });

    await expect(api.waitFor(job, { timeout: 10_000 })).resolves.toMatchObject({ title: 'Lost answer', rowCount: 42 });
  });

  it('runs examples/client.ts against a server: it prints the finished report', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createDemo({
      apiKeys: API_KEYS,
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', port: 0, host: '127.0.0.1', pollIntervalMs: 50 },
    });
    apps.push(app);
    const address = await app.listen();

    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/client.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, BASE_URL: address, API_KEY: 'key-a' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));

    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/accepted job [0-9A-Z]{26}/);
    expect(stdout).toMatch(/"rowCount": 20000/);
    const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as Report;
    expect(report).toMatchObject({ title: 'Example report', format: 'csv', rowCount: 20000 });
    expect(report.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('the client’s retry rules (stub fetch)', () => {
  const BASE = 'http://asyncfirst.invalid';
  const problemResponse = (status: number, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify({ type: `${PROBLEM_TYPE_BASE}x`, title: 'x', status }), {
      status,
      headers: { 'content-type': 'application/problem+json', ...headers },
    });
  const acceptedResponse = () => {
    const id = '01J0000000000000000000TEST';
    return new Response(JSON.stringify({ status: 'accepted', job_id: id, operation: 'createReport', location: `/jobs/${id}` }), {
      status: 202,
      headers: { 'content-type': 'application/json' },
    });
  };

  /** A fetch answering from `answers` in turn (the last one repeats), recording each call. */
  function stub(answers: Array<() => Response>, onCall: (call: number) => void = () => {}) {
    const calls: Array<{ at: number; key: string | null }> = [];
    const fetchImpl = async (request: Request) => {
      calls.push({ at: Date.now(), key: request.headers.get('idempotency-key') });
      onCall(calls.length);
      const answer = answers[Math.min(calls.length, answers.length) - 1] as () => Response;
      return answer();
    };
    return { calls, fetchImpl };
  }

  it('retries a 503 after its Retry-After, with the same Idempotency-Key, and returns the 202', async () => {
    const { calls, fetchImpl } = stub([() => problemResponse(503, { 'retry-after': '1' }), acceptedResponse]);
    const api = createClient<paths>({ baseUrl: BASE, headers: KEY_A, fetch: fetchImpl, retry: { baseDelayMs: 5 } });

    const { data, response } = await api.POST('/reports', { body: { title: 'Busy', rows: 1 } });
    expect(response.status).toBe(202);
    expect(accepted(data).job_id).toBe('01J0000000000000000000TEST');
    expect(calls).toHaveLength(2);
    expect(calls[0]?.key).toMatch(UUID_V7);
    expect(calls[1]?.key).toBe(calls[0]?.key);
    // Backoff alone would have waited at most 5 ms.
    expect((calls[1]?.at ?? 0) - (calls[0]?.at ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it('gives up after maxRetries and returns the last answer', async () => {
    const { calls, fetchImpl } = stub([() => problemResponse(503)]);
    const api = createClient<paths>({ baseUrl: BASE, headers: KEY_A, fetch: fetchImpl, retry: { maxRetries: 2, baseDelayMs: 1 } });

    const { data, error, response } = await api.POST('/reports', { body: { title: 'Down', rows: 1 } });
    expect(calls).toHaveLength(3);
    expect(new Set(calls.map((call) => call.key)).size).toBe(1);
    expect(response.status).toBe(503);
    expect(data).toBeUndefined();
    expect(error).toMatchObject({ status: 503 });
  });

  it('retries network errors too, then succeeds', async () => {
    const { calls, fetchImpl } = stub([
      () => {
        throw new TypeError('fetch failed');
      },
      acceptedResponse,
    ]);
    const api = createClient<paths>({ baseUrl: BASE, headers: KEY_A, fetch: fetchImpl, retry: { baseDelayMs: 1 } });
    const { response } = await api.POST('/reports', { body: { title: 'Flaky', rows: 1 } });
    expect(response.status).toBe(202);
    expect(calls).toHaveLength(2);
    expect(calls[1]?.key).toBe(calls[0]?.key);
  });

  it.each([400, 422])('does not retry a %i', async (status) => {
    const { calls, fetchImpl } = stub([() => problemResponse(status), acceptedResponse]);
    const api = createClient<paths>({ baseUrl: BASE, headers: KEY_A, fetch: fetchImpl, retry: { baseDelayMs: 1 } });
    const { error, response } = await api.POST('/reports', { body: { title: 'Refused', rows: 1 } });
    expect(response.status).toBe(status);
    expect(error).toMatchObject({ status });
    expect(calls).toHaveLength(1);
  });

  it('stops retrying when the request’s AbortSignal fires', async () => {
    const controller = new AbortController();
    const { calls, fetchImpl } = stub([() => problemResponse(503, { 'retry-after': '5' })], () => {
      setTimeout(() => controller.abort(), 50);
    });
    const api = createClient<paths>({ baseUrl: BASE, headers: KEY_A, fetch: fetchImpl, retry: { baseDelayMs: 1 } });

    const outcome = await api.POST('/reports', { body: { title: 'Abandoned', rows: 1 }, signal: controller.signal }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((outcome as Error).name).toBe('AbortError');
    await sleep(100);
    expect(calls).toHaveLength(1);
  });

  it('gives each logical call its own key, and keeps a caller’s key across retries', async () => {
    const { calls, fetchImpl } = stub([() => problemResponse(503), acceptedResponse]);
    const api = createClient<paths>({ baseUrl: BASE, headers: KEY_A, fetch: fetchImpl, retry: { baseDelayMs: 1 } });
    const key = randomUUID();
    await api.POST('/reports', { body: { title: 'Mine', rows: 1 }, params: { header: { 'Idempotency-Key': key } } });
    expect(calls.map((call) => call.key)).toEqual([key, key]);
  });
});
