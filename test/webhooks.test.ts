import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { CallbackPolicy } from '../src/delivery/callback-url.js';
import { sendWebhook } from '../src/delivery/webhook-sender.js';
import { signWebhook, verifyWebhook, WebhookVerificationError } from '../src/delivery/webhook-signature.js';
import type { AnyHandler } from '../src/handlers.js';
import type { Store, WebhookDelivery } from '../src/store/store.js';
import { ALICE, countStored, readStoreOn, tempDir } from './helpers.js';
import { customApp, fetchJob, sleep, waitFor } from './worker-test-support.js';

/*
 * Signed, durable webhooks over real sockets: an app listening on port 0 sends to a node:http
 * receiver on 127.0.0.1 (allowed with webhookAllowedHosts), which answers as each test scripts.
 */

const SECRET = `whsec_${Buffer.from('asyncfirst-webhook-test-secret!!').toString('base64')}`;

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** When the request arrived (ms since the epoch). */
  at: number;
}

/** How the receiver answers its n-th request: a status (and headers), or never. */
type Reply = { status: number; headers?: Record<string, string> } | 'never';

interface Receiver {
  /** http://127.0.0.1:<port> */
  origin: string;
  requests: Received[];
  close(): Promise<void>;
}

async function startReceiver(reply: (index: number) => Reply = () => ({ status: 200 })): Promise<Receiver> {
  const requests: Received[] = [];
  const server = http.createServer((request, response) => {
    const at = Date.now();
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const index = requests.length;
      requests.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), at });
      const answer = reply(index);
      if (answer === 'never') return;
      response.writeHead(answer.status, answer.headers).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Writes one raw HTTP/1.1 request (`lines` is its head, line by line) and reads the whole answer. */
function rawExchange(address: string, lines: string[], body: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const { hostname, port } = new URL(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const [statusLine = '', ...headerLines] = text.slice(0, split).split('\r\n');
      const headers = Object.fromEntries(
        headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as const),
      );
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(split + 4) });
    });
  });
}

interface Delivery {
  id: string;
  event: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: number;
  maxAttempts: number;
  lastStatus?: number;
  lastError?: string;
  nextAttemptAt?: string;
}

interface JobView {
  id: string;
  status: string;
  result?: { rowCount: number };
  error?: { type: string; status: number };
  deliveries?: Delivery[];
  [field: string]: unknown;
}

interface WebhookEvent {
  type: string;
  timestamp: string;
  data: JobView;
}

/** The webhook deliveries stored with one of alice's jobs, oldest first. */
async function storedDeliveries(store: Store, jobId: string): Promise<WebhookDelivery[]> {
  return (await store.getJob('alice', jobId))?.deliveries ?? [];
}

/** Callback URLs whose host is a non-public IPv4 address in another spelling, each refused at submission. */
const DISGUISED_NON_PUBLIC_URLS: [url: string, form: string][] = [
  ['http://[::127.0.0.2]:9090/', 'IPv4-compatible IPv6 (::/96) of loopback'],
  ['http://[::7f00:1]/', 'IPv4-compatible IPv6 of loopback, in hex'],
  ['http://[::10.0.0.5]/', 'IPv4-compatible IPv6 of a private address'],
  ['http://[::ffff:7f00:1]/', 'IPv4-mapped IPv6 (::ffff:0:0/96) of loopback, in hex'],
  ['http://[0:0:0:0:0:ffff:169.254.169.254]/', 'IPv4-mapped IPv6 of link-local, uncompressed'],
  ['http://[::ffff:0:127.0.0.1]/', 'IPv4-translated IPv6 (::ffff:0:0:0/96) of loopback'],
  ['http://[64:ff9b::127.0.0.1]/', 'NAT64 (64:ff9b::/96) of loopback'],
  ['http://[64:ff9b::a9fe:a9fe]/', 'NAT64 of link-local (cloud metadata)'],
  ['http://[64:ff9b:1::808:808]/', 'local-use NAT64 (64:ff9b:1::/48): where the IPv4 address sits is not fixed'],
  ['http://[2002:7f00:1::1]/', '6to4 (2002::/16) of loopback'],
  ['http://[2002:c0a8:101::1]/', '6to4 of a private address'],
  ['http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/', 'Teredo (2001::/32) with a loopback client'],
  ['http://[2001:0:a00:5:8000:63bf:f7f7:f7f7]/', 'Teredo with a private server'],
  ['http://[::]/', 'IPv6 unspecified'],
  ['http://[4000::1]/', 'IPv6 outside 2000::/3, the global unicast space'],
  ['http://2130706433/', 'IPv4 as one decimal number'],
  ['http://0x7f.1/', 'IPv4 in hex, two parts'],
  ['http://0x7f000001/', 'IPv4 as one hex number'],
  ['http://0177.0.0.1/', 'IPv4 with an octal part'],
  ['http://127.1/', 'IPv4, two parts'],
  ['http://127.0.0.1./', 'IPv4 with a trailing dot'],
  ['http://%31%32%37.0.0.1/', 'IPv4, percent-encoded'],
  ['http://0/', 'IPv4 0, which is 0.0.0.0'],
];

/** Resolved addresses (as a DNS lookup returns them) that embed an IPv4 address, and whether a connection may go there. */
const EMBEDDING_ADDRESSES: [address: string, allowed: boolean, form: string][] = [
  ['::7f00:2', false, 'IPv4-compatible of 127.0.0.2'],
  ['::127.0.0.2', false, 'IPv4-compatible of 127.0.0.2, dotted'],
  ['::a00:5', false, 'IPv4-compatible of 10.0.0.5'],
  ['::808:808', true, 'IPv4-compatible of 8.8.8.8'],
  ['::ffff:7f00:1', false, 'IPv4-mapped of 127.0.0.1, in hex'],
  ['::ffff:808:808', true, 'IPv4-mapped of 8.8.8.8, in hex'],
  ['::ffff:0:7f00:1', false, 'IPv4-translated of 127.0.0.1'],
  ['::ffff:0:a9fe:a9fe', false, 'IPv4-translated of 169.254.169.254'],
  ['::ffff:0:808:808', true, 'IPv4-translated of 8.8.8.8'],
  ['64:ff9b::7f00:1', false, 'NAT64 of 127.0.0.1'],
  ['64:ff9b::c0a8:101', false, 'NAT64 of 192.168.1.1'],
  ['64:ff9b::808:808', true, 'NAT64 of 8.8.8.8'],
  ['64:ff9b:1::808:808', false, 'local-use NAT64, even of 8.8.8.8'],
  ['64:ff9b:1:7f00:1::', false, 'local-use NAT64 (/64 layout) of 127.0.0.1'],
  ['2002:7f00:1::1', false, '6to4 of 127.0.0.1'],
  ['2002:a9fe:a9fe::1', false, '6to4 of 169.254.169.254'],
  ['2002:808:808::1', true, '6to4 of 8.8.8.8'],
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', false, 'Teredo: public server 65.54.227.120, client 127.0.0.1'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', false, 'Teredo: public server, client 192.0.2.45 (documentation)'],
  ['2001:0:a00:5:8000:63bf:f7f7:f7f7', false, 'Teredo: server 10.0.0.5, public client 8.8.8.8'],
  ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', true, 'Teredo: public server and public client 8.8.8.8'],
  ['::1', false, 'IPv6 loopback (IPv4-compatible of 0.0.0.1)'],
  ['4000::1', false, 'outside 2000::/3'],
  ['64:ff9b::1:0:0:1', false, 'in 64:ff9b::/32 but in neither NAT64 prefix (outside 2000::/3)'],
];

const REPORT_HANDLER: AnyHandler = async (input) => {
  const { title, rows } = input.body as { title: string; rows: number };
  return { title, format: 'csv', rowCount: rows, bytes: rows * 10, sha256: 'a'.repeat(64) };
};

describe('webhooks: signed, retried, durable deliveries of a job’s terminal event', () => {
  const apps: AsyncFirstApp[] = [];
  const receivers: Receiver[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const receiver of receivers.splice(0)) await receiver.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  function newDbPath(): string {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    return tmp.dbPath;
  }

  async function receiver(reply?: (index: number) => Reply): Promise<Receiver> {
    const started = await startReceiver(reply);
    receivers.push(started);
    return started;
  }

  /** An app on the demo contract, listening on 127.0.0.1:0, that may call 127.0.0.1 back. */
  async function listen(options: { dbPath?: string; config?: Partial<AsyncFirstConfig>; createReport?: AnyHandler; maxAttempts?: number } = {}) {
    const dbPath = options.dbPath ?? newDbPath();
    const app = await customApp({
      dbPath,
      createReport: options.createReport ?? REPORT_HANDLER,
      ...(options.maxAttempts === undefined ? {} : { createReportOptions: { maxAttempts: options.maxAttempts } }),
      config: {
        port: 0,
        host: '127.0.0.1',
        webhookSecret: SECRET,
        webhookAllowedHosts: '127.0.0.1',
        webhookRetryBaseMs: 50,
        webhookTimeoutMs: 1000,
        ...options.config,
      },
    });
    apps.push(app);
    const address = await app.listen();
    return { app, address, dbPath };
  }

  function submit(address: string, key: string, callbackUrl: string | undefined, body: unknown = { title: key, rows: 7 }) {
    return fetch(`${address}/reports`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE, ...(callbackUrl === undefined ? {} : { 'callback-url': callbackUrl }) },
      body: JSON.stringify(body),
    });
  }

  async function submitAccepted(address: string, key: string, callbackUrl: string): Promise<string> {
    const response = await submit(address, key, callbackUrl);
    expect(response.status).toBe(202);
    return ((await response.json()) as { job_id: string }).job_id;
  }

  const getJob = (address: string, id: string) => fetchJob<JobView>(address, id);

  /** Polls GET /jobs/{id} until its (only) delivery is no longer pending. */
  function settledDelivery(address: string, id: string, timeoutMs = 10_000): Promise<{ job: JobView; delivery: Delivery }> {
    return waitFor(
      `the delivery of job ${id} to settle`,
      async () => {
        const job = await getJob(address, id);
        const delivery = job.deliveries?.[0];
        return delivery && delivery.status !== 'pending' ? { job, delivery } : undefined;
      },
      timeoutMs,
      20,
    );
  }

  const requestCount = (target: Receiver, count: number, timeoutMs = 10_000) =>
    waitFor(`${count} request(s) at the receiver`, () => (target.requests.length >= count ? target.requests.slice(0, count) : undefined), timeoutMs);

  function verified(request: Received): WebhookEvent {
    return verifyWebhook<WebhookEvent>(SECRET, request.headers, request.body);
  }

  it('POSTs a signed {type: job.succeeded, timestamp, data: job} to the Callback-URL, which verifyWebhook accepts and a tampered body fails', async () => {
    const hook = await receiver();
    const { app, address } = await listen();
    const id = await submitAccepted(address, 'hook-ok', `${hook.origin}/hook?tenant=7`);

    const [request] = (await requestCount(hook, 1)) as [Received];
    expect(request.method).toBe('POST');
    expect(request.url).toBe('/hook?tenant=7');
    expect(request.headers['content-type']).toMatch(/^application\/json/);
    expect(request.headers['webhook-id']).toMatch(/^msg_/);
    const timestamp = Number(request.headers['webhook-timestamp']);
    expect(Number.isInteger(timestamp)).toBe(true);
    expect(Math.abs(timestamp - Date.now() / 1000)).toBeLessThan(60);
    expect(request.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);

    const event = verified(request);
    expect(event.type).toBe('job.succeeded');
    expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp);
    expect(event.data.id).toBe(id);
    expect(event.data.status).toBe('succeeded');
    expect(event.data.result).toEqual({ title: 'hook-ok', format: 'csv', rowCount: 7, bytes: 70, sha256: 'a'.repeat(64) });
    expect(Object.keys(event)).toEqual(['type', 'timestamp', 'data']);
    // Any change to the raw body breaks the signature.
    expect(() => verifyWebhook(SECRET, request.headers, request.body.replace('"rowCount":7', '"rowCount":8'))).toThrow(WebhookVerificationError);
    const otherSecret = `whsec_${Buffer.from('another-secret-of-32-bytes-long!').toString('base64')}`;
    expect(() => verifyWebhook(otherSecret, request.headers, request.body)).toThrow(WebhookVerificationError);

    const { job, delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ id: request.headers['webhook-id'], event: 'job.succeeded', status: 'succeeded', attempts: 1, lastStatus: 200 });
    // The event's data is the job as GET /jobs/{id} shows it (without the deliveries).
    const { deliveries: _deliveries, ...jobWithoutDeliveries } = job;
    expect(event.data).toEqual(jobWithoutDeliveries);

    const rows = await storedDeliveries(app.store, id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: request.headers['webhook-id'], url: `${hook.origin}/hook?tenant=7`, eventType: 'job.succeeded', status: 'succeeded' });
    expect(rows[0]?.payload).toBe(request.body);
  });

  it('retries a receiver that fails twice (503, 503, 200) with the same webhook-id, records success after 3 attempts, and never sends again', async () => {
    const hook = await receiver((index) => ({ status: index < 2 ? 503 : 200 }));
    const { app, address } = await listen();
    const id = await submitAccepted(address, 'hook-retry', `${hook.origin}/hook`);

    const requests = await requestCount(hook, 3);
    const webhookId = requests[0]?.headers['webhook-id'];
    expect(webhookId).toMatch(/^msg_/);
    for (const request of requests) {
      expect(request.headers['webhook-id']).toBe(webhookId);
      expect(request.body).toBe(requests[0]?.body);
      // Every attempt is signed afresh and verifies.
      expect(verified(request).type).toBe('job.succeeded');
    }

    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ id: webhookId, status: 'succeeded', attempts: 3, lastStatus: 200 });
    expect(delivery.lastError).toBeUndefined();

    // Many dispatcher polls later (20 ms each) nothing more was sent.
    await sleep(400);
    expect(hook.requests).toHaveLength(3);
    const rows = await storedDeliveries(app.store, id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'succeeded', attempts: 3, lastStatus: 200 });
  });

  it('honours Retry-After: after a 429 with Retry-After: 1 the next attempt comes at least a second later', async () => {
    // Without Retry-After the first retry would come 25–50 ms later (webhookRetryBaseMs 50).
    const hook = await receiver((index) => (index === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    const { address } = await listen();
    const id = await submitAccepted(address, 'hook-429', `${hook.origin}/hook`);

    const [first, second] = (await requestCount(hook, 2)) as [Received, Received];
    expect(second.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(second.at - first.at).toBeGreaterThanOrEqual(950);
    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 2, lastStatus: 200 });
  });

  it('stops at once when the receiver answers 410 Gone: the delivery fails after 1 attempt', async () => {
    const hook = await receiver(() => ({ status: 410 }));
    const { app, address } = await listen();
    const id = await submitAccepted(address, 'hook-410', `${hook.origin}/hook`);

    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ status: 'failed', attempts: 1, lastStatus: 410 });
    expect(delivery.lastError).toMatch(/410/);
    await sleep(300);
    expect(hook.requests).toHaveLength(1);
    expect((await storedDeliveries(app.store, id))[0]).toMatchObject({ status: 'failed', attempts: 1, lastStatus: 410 });
  });

  it('retries an attempt the receiver does not answer in time (timeout), with the same webhook-id, then delivers', async () => {
    const hook = await receiver((index) => (index === 0 ? 'never' : { status: 200 }));
    const { address } = await listen({ config: { webhookTimeoutMs: 400 } });
    const id = await submitAccepted(address, 'hook-timeout', `${hook.origin}/hook`);

    const [first, second] = (await requestCount(hook, 2)) as [Received, Received];
    expect(second.headers['webhook-id']).toBe(first.headers['webhook-id']);
    // The second attempt came only after the first one's timeout ran out.
    expect(second.at - first.at).toBeGreaterThanOrEqual(300);
    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 2, lastStatus: 200 });
  });

  it('marks the delivery failed after the last attempt (webhookMaxAttempts 2), keeping the last status and error', async () => {
    const hook = await receiver(() => ({ status: 503 }));
    const { app, address } = await listen({ config: { webhookMaxAttempts: 2 } });
    const id = await submitAccepted(address, 'hook-exhausted', `${hook.origin}/hook`);

    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ status: 'failed', attempts: 2, maxAttempts: 2, lastStatus: 503 });
    expect(delivery.lastError).toMatch(/503/);
    expect(delivery.nextAttemptAt).toBeUndefined();
    await sleep(300);
    expect(hook.requests).toHaveLength(2);
    expect(new Set(hook.requests.map((request) => request.headers['webhook-id'])).size).toBe(1);
    expect((await storedDeliveries(app.store, id))[0]).toMatchObject({ status: 'failed', attempts: 2, maxAttempts: 2, lastStatus: 503 });
  });

  it('marks a delivery failed when every attempt times out (webhookMaxAttempts 2)', async () => {
    const hook = await receiver(() => 'never');
    const { address } = await listen({ config: { webhookMaxAttempts: 2, webhookTimeoutMs: 300 } });
    const id = await submitAccepted(address, 'hook-silent', `${hook.origin}/hook`);

    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ status: 'failed', attempts: 2 });
    expect(delivery.lastStatus).toBeUndefined();
    expect(delivery.lastError).toMatch(/no answer within 300 ms/);
    expect(hook.requests).toHaveLength(2);
  });

  it('does not follow redirects: a 302 fails the delivery and the Location target receives nothing', async () => {
    const elsewhere = await receiver();
    const hook = await receiver(() => ({ status: 302, headers: { location: `${elsewhere.origin}/stolen` } }));
    const { address } = await listen();
    const id = await submitAccepted(address, 'hook-302', `${hook.origin}/hook`);

    const { delivery } = await settledDelivery(address, id);
    expect(delivery.status).not.toBe('succeeded');
    expect(delivery).toMatchObject({ status: 'failed', attempts: 1, lastStatus: 302 });
    await sleep(300);
    expect(hook.requests).toHaveLength(1);
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('delivers a pending delivery after a restart: a new app on the same database sends it, with the same webhook-id', async () => {
    const hook = await receiver((index) => ({ status: index === 0 ? 503 : 200 }));
    const dbPath = newDbPath();
    // The first retry is due 1–2 s after the failed attempt: time enough to stop the app before it.
    const first = await listen({ dbPath, config: { webhookRetryBaseMs: 2000 } });
    const id = await submitAccepted(first.address, 'hook-restart', `${hook.origin}/hook`);
    await requestCount(hook, 1);
    const pending = await waitFor('the failed first attempt to be recorded', async () => {
      const delivery = (await getJob(first.address, id)).deliveries?.[0];
      return delivery?.attempts === 1 && delivery.lastStatus === 503 ? delivery : undefined;
    });
    expect(pending.status).toBe('pending');
    await first.app.close();
    expect(hook.requests).toHaveLength(1);
    // The app has closed: read the file as another process would.
    expect((await readStoreOn(dbPath, (store) => storedDeliveries(store, id)))[0]).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 503 });

    const second = await listen({ dbPath });
    const [firstAttempt, retry] = (await requestCount(hook, 2)) as [Received, Received];
    expect(retry.headers['webhook-id']).toBe(firstAttempt.headers['webhook-id']);
    expect(retry.headers['webhook-id']).toBe(pending.id);
    expect(retry.body).toBe(firstAttempt.body);
    expect(verified(retry)).toMatchObject({ type: 'job.succeeded', data: { id, status: 'succeeded' } });
    const { delivery } = await settledDelivery(second.address, id);
    expect(delivery).toMatchObject({ id: pending.id, status: 'succeeded', attempts: 2, lastStatus: 200 });
    expect(hook.requests).toHaveLength(2);
  });

  it('delivers job.failed when the job fails, with the stored problem in data.error', async () => {
    const hook = await receiver();
    const failing: AnyHandler = async () => {
      throw new Error('the report generator broke');
    };
    const { address } = await listen({ createReport: failing, maxAttempts: 1 });
    const id = await submitAccepted(address, 'hook-failed', `${hook.origin}/hook`);

    const [request] = (await requestCount(hook, 1)) as [Received];
    const event = verified(request);
    expect(event.type).toBe('job.failed');
    expect(event.data).toMatchObject({ id, status: 'failed', error: { type: `${PROBLEM_TYPE_BASE}job-handler-failed` } });
    expect(event.data.result).toBeUndefined();
    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ event: 'job.failed', status: 'succeeded', attempts: 1 });
  });

  it('delivers job.canceled when a queued job is canceled, from an app that runs no worker', async () => {
    const hook = await receiver();
    const { app, address } = await listen({ config: { workerConcurrency: 0 } });
    expect(app.worker).toBeUndefined();
    expect(app.dispatcher).toBeDefined();
    const id = await submitAccepted(address, 'hook-canceled', `${hook.origin}/hook`);
    const canceled = await fetch(`${address}/jobs/${id}`, { method: 'DELETE', headers: ALICE });
    expect(canceled.status).toBe(200);

    const [request] = (await requestCount(hook, 1)) as [Received];
    const event = verified(request);
    expect(event.type).toBe('job.canceled');
    expect(event.data).toMatchObject({ id, status: 'canceled', error: { type: `${PROBLEM_TYPE_BASE}job-canceled` } });
    const { delivery } = await settledDelivery(address, id);
    expect(delivery).toMatchObject({ event: 'job.canceled', status: 'succeeded', attempts: 1, lastStatus: 200 });
  });

  it('refuses non-public and non-http Callback-URLs with 400 callback-url-refused and stores no job (no allowlist)', async () => {
    // No worker: the one accepted job below must never be delivered to the public internet.
    const { app, address } = await listen({ config: { webhookAllowedHosts: '', workerConcurrency: 0 } });
    const refused = [
      'http://127.0.0.1/hook',
      'http://127.0.0.1:8080/hook',
      'http://10.0.0.5/',
      'http://192.168.1.20/',
      'http://100.64.0.1/',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[fd00::1]/',
      'http://169.254.169.254/latest/meta-data/',
      'http://0.0.0.0/',
      'http://2130706433/',
      'ftp://example.com/',
      'file:///etc/passwd',
      'http://localhost/',
      'http://api.localhost/',
      'https://user:secret@example.com/hook',
      '/relative/hook',
    ];
    for (const [index, url] of refused.entries()) {
      const response = await submit(address, `ssrf-${index}`, url);
      expect(response.status, url).toBe(400);
      expect(response.headers.get('content-type'), url).toMatch(/^application\/problem\+json/);
      const problem = (await response.json()) as { type: string; status: number; detail?: string };
      expect(problem.type, url).toBe(`${PROBLEM_TYPE_BASE}callback-url-refused`);
      expect(problem.status, url).toBe(400);
      expect(problem.detail, url).toMatch(/Callback-URL/);
    }
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });

    // A public URL is accepted and stored with the job.
    const accepted = await submit(address, 'ssrf-public', 'https://hooks.example.com/asyncfirst');
    expect(accepted.status).toBe(202);
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });

  it('refuses any Callback-URL with 400 when WEBHOOK_SECRET is unset, and stores no job', async () => {
    const { app, address } = await listen({ config: { webhookSecret: '', webhookAllowedHosts: '127.0.0.1', workerConcurrency: 0 } });
    expect(app.dispatcher).toBeUndefined();
    for (const [index, url] of ['https://hooks.example.com/asyncfirst', 'http://127.0.0.1:9/hook'].entries()) {
      const response = await submit(address, `nosecret-${index}`, url);
      expect(response.status, url).toBe(400);
      expect(response.headers.get('content-type'), url).toMatch(/^application\/problem\+json/);
      const problem = (await response.json()) as { type: string; detail?: string };
      expect(problem.type, url).toBe(`${PROBLEM_TYPE_BASE}callback-url-refused`);
      expect(problem.detail, url).toMatch(/WEBHOOK_SECRET/);
    }
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
    // The same submission without a Callback-URL is fine.
    expect((await submit(address, 'nosecret-plain', undefined)).status).toBe(202);
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });
  it.each(DISGUISED_NON_PUBLIC_URLS)('refuses Callback-URL %s (%s) with 400 callback-url-refused and stores no job', async (url) => {
    const { app, address } = await listen({ config: { webhookAllowedHosts: '', workerConcurrency: 0 } });
    const response = await submit(address, 'disguised', url);
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await response.json()) as { type: string; status: number; detail?: string };
    expect(problem).toMatchObject({ type: `${PROBLEM_TYPE_BASE}callback-url-refused`, status: 400 });
    expect(problem.detail).toMatch(/^Callback-URL points at .+, which is not a public address\.$/);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('accepts a Callback-URL whose IPv6 literal embeds a public IPv4 address (NAT64 of 8.8.8.8), storing it with the job', async () => {
    const { app, address } = await listen({ config: { webhookAllowedHosts: '', workerConcurrency: 0 } });
    const response = await submit(address, 'nat64-public', 'http://[64:ff9b::8.8.8.8]/hook');
    expect(response.status).toBe(202);
    const { job_id } = (await response.json()) as { job_id: string };
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
    expect((await app.store.getJob('alice', job_id))?.callbackUrl).toBe('http://[64:ff9b::8.8.8.8]/hook');
  });

  it('refuses two Callback-URL header lines with 400 callback-url-refused, although each alone is accepted, and stores no job', async () => {
    const { app, address } = await listen({ config: { webhookAllowedHosts: '', workerConcurrency: 0 } });
    const body = JSON.stringify({ title: 'two lines', rows: 1 });
    const head = ['POST /reports HTTP/1.1', `Host: ${new URL(address).host}`, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`];
    head.push('X-API-Key: key-a', 'Idempotency-Key: two-callback-lines', 'Connection: close');
    const twice = await rawExchange(address, [...head, 'Callback-URL: https://a.example.com/hook', 'Callback-URL: https://b.example.com/hook'], body);
    expect(twice.status).toBe(400);
    expect(twice.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(twice.body)).toMatchObject({
      type: `${PROBLEM_TYPE_BASE}callback-url-refused`,
      status: 400,
      detail: 'Send one Callback-URL header line; this request has 2.',
    });
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });

    const once = await rawExchange(address, [...head, 'Callback-URL: https://a.example.com/hook'], body);
    expect(once.status).toBe(202);
    expect(await countStored(app.store)).toEqual({ jobs: 1, keys: 1 });
  });
});

describe('CallbackPolicy: the SSRF guard', () => {
  const policy = new CallbackPolicy();

  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.5', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local (cloud metadata)'],
    ['100.64.0.1', 'CGNAT'],
    ['100.127.255.254', 'CGNAT'],
    ['0.0.0.0', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['::1', 'IPv6 loopback'],
    ['::', 'IPv6 unspecified'],
    ['fe80::1', 'IPv6 link-local'],
    ['fc00::1', 'IPv6 ULA'],
    ['fd12:3456:789a::1', 'IPv6 ULA'],
    ['ff02::1', 'IPv6 multicast'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:10.0.0.5', 'IPv4-mapped private'],
    ['::ffff:169.254.169.254', 'IPv4-mapped link-local'],
    ['not-an-address', 'not an address'],
  ])('refuses %s (%s)', (address) => {
    expect(policy.addressAllowed(address)).toBe(false);
  });

  it.each(EMBEDDING_ADDRESSES)('judges %s by the IPv4 address it embeds: allowed %s (%s)', (address, allowed) => {
    expect(policy.addressAllowed(address)).toBe(allowed);
  });

  it('applies allowlist entries to the embedded IPv4 address, and IPv6 entries to the address as written', () => {
    const loopback = CallbackPolicy.fromList('127.0.0.1');
    expect(loopback.addressAllowed('::7f00:1')).toBe(true);
    expect(loopback.addressAllowed('64:ff9b::7f00:1')).toBe(true);
    expect(loopback.addressAllowed('64:ff9b::7f00:2')).toBe(false);
    expect(loopback.addressAllowed('2001:0:4136:e378:8000:63bf:80ff:fffe')).toBe(true);
    expect(loopback.addressAllowed('2001:0:7f00:1:8000:63bf:80ff:fffe')).toBe(true);
    expect(loopback.addressAllowed('2001:0:7f00:2:8000:63bf:80ff:fffe')).toBe(false);
    const localNat64 = CallbackPolicy.fromList('64:ff9b:1::/48');
    expect(localNat64.addressAllowed('64:ff9b:1::a00:5')).toBe(true);
    expect(localNat64.refusal('http://[64:ff9b:1::a00:5]/hook')).toBeUndefined();
    expect(localNat64.addressAllowed('64:ff9b::a00:5')).toBe(false);
  });

  it.each(['93.184.216.34', '8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001::200e', '::ffff:8.8.8.8'])(
    'allows the public address %s',
    (address) => {
      expect(policy.addressAllowed(address)).toBe(true);
    },
  );

  it('allows what a CIDR entry covers, and nothing more', () => {
    const allowed = CallbackPolicy.fromList(' 10.0.0.0/8 , fd00::/8 ,');
    expect(allowed.addressAllowed('10.9.9.9')).toBe(true);
    expect(allowed.addressAllowed('::ffff:10.9.9.9')).toBe(true);
    expect(allowed.addressAllowed('fd12::1')).toBe(true);
    expect(allowed.addressAllowed('192.168.1.1')).toBe(false);
    expect(allowed.addressAllowed('127.0.0.1')).toBe(false);
    expect(allowed.addressAllowed('fc00::1')).toBe(false);
    expect(allowed.refusal('http://10.1.2.3/hook')).toBeUndefined();
    expect(allowed.refusal('http://192.168.1.1/hook')).toMatch(/not a public address/);
  });

  it('allows a single address entry as a /32 and no neighbour', () => {
    const allowed = CallbackPolicy.fromList('127.0.0.1');
    expect(allowed.addressAllowed('127.0.0.1')).toBe(true);
    expect(allowed.addressAllowed('::ffff:127.0.0.1')).toBe(true);
    expect(allowed.addressAllowed('127.0.0.2')).toBe(false);
    expect(allowed.addressAllowed('::1')).toBe(false);
    expect(allowed.refusal('http://127.0.0.1:9999/hook')).toBeUndefined();
    // Allowing the address does not allow the name localhost.
    expect(allowed.refusal('http://localhost:9999/hook')).toMatch(/localhost/);
  });

  it('allows any address of a host-name entry, for that host name only', () => {
    const allowed = CallbackPolicy.fromList('hooks.internal');
    expect(allowed.addressAllowed('10.0.0.5', 'hooks.internal')).toBe(true);
    expect(allowed.addressAllowed('10.0.0.5', 'HOOKS.internal')).toBe(true);
    expect(allowed.addressAllowed('10.0.0.5', 'other.internal')).toBe(false);
    expect(allowed.addressAllowed('10.0.0.5')).toBe(false);
    expect(allowed.refusal('http://hooks.internal/x')).toBeUndefined();
  });

  it('refuses, before any DNS, URLs that are not http(s), carry credentials, name localhost, or are non-public literals', () => {
    expect(policy.refusal('ftp://example.com/')).toMatch(/ftp/);
    expect(policy.refusal('https://user:pw@example.com/')).toMatch(/credentials/);
    expect(policy.refusal('http://localhost:3000/')).toMatch(/localhost/);
    expect(policy.refusal('http://[::1]:3000/')).toMatch(/not a public address/);
    expect(policy.refusal('not a url')).toMatch(/absolute URL/);
    expect(policy.refusal('https://hooks.example.com/x')).toBeUndefined();
    expect(policy.refusal('https://93.184.216.34/x')).toBeUndefined();
  });

  function lookupWith(target: CallbackPolicy, hostname: string, options: { all?: boolean } = {}) {
    return new Promise<{ error: (Error & { code?: string }) | null; address: string | LookupAddress[] }>((resolve) => {
      target.lookup(hostname, options, (error, address) => resolve({ error, address }));
    });
  }

  it('its lookup refuses a host name that resolves only to loopback, with code ESSRFBLOCKED', async () => {
    // The precondition: here, localhost resolves to loopback addresses only.
    const resolved = await new Promise<LookupAddress[]>((resolve, reject) =>
      dnsLookup('localhost', { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))),
    );
    expect(resolved.length).toBeGreaterThan(0);
    expect(resolved.every((entry) => policy.addressAllowed(entry.address) === false)).toBe(true);

    for (const options of [{}, { all: true }]) {
      const { error } = await lookupWith(policy, 'localhost', options);
      expect(error?.code).toBe('ESSRFBLOCKED');
      expect(error?.message).toMatch(/localhost resolves only to non-public addresses/);
    }
    // With the address allowed, the same lookup yields it.
    const open = await lookupWith(CallbackPolicy.fromList('127.0.0.1,::1'), 'localhost');
    expect(open.error).toBeNull();
    expect(['127.0.0.1', '::1']).toContain(open.address);
    const all = await lookupWith(CallbackPolicy.fromList('127.0.0.1,::1'), 'localhost', { all: true });
    expect(all.error).toBeNull();
    expect((all.address as LookupAddress[]).length).toBeGreaterThan(0);
  });
});

describe('sendWebhook: one delivery attempt', () => {
  const receivers: Receiver[] = [];
  afterEach(async () => {
    for (const receiver of receivers.splice(0)) await receiver.close();
  });

  /** A policy whose URL check passes every URL, as for a name that looked public when it was submitted. */
  class UrlCheckPassed extends CallbackPolicy {
    override refusal(_url: string): string | undefined {
      return undefined;
    }
  }

  const body = '{"type":"job.succeeded"}';
  const headers = () => signWebhook([SECRET], 'msg_test', Math.floor(Date.now() / 1000), body);

  it('gives up without connecting when the host name resolves to loopback and no allowlist covers it', async () => {
    const hook = await startReceiver();
    receivers.push(hook);
    const port = new URL(hook.origin).port;

    // The URL check refuses the name localhost outright.
    const byName = await sendWebhook(`http://localhost:${port}/hook`, headers(), body, { policy: new CallbackPolicy(), timeoutMs: 1000 });
    expect(byName).toMatchObject({ kind: 'give-up' });
    // Past the URL check, the connection's DNS lookup refuses the loopback address.
    const byLookup = await sendWebhook(`http://localhost:${port}/hook`, headers(), body, { policy: new UrlCheckPassed(), timeoutMs: 1000 });
    expect(byLookup.kind).toBe('give-up');
    expect(byLookup.kind === 'give-up' ? byLookup.error : '').toMatch(/resolves only to non-public addresses/);
    expect(hook.requests).toHaveLength(0);

    // The control: the same receiver, reached through a policy that allows 127.0.0.1.
    const allowed = await sendWebhook(`http://localhost:${port}/hook`, headers(), body, { policy: new UrlCheckPassed(['127.0.0.1', '::1']), timeoutMs: 1000 });
    expect(allowed).toEqual({ kind: 'delivered', status: 200 });
    expect(hook.requests).toHaveLength(1);
    expect(hook.requests[0]?.body).toBe(body);
  });

  it('classifies answers: 2xx delivered, 429/5xx retry (with Retry-After), 410 and other 4xx/3xx give up', async () => {
    const statuses = [204, 500, 429, 410, 404, 301];
    const hook = await startReceiver((index): Reply => {
      const status = statuses[index] ?? 200;
      return status === 429 ? { status, headers: { 'retry-after': '7' } } : status === 301 ? { status, headers: { location: '/x' } } : { status };
    });
    receivers.push(hook);
    const policy = CallbackPolicy.fromList('127.0.0.1');
    const outcomes = [];
    for (let i = 0; i < statuses.length; i++) outcomes.push(await sendWebhook(`${hook.origin}/hook`, headers(), body, { policy, timeoutMs: 1000 }));
    expect(outcomes[0]).toEqual({ kind: 'delivered', status: 204 });
    expect(outcomes[1]).toMatchObject({ kind: 'retry', status: 500 });
    expect(outcomes[2]).toMatchObject({ kind: 'retry', status: 429, retryAfterMs: 7000 });
    expect(outcomes[3]).toMatchObject({ kind: 'give-up', status: 410 });
    expect(outcomes[4]).toMatchObject({ kind: 'give-up', status: 404 });
    expect(outcomes[5]).toMatchObject({ kind: 'give-up', status: 301 });
    expect(hook.requests).toHaveLength(statuses.length);
  });
});
