import { describe, expect, it } from 'vitest';
import type { JobState } from '../src/core/job-states.js';
import { deliveryView, jobBody } from '../src/engine/job-view.js';
import type { JobRecord, WebhookDelivery } from '../src/store/store.js';

/*
 * jobBody writes a job's JSON as text, member by member, instead of stringifying an object: the
 * same JSON, in the same member order, as stringifying the view object it replaced (kept here as
 * the reference), for every kind of job. (Deliveries are shown through the same deliveryView.)
 */

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** The view object jobBody once built and stringified. */
function referenceBody(job: JobRecord): string {
  const finished = job.status === 'succeeded' || job.status === 'failed' || job.status === 'canceled';
  const view: Record<string, unknown> = {
    id: job.id,
    operation: job.operation,
    status: job.status,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    createdAt: isoTime(job.createdAt),
    updatedAt: isoTime(job.updatedAt),
  };
  if (job.priority !== 0) view.priority = job.priority;
  if (job.cancelRequested && !finished) view.cancelRequested = true;
  if (job.status === 'queued') view.nextAttemptAt = isoTime(job.runAt);
  if (job.finishedAt !== undefined) view.finishedAt = isoTime(job.finishedAt);
  if (job.progress) view.progress = job.progress;
  if (job.error && job.status !== 'succeeded') view.error = job.error;
  if (job.resultLocation !== undefined) view.resultLocation = job.resultLocation;
  if (job.schedule) view.schedule = job.schedule;
  if (job.deliveries) view.deliveries = job.deliveries.map(deliveryView);
  if (job.notifications) view.notifications = job.notifications.map((notification) => ({ notifier: notification.notifier, ...deliveryView(notification) }));
  if (job.parentId !== undefined) view.parent = job.parentId;
  if (job.children?.length) view.children = job.children;
  const json = JSON.stringify(view);
  return job.status === 'succeeded' && job.result !== undefined && job.resultLocation === undefined ? `${json.slice(0, -1)},"result":${job.result}}` : json;
}

const base: JobRecord = {
  id: '01JZ8X5Q9V7K3M2N4P6R8T0W1Y',
  principal: 'alice',
  operation: 'createReport',
  status: 'queued',
  attempts: 0,
  maxAttempts: 5,
  priority: 0,
  cancelRequested: false,
  runAt: 1_765_000_000_123,
  createdAt: 1_765_000_000_000,
  updatedAt: 1_765_000_000_050,
  version: 1,
  fence: 0,
};

const delivery = (overrides: Partial<WebhookDelivery>): WebhookDelivery => ({
  id: 'msg_01JZ8X5Q9V7K3M2N4P6R8T0W2Z',
  jobId: base.id,
  url: 'https://example.test/hook',
  eventType: 'job.succeeded',
  payload: '{}',
  status: 'pending',
  attempts: 1,
  maxAttempts: 8,
  nextAttemptAt: 1_765_000_100_000,
  createdAt: 1_765_000_000_500,
  updatedAt: 1_765_000_000_600,
  ...overrides,
});

const jobs: Array<[string, JobRecord]> = [
  ['a queued job', base],
  ['a queued job with a priority and a cancel asked', { ...base, priority: -7, cancelRequested: true }],
  [
    'a running job with progress whose message needs escaping',
    { ...base, status: 'running', attempts: 1, progress: { percent: 40, message: 'half "done"\n\u2028 é' } },
  ],
  [
    'a succeeded job with its result, children and a parent',
    {
      ...base,
      status: 'succeeded',
      attempts: 2,
      finishedAt: 1_765_000_009_999,
      result: '{"rows":3,"name":"x"}',
      parentId: '01JZ8X5Q9V7K3M2N4P6R8T0W00',
      children: ['01JZ8X5Q9V7K3M2N4P6R8T0W11'],
    },
  ],
  [
    'a succeeded job with a resource location (no result member)',
    { ...base, status: 'succeeded', finishedAt: 1_765_000_009_999, result: 'null', resultLocation: 'https://files.test/r?a=1&b="2"' },
  ],
  [
    'a failed job with its problem (and an error a success would not show)',
    {
      ...base,
      status: 'failed',
      attempts: 5,
      finishedAt: 1_765_000_009_999,
      error: { type: 'about:blank', title: 'Failed', status: 500, detail: 'boom\t"quoted"', attempt: 5 },
    },
  ],
  [
    'a succeeded job keeps a stale error out',
    { ...base, status: 'succeeded', finishedAt: 1_765_000_009_999, result: '1', error: { type: 'x', title: 'y', status: 500 } },
  ],
  [
    'a canceled job with a cancel asked (not shown once finished)',
    { ...base, status: 'canceled' as JobState, cancelRequested: true, finishedAt: 1_765_000_009_999 },
  ],
  [
    'a job of a schedule, with deliveries and notifications',
    {
      ...base,
      operation: 'nightly "export"',
      status: 'succeeded',
      finishedAt: 1_765_000_009_999,
      result: '[]',
      callbackUrl: 'https://example.test/hook',
      schedule: { name: 'nightly', tick: '2026-12-07T00:00:00.000Z' },
      deliveries: [delivery({}), delivery({ status: 'succeeded', lastStatus: 200 })],
      notifications: [delivery({ notifier: 'slack', status: 'failed', lastError: 'refused: "private address"' })],
    },
  ],
  ['a job with no children listed', { ...base, status: 'succeeded', finishedAt: 1_765_000_009_999, result: '{}', children: [] }],
];

describe('jobBody', () => {
  for (const [name, job] of jobs) {
    it(`writes the same JSON, member for member, as stringifying the job's view: ${name}`, () => {
      const written = jobBody(job);
      expect(written).toBe(referenceBody(job));
      expect(() => JSON.parse(written)).not.toThrow();
    });
  }
});
