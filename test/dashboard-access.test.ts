import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { createDemo } from '../src/demo/service.js';
import { ALICE, API_KEYS, BOB, startDemo, submitReport, tempDir } from './helpers.js';

/*
 * Who reaches the dashboard, where, and what its settings accept, through fastify.inject (the
 * browser tests are test/dashboard.browser.test.ts).
 */

const running: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const demo of running.splice(0)) await demo.close();
});

async function demo(config: Parameters<typeof startDemo>[0]) {
  const started = await startDemo(config);
  running.push(started);
  return started.app;
}

describe('dashboard access', () => {
  it("through the service's own security handlers: operators (ADMIN_PRINCIPALS) only", async () => {
    const app = await demo({ adminPrincipals: 'bob' });
    const submitted = await submitReport(app, { title: 't', rows: 1 }, { 'idempotency-key': 'k1' });
    expect(submitted.statusCode).toBe(202);
    const id = submitted.json().job_id as string;
    const asBob = await app.server.inject({ url: `/dashboard/api/jobs/${id}`, headers: BOB });
    expect(asBob.statusCode).toBe(200);
    expect(asBob.json().job).toMatchObject({ id, principal: 'alice' });
    expect(asBob.json().input).toEqual({ body: { title: 't', rows: 1, format: 'csv' }, params: {}, query: {} });

    const asAlice = await app.server.inject({ url: '/dashboard/api/overview', headers: ALICE });
    expect(asAlice.statusCode).toBe(403);
    expect(asAlice.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(asAlice.json().type).toBe('urn:asyncfirst:problem:forbidden');
    const nobody = await app.server.inject({ url: '/dashboard/' });
    expect(nobody.statusCode).toBe(401);
    expect(nobody.headers['content-security-policy']).toContain("script-src 'self'");
    // The page's stream of every job's events is the dashboard's too: operators only.
    const aliceStream = await app.server.inject({ url: '/dashboard/api/events', headers: ALICE });
    expect(aliceStream.statusCode).toBe(403);
    expect(aliceStream.json().type).toBe('urn:asyncfirst:problem:forbidden');
    expect((await app.server.inject({ url: '/dashboard/api/events' })).statusCode).toBe(401);
    // The schedules too: the operator reads them, nobody else.
    const schedules = await app.server.inject({ url: '/dashboard/api/schedules', headers: BOB });
    expect(schedules.statusCode).toBe(200);
    expect(schedules.headers['content-security-policy']).toContain("default-src 'none'");
    expect(schedules.json()).toEqual({ schedules: [] });
    expect((await app.server.inject({ url: '/dashboard/api/schedules', headers: ALICE })).statusCode).toBe(403);
    expect((await app.server.inject({ url: '/dashboard/api/schedules' })).statusCode).toBe(401);
  });

  it("shows a job's newest 200 events, reading no older ones", async () => {
    const app = await demo({ adminPrincipals: 'bob', workerConcurrency: 0 });
    const id = (await submitReport(app, { title: 't', rows: 1 }, { 'idempotency-key': 'k1' })).json().job_id as string;
    const [claimed] = await app.store.claimJobs({ owner: 'test', limit: 1, now: Date.now(), leaseMs: 30_000 });
    if (!claimed) throw new Error('nothing claimed');
    for (let percent = 0; percent < 205; percent++) await app.store.reportProgress(id, claimed.fence, { percent: percent % 100 }, Date.now());
    const detail = (await app.server.inject({ url: `/dashboard/api/jobs/${id}`, headers: BOB })).json();
    // Version 1 is job.running, 2–206 the progress reports: the first six are left out.
    expect(detail.eventsOmitted).toBe(6);
    expect(detail.events).toHaveLength(200);
    expect(detail.events[0]).toMatchObject({ version: 7, type: 'job.progress', status: 'running', progress: { percent: 5 } });
    expect(detail.events.at(-1)).toMatchObject({ version: 206, type: 'job.progress', progress: { percent: 4 } });
  });

  it('with DASHBOARD_USER and DASHBOARD_PASSWORD: HTTP basic with exactly those', async () => {
    const app = await demo({ dashboardUser: 'ops', dashboardPassword: 'pw' });
    const basic = (credentials: string) => ({ authorization: `Basic ${Buffer.from(credentials).toString('base64')}` });
    const session = await app.server.inject({ url: '/dashboard/api/session', headers: basic('ops:pw') });
    expect(session.statusCode).toBe(200);
    expect(session.json()).toEqual({ principal: 'ops', readOnly: false });
    for (const headers of [basic('ops:wrong'), basic('ops:pwx'), {}, ALICE]) {
      const refused = await app.server.inject({ url: '/dashboard/api/session', headers });
      expect(refused.statusCode).toBe(401);
      expect(refused.headers['www-authenticate']).toBe('Basic realm="asyncfirst dashboard", charset="UTF-8"');
      expect(refused.json().type).toBe('urn:asyncfirst:problem:unauthorized');
    }
  });

  it('is served at DASHBOARD_PREFIX, redirects the bare prefix to the page, and answers other methods 405', async () => {
    const app = await demo({ dashboardPrefix: '/ops/board', adminPrincipals: 'alice' });
    const bare = await app.server.inject({ url: '/ops/board', headers: ALICE });
    expect(bare.statusCode).toBe(308);
    expect(bare.headers.location).toBe('/ops/board/');
    const page = await app.server.inject({ url: '/ops/board/', headers: ALICE });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).not.toMatch(/<script>|<style>| style=/);
    expect(page.body).toContain('<script type="module" src="assets/dashboard.js"></script>');
    const put = await app.server.inject({ method: 'PUT', url: '/ops/board/api/jobs', headers: ALICE });
    expect(put.statusCode).toBe(405);
    expect(put.headers.allow).toBe('GET, HEAD');
    expect((await app.server.inject({ url: '/dashboard/', headers: ALICE })).statusCode).toBe(404);
    expect((await app.server.inject({ url: '/ops/board/assets/nothing.js', headers: ALICE })).json().type).toBe('urn:asyncfirst:problem:not-found');
  });

  it('DASHBOARD=off serves nothing there', async () => {
    const app = await demo({ dashboard: false, adminPrincipals: 'alice' });
    const response = await app.server.inject({ url: '/dashboard/', headers: ALICE });
    expect(response.statusCode).toBe(404);
    expect(response.json().type).toBe('urn:asyncfirst:problem:not-found');
  });

  it('validates its settings', () => {
    expect(loadConfig({})).toMatchObject({ dashboard: true, dashboardPrefix: '/dashboard', dashboardReadOnly: false, dashboardUser: '' });
    expect(loadConfig({ DASHBOARD: 'off', DASHBOARD_READ_ONLY: 'true' })).toMatchObject({ dashboard: false, dashboardReadOnly: true });
    expect(() => loadConfig({ DASHBOARD: 'maybe' })).toThrow(ConfigError);
    expect(() => loadConfig({ DASHBOARD_PREFIX: 'dashboard' })).toThrow(/DASHBOARD_PREFIX/);
    expect(() => loadConfig({ DASHBOARD_PREFIX: '/dashboard/' })).toThrow(/DASHBOARD_PREFIX/);
    expect(() => loadConfig({ DASHBOARD_USER: 'ops' })).toThrow(/DASHBOARD_USER and DASHBOARD_PASSWORD/);
    expect(() => loadConfig({ DASHBOARD_USER: 'o:ps', DASHBOARD_PASSWORD: 'pw' })).toThrow(/must not contain ":"/);
    for (const taken of ['/jobs', '/docs', '/metrics/board']) expect(() => loadConfig({ DASHBOARD_PREFIX: taken })).toThrow(/which the server serves itself/);
  });

  it("refuses to start when the dashboard would be put over the contract's paths", async () => {
    const tmp = tempDir();
    await expect(createDemo({ apiKeys: API_KEYS, config: { databaseUrl: tmp.dbPath, logLevel: 'silent', dashboardPrefix: '/reports' } })).rejects.toThrow(
      "the contract's path /reports is under DASHBOARD_PREFIX /reports; set another DASHBOARD_PREFIX, or DASHBOARD=off",
    );
    tmp.cleanup();
    const app = await demo({ dashboardPrefix: '/reports-board', adminPrincipals: 'alice' });
    expect((await app.server.inject({ url: '/reports-board/', headers: ALICE })).statusCode).toBe(200);
  });
});
