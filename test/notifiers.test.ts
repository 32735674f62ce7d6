import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, type AsyncFirstOptions, createAsyncFirst } from '../src/app.js';
import { checkContract } from '../src/cli/check.js';
import { type AsyncFirstConfig, ConfigError, loadConfig } from '../src/config.js';
import { ContractError, type OpenApiDocument } from '../src/contract/load.js';
import { type Notification, type Notifier, NotifierError, slackNotifier } from '../src/delivery/notifiers.js';
import { demoOptions } from '../src/demo/service.js';
import { PermanentJobError } from '../src/handlers.js';
import { tempDir } from './helpers.js';
import { DATABASES, taskContract } from './policy-support.js';
import { sleep, waitFor } from './worker-test-support.js';

/*
 * Out-of-band notifiers through createAsyncFirst, on both databases: x-asyncfirst notify names
 * them, each ending they listen for is handed to them once (retried with backoff while they
 * throw), GET /jobs/{id} shows each notification, the Slack-compatible notifier posts through the
 * SSRF guard, and a notify naming what is not there stops the start.
 */

type Handlers = Record<string, (...args: never[]) => unknown>;
/** runTask ends as its input's name says: "fail" fails at once, "slow" runs until canceled; others succeed. */
const handlers: Handlers = {
  runTask: async ({ body }: { body: { name: string } }, { signal }: { signal: AbortSignal }) => {
    if (body.name === 'fail') throw new PermanentJobError('the task was told to fail');
    if (body.name === 'slow') await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    return { name: body.name };
  },
  previewTask: () => ({}),
};

interface Call {
  notification: Notification;
  attempt: number;
  at: number;
}

/** A notifier that records each call and answers as `answer` says for the n-th call (0-based): undefined resolves. */
function recording(answer: (index: number) => Error | undefined = () => undefined): { notifier: Notifier; calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    notifier: async (notification, context) => {
      const index = calls.length;
      calls.push({ notification, attempt: context.attempt, at: Date.now() });
      const error = answer(index);
      if (error) throw error;
    },
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe.each(DATABASES)('notifiers on $name', ({ make }) => {
  async function start(options: {
    contract: OpenApiDocument;
    notifiers?: Record<string, Notifier>;
    operations?: AsyncFirstOptions<Handlers>['operations'];
    config?: Partial<AsyncFirstConfig>;
  }): Promise<AsyncFirstApp> {
    const database = make();
    cleanups.push(database.drop);
    const app = await createAsyncFirst<Handlers>({
      contract: options.contract,
      handlers,
      ...(options.notifiers ? { notifiers: options.notifiers } : {}),
      ...(options.operations ? { operations: options.operations } : {}),
      config: {
        ...database.config,
        logLevel: 'silent',
        pollIntervalMs: 50,
        notifyRetryBaseMs: 20,
        notifyRetryMaxMs: 40,
        ...options.config,
      },
    });
    cleanups.push(() => app.close());
    app.startBackground();
    return app;
  }

  async function submit(app: AsyncFirstApp, name: string): Promise<string> {
    const response = await app.server.inject({
      method: 'POST',
      url: '/tasks',
      headers: { 'content-type': 'application/json', 'idempotency-key': `key-${name}-${Math.random()}` },
      payload: { name },
    });
    expect(response.statusCode).toBe(202);
    return response.json().job_id as string;
  }

  async function job(app: AsyncFirstApp, id: string) {
    const response = await app.server.inject({ method: 'GET', url: `/jobs/${id}` });
    expect(response.statusCode).toBe(200);
    return response.json() as { status: string; notifications?: Array<Record<string, unknown>> };
  }

  /** Waits until every notification of the job is no longer pending, and returns them. */
  async function settledNotifications(app: AsyncFirstApp, id: string, count: number) {
    return waitFor(`${count} settled notifications of job ${id}`, async () => {
      const notifications = (await job(app, id)).notifications ?? [];
      return notifications.length === count && notifications.every((notification) => notification.status !== 'pending') ? notifications : undefined;
    });
  }

  it('hands each notifier, once, each ending it listens for, and shows every notification on the job', async () => {
    const ops = recording();
    const audit = recording();
    const app = await start({
      contract: taskContract({ notify: [{ notifier: 'ops', on: ['job.failed'] }, 'audit'] }),
      notifiers: { ops: ops.notifier, audit: audit.notifier },
      config: { dashboardUser: 'operator', dashboardPassword: 'secret' },
    });
    const succeeded = await submit(app, 'ok');
    const failed = await submit(app, 'fail');
    expect(await settledNotifications(app, succeeded, 1)).toEqual([
      {
        id: expect.stringMatching(/^ntf_/),
        notifier: 'audit',
        event: 'job.succeeded',
        status: 'succeeded',
        attempts: 1,
        maxAttempts: 8,
        updatedAt: expect.any(String),
      },
    ]);
    const onFailed = await settledNotifications(app, failed, 2);
    expect(onFailed.map((notification) => [notification.notifier, notification.event, notification.status, notification.attempts]).sort()).toEqual([
      ['audit', 'job.failed', 'succeeded', 1],
      ['ops', 'job.failed', 'succeeded', 1],
    ]);
    await sleep(200);
    expect(audit.calls.map((call) => `${call.notification.job.id} ${call.notification.type}`).sort()).toEqual(
      [`${succeeded} job.succeeded`, `${failed} job.failed`].sort(),
    );
    expect(ops.calls).toHaveLength(1);
    const told = ops.calls[0]?.notification;
    expect(told).toEqual({
      id: onFailed.find((notification) => notification.notifier === 'ops')?.id,
      notifier: 'ops',
      type: 'job.failed',
      timestamp: expect.any(String),
      principal: 'anonymous',
      job: expect.objectContaining({
        id: failed,
        operation: 'runTask',
        status: 'failed',
        error: expect.objectContaining({ detail: 'the task was told to fail' }),
      }),
    });
    expect(ops.calls[0]?.attempt).toBe(1);
    // The dashboard's job page reads them too.
    const page = await app.server.inject({
      url: `/dashboard/api/jobs/${failed}`,
      headers: { authorization: `Basic ${Buffer.from('operator:secret').toString('base64')}` },
    });
    expect(page.statusCode).toBe(200);
    expect(
      page
        .json()
        .job.notifications.map((notification: { notifier: string }) => notification.notifier)
        .sort(),
    ).toEqual(['audit', 'ops']);
  });

  it('writes no notification for an ending no notifier listens for, nor for an operation without notify', async () => {
    const ops = recording();
    const app = await start({ contract: taskContract({ notify: [{ notifier: 'ops', on: ['job.failed'] }] }), notifiers: { ops: ops.notifier } });
    const succeeded = await submit(app, 'ok');
    await waitFor('the job to succeed', async () => ((await job(app, succeeded)).status === 'succeeded' ? true : undefined));
    const slow = await submit(app, 'slow');
    await waitFor('the slow job to run', async () => ((await job(app, slow)).status === 'running' ? true : undefined));
    expect((await app.server.inject({ method: 'DELETE', url: `/jobs/${slow}` })).statusCode).toBe(202);
    await waitFor('the slow job to end canceled', async () => ((await job(app, slow)).status === 'canceled' ? true : undefined));
    await sleep(200);
    expect((await job(app, succeeded)).notifications).toBeUndefined();
    expect((await job(app, slow)).notifications).toBeUndefined();
    expect(ops.calls).toEqual([]);
  });

  it('retries a notifier that throws, with backoff, until it succeeds; shows the attempts and the last error meanwhile', async () => {
    const flaky = recording((index) => (index < 2 ? new Error(`chat is down (${index + 1})`) : undefined));
    const app = await start({
      contract: taskContract({ notify: ['flaky'] }),
      notifiers: { flaky: flaky.notifier },
      config: { notifyRetryBaseMs: 300, notifyRetryMaxMs: 600 },
    });
    const id = await submit(app, 'ok');
    const pending = await waitFor('the first attempt to fail', async () => {
      const [notification] = (await job(app, id)).notifications ?? [];
      return notification?.lastError ? notification : undefined;
    });
    expect(pending).toMatchObject({ notifier: 'flaky', status: 'pending', attempts: 1, lastError: 'chat is down (1)', nextAttemptAt: expect.any(String) });
    const [delivered] = await settledNotifications(app, id, 1);
    expect(delivered).toMatchObject({ status: 'succeeded', attempts: 3 });
    expect(delivered).not.toHaveProperty('lastError');
    expect(flaky.calls.map((call) => call.attempt)).toEqual([1, 2, 3]);
    expect(new Set(flaky.calls.map((call) => call.notification.id)).size).toBe(1);
    // Equal jitter: the first retry waits at least half of 300 ms, the second half of 600 ms.
    const [first, second, third] = flaky.calls.map((call) => call.at) as [number, number, number];
    expect(second - first).toBeGreaterThanOrEqual(140);
    expect(third - second).toBeGreaterThanOrEqual(290);
  });

  it('marks a notification failed after NOTIFY_MAX_ATTEMPTS, and at once when the notifier throws a NotifierError that says not to retry', async () => {
    const broken = recording(() => new Error('always down'));
    const refusing = recording(() => new NotifierError('the channel is archived', { retry: false }));
    const app = await start({
      contract: taskContract({ notify: ['broken', 'refusing'] }),
      notifiers: { broken: broken.notifier, refusing: refusing.notifier },
      config: { notifyMaxAttempts: 3 },
    });
    const id = await submit(app, 'ok');
    const notifications = await settledNotifications(app, id, 2);
    expect(notifications.find((notification) => notification.notifier === 'broken')).toMatchObject({
      status: 'failed',
      attempts: 3,
      maxAttempts: 3,
      lastError: 'always down',
    });
    expect(notifications.find((notification) => notification.notifier === 'refusing')).toMatchObject({
      status: 'failed',
      attempts: 1,
      lastError: 'the channel is archived',
    });
    await sleep(200);
    expect(broken.calls).toHaveLength(3);
    expect(refusing.calls).toHaveLength(1);
  });

  it('takes notify from code over the contract: an empty list there writes none', async () => {
    const audit = recording();
    const app = await start({
      contract: taskContract({ notify: ['audit'] }),
      notifiers: { audit: audit.notifier },
      operations: { runTask: { notify: [] } },
    });
    const id = await submit(app, 'ok');
    await waitFor('the job to succeed', async () => ((await job(app, id)).status === 'succeeded' ? true : undefined));
    await sleep(200);
    expect((await job(app, id)).notifications).toBeUndefined();
    expect(audit.calls).toEqual([]);
  });
});

/** A node:http receiver on 127.0.0.1 that records each request and answers 200. */
async function receiver(): Promise<{ origin: string; requests: Array<{ url: string; contentType: string | undefined; body: string }> }> {
  const requests: Array<{ url: string; contentType: string | undefined; body: string }> = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      requests.push({ url: request.url ?? '', contentType: request.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') });
      response.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

describe('the Slack-compatible notifier', () => {
  async function start(config: Partial<AsyncFirstConfig>, notifiers?: Record<string, Notifier>, notify: unknown[] = ['slack']): Promise<AsyncFirstApp> {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const app = await createAsyncFirst<Handlers>({
      contract: taskContract({ notify }),
      handlers,
      ...(notifiers ? { notifiers } : {}),
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', pollIntervalMs: 50, notifyRetryBaseMs: 20, notifyRetryMaxMs: 40, ...config },
    });
    cleanups.push(() => app.close());
    app.startBackground();
    return app;
  }

  async function finishedNotification(app: AsyncFirstApp, name: string) {
    const accepted = await app.server.inject({
      method: 'POST',
      url: '/tasks',
      headers: { 'content-type': 'application/json', 'idempotency-key': `key-${name}` },
      payload: { name },
    });
    const id = accepted.json().job_id as string;
    const [notification] = await waitFor(`the notification of job ${id} to settle`, async () => {
      const notifications = ((await app.server.inject({ method: 'GET', url: `/jobs/${id}` })).json().notifications ?? []) as Array<Record<string, unknown>>;
      return notifications.length === 1 && notifications[0]?.status !== 'pending' ? notifications : undefined;
    });
    return { id, notification };
  }

  it('posts {"text": …} to NOTIFY_SLACK_URL, a local receiver allowed by WEBHOOK_ALLOWED_HOSTS', async () => {
    const hook = await receiver();
    const config = loadConfig({ NOTIFY_SLACK_URL: `${hook.origin}/services/T0/B0/x`, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
    const app = await start({ notifySlackUrl: config.notifySlackUrl, webhookAllowedHosts: config.webhookAllowedHosts });
    const { id, notification } = await finishedNotification(app, 'fail');
    expect(notification).toMatchObject({ notifier: 'slack', status: 'succeeded', attempts: 1 });
    expect(hook.requests).toHaveLength(1);
    expect(hook.requests[0]).toMatchObject({ url: '/services/T0/B0/x', contentType: 'application/json' });
    expect(JSON.parse(hook.requests[0]?.body ?? '')).toEqual({
      text: `Job ${id} (runTask, for anonymous) failed after 1 attempt: The job handler failed: the task was told to fail`,
    });
  });

  it('is refused for a private address by the SSRF guard, as webhooks are: the notification fails at once, nothing is posted', async () => {
    const hook = await receiver();
    const app = await start({ notifySlackUrl: `${hook.origin}/hook` });
    const { notification } = await finishedNotification(app, 'ok');
    expect(notification).toMatchObject({ notifier: 'slack', status: 'failed', attempts: 1 });
    expect(notification?.lastError).toContain('127.0.0.1, which is not a public address');
    expect(hook.requests).toEqual([]);
  });

  it('is configured in code with slackNotifier({ url, text }) under any name', async () => {
    const hook = await receiver();
    const app = await start(
      { webhookAllowedHosts: '127.0.0.1/32' },
      { chat: slackNotifier({ url: `${hook.origin}/chat`, text: (notification) => `${notification.type} ${notification.job.status}` }) },
      ['chat'],
    );
    const { notification } = await finishedNotification(app, 'ok');
    expect(notification).toMatchObject({ notifier: 'chat', status: 'succeeded' });
    expect(hook.requests.map((request) => JSON.parse(request.body))).toEqual([{ text: 'job.succeeded succeeded' }]);
  });
});

describe('a notify naming what is not there stops the start, naming the operation and the field', () => {
  async function startError(contract: OpenApiDocument, options: Partial<AsyncFirstOptions<Handlers>> = {}, config: Partial<AsyncFirstConfig> = {}) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const error = await createAsyncFirst<Handlers>({
      contract,
      handlers,
      ...options,
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', workerConcurrency: 0, ...config },
    }).then(
      async (app) => {
        await app.close();
        return undefined;
      },
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  const notifiers = { ops: recording().notifier };

  it.each([
    [
      [{ notifier: 'ops-chat', on: ['job.failed'] }],
      'the contract: POST /tasks (runTask): x-asyncfirst.notify[0].notifier names the notifier "ops-chat", which this service does not have (known: ops)',
    ],
    [['ops', 'nobody'], 'x-asyncfirst.notify[1] names the notifier "nobody", which this service does not have (known: ops)'],
    [[{ notifier: 'ops', on: ['job.running'] }], 'x-asyncfirst.notify[0].on[0] must be one of job.succeeded, job.failed, job.canceled (given: "job.running")'],
    [[{ notifier: 'ops', on: [] }], 'x-asyncfirst.notify[0].on must be a non-empty list of job.succeeded, job.failed, job.canceled (given: [])'],
    [[{ notifier: 'ops', when: 'always' }], 'x-asyncfirst.notify[0].when is not a known field (known: notifier, on)'],
    [[42], "x-asyncfirst.notify[0] must be a notifier's name or { notifier, on } (given: 42)"],
    [['ops', { notifier: 'ops' }], 'x-asyncfirst.notify[1].notifier names "ops" again'],
  ])('x-asyncfirst notify %j', async (notify, message) => {
    const error = await startError(taskContract({ notify }), { notifiers });
    expect(error).toBeInstanceOf(ContractError);
    expect(error.message).toContain(message);
  });

  it("is checked by asyncfirst check for its shape; the names are the service code's, which check does not see", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const good = join(tmp.dir, 'good.json');
    writeFileSync(good, JSON.stringify(taskContract({ notify: ['ops-chat', { notifier: 'audit', on: ['job.failed'] }] })));
    expect((await checkContract(good)).filter((problem) => problem.rule === 'asyncfirst')).toEqual([]);
    const bad = join(tmp.dir, 'bad.json');
    writeFileSync(bad, JSON.stringify(taskContract({ notify: [{ notifier: 'audit', on: ['job.done'] }] })));
    expect((await checkContract(bad)).filter((problem) => problem.rule === 'asyncfirst')).toEqual([
      expect.objectContaining({
        severity: 'error',
        message: `${bad}: POST /tasks (runTask): x-asyncfirst.notify[0].on[0] must be one of job.succeeded, job.failed, job.canceled (given: "job.done")`,
      }),
    ]);
  });

  it('says when the service has no notifiers at all', async () => {
    const error = await startError(taskContract({ notify: ['slack'] }));
    expect(error.message).toContain(
      'x-asyncfirst.notify[0] names the notifier "slack", which this service does not have (none is configured: pass createAsyncFirst({ notifiers }) or set NOTIFY_SLACK_URL)',
    );
  });

  it('checks notify in code the same way', async () => {
    const error = await startError(taskContract(), { notifiers, operations: { runTask: { notify: ['pager'] } } });
    expect(error.message).toContain('operations.runTask.notify[0] names the notifier "pager", which this service does not have (known: ops)');
  });

  it('refuses a notifier that is not a function, and a NOTIFY_SLACK_URL that is not an http(s) URL', async () => {
    const notFunction = await startError(taskContract(), { notifiers: { ops: 'https://hooks.example.com' as never } });
    expect(notFunction).toBeInstanceOf(ConfigError);
    expect(notFunction.message).toBe('notifiers.ops must be a function (notification, context) => Promise<void>');
    const badUrl = await startError(taskContract(), {}, { notifySlackUrl: 'hooks.slack.com/services/x' });
    expect(badUrl).toBeInstanceOf(ConfigError);
    expect(badUrl.message).toContain('NOTIFY_SLACK_URL="hooks.slack.com/services/x" must be an http(s) URL');
  });
});

describe('the demo', () => {
  it('logs a line when a report job finishes, through its report-log notifier', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const options = demoOptions({ apiKeys: 'alice:key-a', logReports: true, config: { databaseUrl: tmp.dbPath, pollIntervalMs: 50 } });
    const app = await createAsyncFirst({ ...options, logger: pino({ level: 'info' }, sink) });
    cleanups.push(() => app.close());
    app.startBackground();
    const accepted = await app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'application/json', 'x-api-key': 'key-a', 'idempotency-key': 'demo-1' },
      payload: { title: 'Q3', rows: 10 },
    });
    expect(accepted.statusCode).toBe(202);
    const id = accepted.json().job_id as string;
    const line = await waitFor('the report-log line', () => lines.find((entry) => entry.msg === `report job ${id} succeeded`));
    expect(line).toMatchObject({ component: 'notifications', notifier: 'report-log', jobId: id, principal: 'alice', status: 'succeeded', attempts: 1 });
  });
});
