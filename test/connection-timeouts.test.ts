import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { PROBLEM_TYPE_BASE } from '../src/core/problems.js';
import { createDemo } from '../src/demo/service.js';
import { API_KEYS, countStored, tempDir } from './helpers.js';
import { openConnection, type RawResponse } from './raw-connection.js';

/** Asserts a 408 request-timeout problem that closes the connection. */
function expectRequestTimeout(response: RawResponse | undefined) {
  expect(response?.status).toBe(408);
  expect(response?.headers['content-type']).toBe('application/problem+json; charset=utf-8');
  expect(response?.headers.connection).toBe('close');
  expect(Number(response?.headers['content-length'])).toBe(Buffer.byteLength(response?.body ?? ''));
  const body = JSON.parse(response?.body ?? '{}');
  expect(body).toMatchObject({ type: `${PROBLEM_TYPE_BASE}request-timeout`, status: 408, title: expect.any(String) });
  expect(body.detail).toMatch(/not received in time/);
}

describe('slow and idle clients over a real socket', () => {
  const apps: AsyncFirstApp[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function listen(config: Partial<AsyncFirstConfig>) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createDemo({
      apiKeys: API_KEYS,
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', port: 0, host: '127.0.0.1', workerConcurrency: 0, ...config },
    });
    apps.push(app);
    const address = await app.listen();
    return { app, address, port: Number(new URL(address).port), dbPath: tmp.dbPath };
  }

  it('cuts off a client that never finishes its headers and one that never finishes its body with 408, while GET /healthz is answered at once', async () => {
    const { app, address, port } = await listen({ headersTimeoutMs: 400, requestTimeoutMs: 900 });
    const slowHeaders = openConnection(port, 'POST /reports HTTP/1.1\r\nHost: localhost\r\nX-API-Key: key-a\r\n');
    const slowBody = openConnection(
      port,
      'POST /reports HTTP/1.1\r\nHost: localhost\r\nX-API-Key: key-a\r\nIdempotency-Key: slow-body\r\n' +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"title":',
    );
    // No credentials: answered 401 before its body, which then never ends; it too must not hold the connection.
    const slowBodyUnauthenticated = openConnection(
      port,
      'POST /reports HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
    );
    await new Promise((resolve) => setTimeout(resolve, 100));

    const health = await fetch(`${address}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    // Answered while the three slow clients were still connected, not after they were cut off.
    expect([slowHeaders.isOpen(), slowBody.isOpen(), slowBodyUnauthenticated.isOpen()]).toEqual([true, true, true]);

    const [headersClosedAfter, bodyClosedAfter, unauthenticatedClosedAfter] = await Promise.all([
      slowHeaders.closedWithin(3000),
      slowBody.closedWithin(3000),
      slowBodyUnauthenticated.closedWithin(3000),
    ]);
    // Node looks for expired requests every quarter of the shortest timeout here (100 ms).
    expect(headersClosedAfter).toBeGreaterThanOrEqual(380);
    expect(headersClosedAfter).toBeLessThan(1500);
    expect(bodyClosedAfter).toBeGreaterThanOrEqual(880);
    expect(bodyClosedAfter).toBeLessThan(2000);
    expect(unauthenticatedClosedAfter).toBeGreaterThanOrEqual(880);
    expect(unauthenticatedClosedAfter).toBeLessThan(2000);

    expect(slowHeaders.responses()).toHaveLength(1);
    expectRequestTimeout(slowHeaders.responses()[0]);
    expect(slowBody.responses()).toHaveLength(1);
    expectRequestTimeout(slowBody.responses()[0]);
    const [unauthorized, timedOut] = slowBodyUnauthenticated.responses();
    expect(unauthorized?.status).toBe(401);
    expectRequestTimeout(timedOut);
    expect(await countStored(app.store)).toEqual({ jobs: 0, keys: 0 });
  });

  it('closes a connection that sends nothing at all after the headers timeout', async () => {
    const { port } = await listen({ headersTimeoutMs: 300, requestTimeoutMs: 5000 });
    const silent = openConnection(port);
    const closedAfter = await silent.closedWithin(3000);
    expect(closedAfter).toBeGreaterThanOrEqual(280);
    expect(closedAfter).toBeLessThan(1500);
    expectRequestTimeout(silent.responses()[0]);
  });

  it('closes a keep-alive connection left idle for KEEP_ALIVE_TIMEOUT_MS', async () => {
    const { port } = await listen({ keepAliveTimeoutMs: 300 });
    const idle = openConnection(port, 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const closedAfter = await idle.closedWithin(4000);
    const [health] = idle.responses();
    expect(health?.status).toBe(200);
    expect(health?.headers.connection).toBe('keep-alive');
    expect(health?.headers['keep-alive']).toBe('timeout=0');
    // Node closes an idle connection a second after the advertised timeout, for clients that reuse it just in time.
    expect(closedAfter).toBeGreaterThanOrEqual(300);
    expect(closedAfter).toBeLessThan(2500);
  });

  it('closes connections past MAX_CONNECTIONS at once, and accepts new ones when a connection ends', async () => {
    const { app, address, port } = await listen({ maxConnections: 2 });
    const openConnections = () =>
      new Promise<number>((resolve, reject) => app.server.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
    const first = openConnection(port, 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const second = openConnection(port, 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await expect.poll(openConnections).toBe(2);
    await expect.poll(() => first.responses().length + second.responses().length).toBe(2);

    const third = openConnection(port, 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    expect(await third.closedWithin(1000)).toBeLessThan(1000);
    expect(third.received().length).toBe(0);
    await expect(fetch(`${address}/healthz`)).rejects.toThrow();
    expect(await openConnections()).toBe(2);

    first.socket.destroy();
    await expect.poll(openConnections).toBe(1);
    const health = await fetch(`${address}/healthz`, { headers: { connection: 'close' } });
    expect(health.status).toBe(200);
    expect(second.isOpen()).toBe(true);
    second.socket.destroy();
  });
});
