import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import { createDemo } from '../src/demo/service.js';
import { API_KEYS, tempDir } from './helpers.js';

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
});
