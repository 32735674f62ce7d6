import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import { createDemo } from '../src/demo/service.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import type { ClaimRequest, Store } from '../src/store/store.js';
import { API_KEYS, tempDir } from './helpers.js';
import { customApp, waitFor } from './worker-test-support.js';

describe('GET /readyz', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function build(): Promise<AsyncFirstApp> {
    const tmp = tempDir();
    const app = await createDemo({ apiKeys: API_KEYS, config: { databaseUrl: tmp.dbPath, logLevel: 'silent' } });
    cleanups.push(tmp.cleanup, () => app.close());
    return app;
  }

  const readyz = (app: AsyncFirstApp) => app.server.inject({ method: 'GET', url: '/readyz' });

  it('answers 503 not-ready while the service is built but not started, and 200 once it runs', async () => {
    const app = await build();
    const starting = await readyz(app);
    expect(starting.statusCode).toBe(503);
    expect(starting.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(starting.headers['retry-after']).toBe('1');
    expect(starting.json()).toMatchObject({ type: 'urn:asyncfirst:problem:not-ready', status: 503 });
    // Liveness does not depend on it.
    expect((await app.server.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);

    app.startBackground();
    const ready = await readyz(app);
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready' });
  });

  it('answers 503 store-unavailable once the store cannot serve, and 503 shutting-down while the service stops', async () => {
    const app = await build();
    app.startBackground();
    expect((await readyz(app)).statusCode).toBe(200);
    const closing = app.close();
    const stopping = await readyz(app);
    expect(stopping.statusCode).toBe(503);
    expect(stopping.json()).toMatchObject({ type: 'urn:asyncfirst:problem:shutting-down' });
    await closing;

    const other = await build();
    other.startBackground();
    await other.store.close();
    const unavailable = await readyz(other);
    expect(unavailable.statusCode).toBe(503);
    expect(unavailable.json()).toMatchObject({ type: 'urn:asyncfirst:problem:store-unavailable' });
  });

  it('answers 503 not-ready naming the cause while the worker cannot claim jobs, and 200 once a claim succeeds again', async () => {
    const tmp = tempDir();
    const engine = await openSqliteEngine(tmp.dbPath);
    let failClaims = true;
    let failedClaims = 0;
    // The store answers its readiness round trip, but claims fail (a broken statement, say).
    const store: Store = Object.create(engine, {
      claimJobs: {
        value: (claim: ClaimRequest) => {
          if (!failClaims) return engine.claimJobs(claim);
          failedClaims++;
          return Promise.reject(new Error('no such column: lease_epoch'));
        },
      },
    });
    const app = await customApp({ dbPath: tmp.dbPath, store, createReport: () => ({}), config: { workerConcurrency: 2 } });
    cleanups.push(tmp.cleanup, () => app.close());
    app.startBackground();
    await waitFor('a failed claim', () => failedClaims > 0 || undefined);
    const failing = await readyz(app);
    expect(failing.statusCode).toBe(503);
    expect(failing.headers['retry-after']).toBe('5');
    expect(failing.json()).toMatchObject({ type: 'urn:asyncfirst:problem:not-ready', status: 503 });
    expect(failing.json().detail).toContain('the last claim failed: no such column: lease_epoch');

    failClaims = false;
    // The poll (20 ms here) claims again; once that succeeds the process is ready.
    await waitFor('ready again', async () => ((await readyz(app)).statusCode === 200 ? true : undefined));
  });
});
