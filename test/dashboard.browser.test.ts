import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { operations } from '../generated/api.js';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import type { ScheduleDefinition } from '../src/contract/schedules.js';
import { problem } from '../src/core/problems.js';
import { demoOptions, reportHandlers } from '../src/demo/service.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import type { Handlers } from '../src/handlers.js';
import { tempDir } from './helpers.js';

/*
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core, against servers
 * listening on real ports. One service with the dashboard's basic-auth operator and one read-only
 * dashboard on the same database file (a second process, as it were, running no worker).
 * DASHBOARD_SCREENSHOT=1 also writes the README's screenshot, docs/dashboard.png, of a third
 * server on a database seeded with an hour of jobs.
 */

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const OPERATOR = { username: 'ops', password: 'correct horse battery staple' };
const BASIC = `Basic ${Buffer.from(`${OPERATOR.username}:${OPERATOR.password}`).toString('base64')}`;
const ALICE = { 'x-api-key': 'key-a' };
const ACTION_HEADER = 'x-asyncfirst-dashboard';
const LIVE_MS = 10_000;

/** The demo's reports, and titles that make a job block until canceled, fail, or fail only its first time. */
const failedOnce = new Set<string>();
const handlers: Handlers<operations> = {
  ...reportHandlers,
  async createReport(input, context) {
    const { title } = input.body;
    if (title.startsWith('block')) {
      const { signal } = context;
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('canceled')), { once: true }));
    }
    if (title.startsWith('fail-once') && !failedOnce.has(title)) {
      failedOnce.add(title);
      throw new Error(`${title}: the first attempt fails`);
    }
    if (title.startsWith('fail-always')) throw new Error(`${title}: always fails`);
    return reportHandlers.createReport(input, context);
  },
};

const tmp = tempDir();
const apps: AsyncFirstApp[] = [];
let base = '';
let readOnlyBase = '';
let attacker: Server;
let attackerBase = '';
let context: BrowserContext;
let browserProfile = '';
const consoleErrors: string[] = [];

/** A schedule of the service (declared by its process with a worker), due once a year so that it makes no job during the tests. */
const NIGHTLY: ScheduleDefinition = {
  name: 'new-year-report',
  operationId: 'createReport',
  cron: '0 0 3 1 1 *',
  timezone: 'Europe/Paris',
  input: { title: 'yearly', rows: 3 },
};

async function startApp(config: Partial<AsyncFirstConfig>, schedules: ScheduleDefinition[] = []): Promise<string> {
  const app = await createAsyncFirst({
    // With the demo's report-log notifier, so that job pages have notifications to show.
    ...demoOptions({ apiKeys: 'alice:key-a', logReports: true }),
    handlers,
    schedules,
    config: {
      databaseUrl: tmp.dbPath,
      logLevel: 'silent',
      port: 0,
      pollIntervalMs: 50,
      maxAttempts: 1,
      dashboardUser: OPERATOR.username,
      dashboardPassword: OPERATOR.password,
      ...config,
    },
  });
  apps.push(app);
  return (await app.listen()).replace('[::1]', '127.0.0.1');
}

async function submit(title: string): Promise<string> {
  const response = await fetch(`${base}/reports`, {
    method: 'POST',
    headers: { ...ALICE, 'content-type': 'application/json', 'idempotency-key': `key-${title}` },
    body: JSON.stringify({ title, rows: 3 }),
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { job_id: string }).job_id;
}

async function jobOf(id: string): Promise<{ status: string; attempts: number; result?: { title: string } }> {
  const response = await fetch(`${base}/jobs/${id}`, { headers: ALICE });
  expect(response.status).toBe(200);
  return response.json() as never;
}

async function waitForStatus(id: string, status: string): Promise<void> {
  const deadline = Date.now() + LIVE_MS;
  while ((await jobOf(id)).status !== status) {
    if (Date.now() > deadline) throw new Error(`job ${id} did not become ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A page of the dashboard whose console errors and uncaught exceptions fail the test. */
async function dashboardPage(): Promise<Page> {
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(`${page.url()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`${page.url()}: ${error.message}`));
  return page;
}

const statusOnPage = (page: Page) => page.locator('#job-status .status').getAttribute('data-status');

beforeAll(async () => {
  base = await startApp({}, [NIGHTLY]);
  readOnlyBase = await startApp({ dashboardReadOnly: true, workerConcurrency: 0 });
  // Another site: a page on another host name (localhost, not 127.0.0.1) whose form posts to the dashboard.
  attacker = createServer((request, response) => {
    const target = new URL(request.url ?? '/', 'http://attacker').searchParams.get('target') ?? '';
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end(`<!doctype html><form id="evil" method="POST" action="${target}"><button>win a prize</button></form>`);
  });
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
  attackerBase = `http://localhost:${(attacker.address() as AddressInfo).port}`;
  browserProfile = mkdtempSync(join(tmpdir(), 'asyncfirst-chromium-'));
  context = await chromium.launchPersistentContext(browserProfile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    httpCredentials: OPERATOR,
    viewport: { width: 1200, height: 900 },
  });
});

afterAll(async () => {
  await context?.close();
  await new Promise((resolve) => attacker?.close(resolve));
  for (const app of apps) await app.close();
  rmSync(browserProfile, { recursive: true, force: true });
  tmp.cleanup();
});

afterEach(() => {
  expect(consoleErrors.splice(0)).toEqual([]);
});

describe('the dashboard in Chromium', () => {
  const succeeded: string[] = [];
  let failed = '';

  it('serves the page with its Content-Security-Policy, and the overview counts the jobs just submitted', async () => {
    for (const title of ['first', 'second', 'third']) succeeded.push(await submit(title));
    for (const id of succeeded) await waitForStatus(id, 'succeeded');
    failed = await submit('fail-always-1');
    await waitForStatus(failed, 'failed');

    const page = await dashboardPage();
    const response = await page.goto(`${base}/dashboard`);
    expect(response?.status()).toBe(200);
    expect(page.url()).toBe(`${base}/dashboard/`);
    const headers = response?.headers() ?? {};
    expect(headers['content-security-policy']).toContain("script-src 'self'");
    expect(headers['content-security-policy']).toContain("style-src 'self'");
    expect(headers['content-security-policy']).toContain("default-src 'none'");
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['x-content-type-options']).toBe('nosniff');

    await page.waitForSelector('#counts tr[data-operation=createReport]');
    expect(await page.locator('[data-total=succeeded] .value').textContent()).toBe('3');
    expect(await page.locator('[data-total=failed] .value').textContent()).toBe('1');
    expect(await page.locator('#counts tr[data-operation=createReport] td[data-status=succeeded]').textContent()).toBe('3');
    // The chart: four accepted, four finished within the hour.
    expect(await page.locator('#activity').getAttribute('data-accepted')).toBe('4');
    expect(await page.locator('#activity').getAttribute('data-finished')).toBe('4');
    expect(await page.locator('#activity rect').count()).toBeGreaterThan(0);

    // A job submitted now appears without reloading.
    succeeded.push(await submit('fourth'));
    await page.waitForFunction(() => document.querySelector('[data-total=succeeded] .value')?.textContent === '4', undefined, { timeout: LIVE_MS });
    expect((await page.screenshot()).subarray(1, 4).toString()).toBe('PNG');
    await page.close();
  });

  it('lists jobs filtered by status, and finds a job by its id', async () => {
    const page = await dashboardPage();
    await page.goto(`${base}/dashboard/#/jobs`);
    await page.waitForSelector(`#jobs tr[data-job="${failed}"]`);
    expect(await page.locator('#jobs tbody tr').count()).toBe(5);

    await page.locator('#filters input[value=failed]').check();
    await page.waitForFunction(() => location.hash === '#/jobs?status=failed');
    await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 1);
    expect(await page.locator('#jobs tbody tr').getAttribute('data-job')).toBe(failed);
    expect(await page.locator('#jobs tbody tr .status').textContent()).toBe('failed');

    await page.locator('#lookup-id').fill((succeeded[0] as string).toLowerCase());
    await page.locator('#lookup button').click();
    await page.waitForSelector('#job-status');
    expect(page.url()).toBe(`${base}/dashboard/#/jobs/${succeeded[0]}`);
    await page.close();
  });

  it("shows a job's result, input and event timeline", async () => {
    const page = await dashboardPage();
    await page.goto(`${base}/dashboard/#/jobs/${succeeded[1]}`);
    await page.waitForSelector('#result');
    expect(await statusOnPage(page)).toBe('succeeded');
    const result = JSON.parse((await page.locator('#result pre').textContent()) ?? '');
    expect(result).toEqual((await jobOf(succeeded[1] as string)).result);
    expect(result.title).toBe('second');
    expect(JSON.parse((await page.locator('#input pre').textContent()) ?? '')).toEqual({
      body: { title: 'second', rows: 3, format: 'csv' },
      params: {},
      query: {},
    });
    const events = await page.locator('#timeline li').evaluateAll((items) => items.map((item) => item.getAttribute('data-event')));
    expect(events[0]).toBe('job.accepted');
    expect(events).toContain('job.running');
    expect(events.at(-1)).toBe('job.succeeded');
    expect(await page.locator('#facts').textContent()).toContain('alice');
    const notified = await page.locator('#notifications tbody tr td').evaluateAll((cells) => cells.map((cell) => cell.textContent));
    expect(notified.slice(0, 2)).toEqual(['report-log', 'job.succeeded']);

    await page.goto(`${base}/dashboard/#/jobs/${failed}`);
    await page.waitForSelector('#error');
    expect(await page.locator('#error').textContent()).toContain('fail-always-1: always fails');
    await page.close();
  });

  it('cancels a running job after a confirmation, and the page shows it canceled without a reload', async () => {
    const id = await submit('block-1');
    await waitForStatus(id, 'running');
    const page = await dashboardPage();
    await page.goto(`${base}/dashboard/#/jobs/${id}`);
    await page.waitForSelector('#cancel');
    expect(await statusOnPage(page)).toBe('running');

    // Declining the confirmation changes nothing.
    await page.locator('#cancel').click();
    expect(await page.locator('#confirm').isVisible()).toBe(true);
    expect(await page.locator('#confirm-text').textContent()).toContain(id);
    await page.locator('#confirm-no').click();
    expect(await page.locator('#confirm').isVisible()).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await jobOf(id)).status).toBe('running');

    await page.locator('#cancel').click();
    await page.locator('#confirm-yes').click();
    await page.waitForSelector('#job-status .status[data-status=canceled]', { timeout: LIVE_MS });
    expect((await jobOf(id)).status).toBe('canceled');
    expect(await page.locator('#flash').textContent()).toContain(id);
    expect(await page.locator('#retry').count()).toBe(1);
    expect(await page.locator('#cancel').count()).toBe(0);
    await page.close();
  });

  it("shows a change made elsewhere as it happens, over the one stream of every job's events (no polling meanwhile)", async () => {
    const id = await submit('block-elsewhere');
    await waitForStatus(id, 'running');
    const page = await dashboardPage();
    const reads: string[] = [];
    const streams: string[] = [];
    page.on('request', (request) => {
      const path = new URL(request.url()).pathname;
      if (path === `/dashboard/api/jobs/${id}`) reads.push(path);
      if (path === '/dashboard/api/events') streams.push(path);
    });
    const opened = page.waitForResponse((response) => new URL(response.url()).pathname === '/dashboard/api/events');
    await page.goto(`${base}/dashboard/#/jobs/${id}`);
    const stream = await opened;
    expect(stream.status()).toBe(200);
    expect(stream.headers()['content-type']).toMatch(/^text\/event-stream/);
    expect(stream.headers()['content-security-policy']).toContain("default-src 'none'");
    await page.waitForSelector('#job-status .status[data-status=running]');
    // While the stream is open nothing is polled: two seconds pass without a read of the job.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = reads.length;
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(reads.length).toBe(before);

    // Canceled through the public API, not the page: its job.canceled event has the page read the job again.
    const canceled = await fetch(`${base}/jobs/${id}`, { method: 'DELETE', headers: ALICE });
    expect(canceled.status).toBe(202);
    await page.waitForSelector('#job-status .status[data-status=canceled]', { timeout: LIVE_MS });
    expect(reads.length).toBeGreaterThan(before);
    expect(streams).toHaveLength(1);
    await page.close();
  });

  it('retries a failed job after a confirmation, and the page follows it to its result', async () => {
    const id = await submit('fail-once-1');
    await waitForStatus(id, 'failed');
    const page = await dashboardPage();
    await page.goto(`${base}/dashboard/#/jobs/${id}`);
    await page.waitForSelector('#retry');
    await page.locator('#retry').click();
    await page.locator('#confirm-yes').click();
    await page.waitForSelector('#job-status .status[data-status=succeeded]', { timeout: LIVE_MS });
    expect(await page.locator('#result').count()).toBe(1);
    const job = await jobOf(id);
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(1);
    const events = await page.locator('#timeline li').evaluateAll((items) => items.map((item) => item.getAttribute('data-event')));
    expect(events.filter((event) => event !== 'job.progress')).toEqual([
      'job.accepted',
      'job.running',
      'job.failed',
      'job.queued',
      'job.running',
      'job.succeeded',
    ]);
    await page.close();
  });

  it('refuses a cross-site form post with problem+json, and changes nothing', async () => {
    const page = await context.newPage();
    await page.goto(`${attackerBase}/?target=${encodeURIComponent(`${base}/dashboard/api/jobs/${failed}/retry`)}`);
    const [answer] = await Promise.all([page.waitForResponse((response) => response.url().endsWith('/retry')), page.locator('#evil button').click()]);
    expect(answer.status()).toBe(403);
    expect(answer.headers()['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(await answer.json()).toMatchObject({ type: 'urn:asyncfirst:problem:cross-site-request-refused', status: 403 });
    expect((await jobOf(failed)).status).toBe('failed');

    // Without a browser: the action header is still needed (no Sec-Fetch-Site to go by).
    const bare = await fetch(`${base}/dashboard/api/jobs/${failed}/retry`, { method: 'POST', headers: { authorization: BASIC } });
    expect(bare.status).toBe(403);
    expect(((await bare.json()) as { type: string }).type).toBe('urn:asyncfirst:problem:cross-site-request-refused');
    // A browser sends Sec-Fetch-Site; one that says another site is refused even with the header.
    const crossSite = await fetch(`${base}/dashboard/api/jobs/${failed}/retry`, {
      method: 'POST',
      headers: { authorization: BASIC, [ACTION_HEADER]: '1', 'sec-fetch-site': 'cross-site' },
    });
    expect(crossSite.status).toBe(403);
    expect((await jobOf(failed)).status).toBe('failed');
    await page.close();
  });

  it('read-only: the job page offers no action, and a forced POST is refused', async () => {
    const page = await dashboardPage();
    await page.goto(`${readOnlyBase}/dashboard/#/jobs/${failed}`);
    await page.waitForSelector('#error');
    expect(await statusOnPage(page)).toBe('failed');
    expect(await page.locator('#retry').count()).toBe(0);
    expect(await page.locator('#cancel').count()).toBe(0);
    for (const action of ['retry', 'cancel']) {
      const forced = await fetch(`${readOnlyBase}/dashboard/api/jobs/${failed}/${action}`, {
        method: 'POST',
        headers: { authorization: BASIC, [ACTION_HEADER]: '1' },
      });
      expect(forced.status).toBe(403);
      expect(forced.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(((await forced.json()) as { type: string }).type).toBe('urn:asyncfirst:problem:dashboard-read-only');
    }
    expect((await jobOf(failed)).status).toBe('failed');
    // Without the operator's credentials nothing is shown.
    const anonymous = await fetch(`${readOnlyBase}/dashboard/api/overview`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('Basic');
    await page.close();
  });

  it.runIf(process.env.DASHBOARD_SCREENSHOT === '1')("writes the README's screenshot, of an hour of seeded activity", async () => {
    const seeded = tempDir();
    const engine = await openSqliteEngine(seeded.dbPath);
    const now = Date.now();
    const accept = (operation: string, key: string, at: number) =>
      engine.acceptJob({
        principal: key.length % 3 ? 'alice' : 'bob',
        operation,
        key,
        fingerprint: key,
        input: '{"body":{},"params":{},"query":{}}',
        maxAttempts: 3,
        now: at,
        keyExpiresAt: at + 60_000,
      });
    for (let minute = 59; minute >= 1; minute--) {
      const perMinute = Math.round(6 + 5 * Math.sin(minute / 6) + (minute % 7));
      for (let i = 0; i < perMinute; i++) {
        const at = now - minute * 60_000 + i * 1000;
        await accept(i % 4 ? 'createReport' : 'sendInvoice', `m${minute}-${i}`, at);
        const [claimed] = await engine.claimJobs({ owner: 'seed', limit: 1, now: at, leaseMs: 60_000 });
        if (!claimed) throw new Error('nothing to claim');
        const outcome =
          i % 9 === 4
            ? { status: 'failed' as const, error: problem('jobHandlerFailed', 'upstream timed out') }
            : { status: 'succeeded' as const, result: '{}' };
        await engine.finishJob(claimed.id, claimed.fence, outcome, at + 20_000);
      }
    }
    for (let i = 0; i < 7; i++) await accept('createReport', `waiting-${i}`, now - 40_000 + i * 3000);
    await engine.close();
    const shown = await createAsyncFirst({
      ...demoOptions({ apiKeys: 'alice:key-a' }),
      config: {
        databaseUrl: seeded.dbPath,
        logLevel: 'silent',
        port: 0,
        workerConcurrency: 0,
        ...{ dashboardUser: OPERATOR.username, dashboardPassword: OPERATOR.password },
      },
    });
    try {
      const page = await dashboardPage();
      await page.goto(`${(await shown.listen()).replace('[::1]', '127.0.0.1')}/dashboard/`);
      await page.waitForSelector('#activity rect');
      mkdirSync('docs', { recursive: true });
      writeFileSync('docs/dashboard.png', await page.screenshot({ fullPage: true }));
      await page.close();
    } finally {
      await shown.close();
      seeded.cleanup();
    }
  });

  it('lists the schedules the database records: name, operation, cron and zone, last tick and next runs', async () => {
    const page = await dashboardPage();
    const answered = page.waitForResponse((response) => new URL(response.url()).pathname === '/dashboard/api/schedules');
    await page.goto(`${base}/dashboard/`);
    await page.waitForSelector('#counts');
    await page.locator('[data-nav=schedules]').click();
    expect((await answered).status()).toBe(200);
    const row = page.locator('#schedules tr[data-schedule="new-year-report"]');
    await row.waitFor();
    expect(page.url()).toBe(`${base}/dashboard/#/schedules`);
    expect(await page.locator('[data-nav=schedules]').getAttribute('aria-current')).toBe('page');
    expect(await page.locator('#schedules tbody tr').count()).toBe(1);
    const cells = await row.locator('td').evaluateAll((tds) => tds.map((td) => td.textContent));
    expect(cells.slice(0, 4)).toEqual(['new-year-report', 'createReport', '0 0 3 1 1 *', 'Europe/Paris']);
    // The last tick is its declaration (no tick has run, so no job); the next runs are the next three 1 January 03:00 in Paris.
    expect(await row.locator('[data-field=last-tick] a').count()).toBe(0);
    const runs = await row.locator('[data-field=next-runs] [data-run]').evaluateAll((items) => items.map((item) => item.getAttribute('data-run')));
    const year = Number(new Intl.DateTimeFormat('en', { timeZone: 'Europe/Paris', year: 'numeric' }).format(new Date()));
    const first = Date.now() < Date.parse(`${year}-01-01T02:00:00Z`) ? year : year + 1;
    expect(runs).toEqual([0, 1, 2].map((ahead) => `${first + ahead}-01-01T02:00:00.000Z`));
    // The operation links to its jobs.
    await row.locator('a', { hasText: 'createReport' }).click();
    await page.waitForSelector('#jobs tbody tr[data-job]');
    expect(page.url()).toBe(`${base}/dashboard/#/jobs?operation=createReport`);
    await page.close();
  });

  it('renders on a phone-sized screen without horizontal scrolling', async () => {
    const page = await dashboardPage();
    await page.setViewportSize({ width: 375, height: 740 });
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.goto(`${base}/dashboard/`);
    await page.waitForSelector('#activity');
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.goto(`${base}/dashboard/#/jobs`);
    await page.waitForSelector('#jobs tbody tr[data-job]');
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.goto(`${base}/dashboard/#/jobs/${succeeded[0]}`);
    await page.waitForSelector('#result');
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.goto(`${base}/dashboard/#/schedules`);
    await page.waitForSelector('#schedules tr[data-schedule]');
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.close();
  });
});
