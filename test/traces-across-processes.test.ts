import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { ALICE, tempDir } from './helpers.js';
import type { SpanRecord } from './tracing-support.js';
import { type DemoProcess, fetchJob, killDemoProcess, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * A submission's trace reaches the worker in another process: an API process (no worker) and a
 * worker-only process on one SQLite file, each a real child process with an OpenTelemetry SDK
 * registered by test/fixtures/otel-sdk.ts, which writes every finished span to a file of its own.
 * The worker's span for each attempt must link to the submission's HTTP server span.
 */

const SERVICE = 'test/fixtures/traced-service.ts';
const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

function spansIn(file: string): SpanRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as SpanRecord);
}

describe('traces across an API process and a worker process', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("links each attempt's CONSUMER span to the submission's HTTP server span, with the messaging attributes, the attempt, the error, and the handler's spans as children", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const apiSpans = join(tmp.dir, 'api-spans.jsonl');
    const workerSpans = join(tmp.dir, 'worker-spans.jsonl');
    const env = { DATABASE_URL: tmp.dbPath, WORKER_POLL_MS: '25', RETRY_BASE_MS: '20', RETRY_MAX_MS: '40' };
    const nodeArgs = ['--import', './test/fixtures/otel-sdk.ts'];
    const api: DemoProcess = await startDemoProcess('serve', { ...env, WORKER_CONCURRENCY: '0', SPANS_FILE: apiSpans }, { script: SERVICE, nodeArgs });
    cleanups.push(() => killDemoProcess(api));
    const worker: DemoProcess = await startDemoProcess('worker', { ...env, WORKER_CONCURRENCY: '4', SPANS_FILE: workerSpans }, { script: SERVICE, nodeArgs });
    cleanups.push(() => killDemoProcess(worker));

    const jobIds: Record<string, string> = {};
    for (const [index, title] of ['fine', 'flaky', 'broken'].entries()) {
      const response = await fetch(`${api.address}/reports`, {
        method: 'POST',
        headers: {
          ...ALICE,
          'content-type': 'application/json',
          'idempotency-key': `traced-${title}`,
          // The client's own span: the server span must be its child, in its trace.
          traceparent: `00-${CLIENT_TRACE}-00f067aa0ba9020${index}-01`,
        },
        body: JSON.stringify({ title, rows: 1 }),
      });
      expect(response.status).toBe(202);
      jobIds[title] = ((await response.json()) as { job_id: string }).job_id;
    }
    for (const [title, status] of [
      ['fine', 'succeeded'],
      ['flaky', 'succeeded'],
      ['broken', 'failed'],
    ] as const) {
      await waitFor(`${title} to be ${status}`, async () => {
        const job = await fetchJob<{ status: string }>(api.address as string, jobIds[title] as string);
        return job.status === status ? job : undefined;
      });
    }
    // Four attempts (flaky runs twice); a span is written when it ends, just after the outcome is recorded.
    const attempts = await waitFor('the four attempt spans', () => {
      const found = spansIn(workerSpans).filter((span) => span.kind === SpanKind.CONSUMER);
      return found.length >= 4 ? found : undefined;
    });
    const api_ = spansIn(apiSpans);
    const worker_ = spansIn(workerSpans);

    // Each process recorded its own part: HTTP in the API process, attempts in the worker's.
    expect(new Set(api_.map((span) => span.pid)).size).toBe(1);
    expect(api_[0]?.pid).toBe(api.child.pid);
    expect(new Set(worker_.map((span) => span.pid))).toEqual(new Set([worker.child.pid]));
    expect(api_.filter((span) => span.kind === SpanKind.CONSUMER)).toEqual([]);
    expect(attempts).toHaveLength(4);

    const serverSpans = api_.filter((span) => span.kind === SpanKind.SERVER && span.attributes['http.route'] === '/reports');
    expect(serverSpans).toHaveLength(3);
    const submissionOf = (title: string, index: number) => {
      const server = serverSpans.find((span) => span.parentSpanId === `00f067aa0ba9020${index}`);
      expect(server, `the server span of ${title}`).toMatchObject({ traceId: CLIENT_TRACE, attributes: { 'http.request.method': 'POST' } });
      return server as SpanRecord;
    };
    const attemptsOf = (title: string) =>
      attempts
        .filter((span) => span.attributes['messaging.message.id'] === jobIds[title])
        .sort((a, b) => Number(a.attributes['asyncfirst.job.attempt']) - Number(b.attributes['asyncfirst.job.attempt']));

    for (const [index, title] of ['fine', 'flaky', 'broken'].entries()) {
      const server = submissionOf(title, index);
      for (const attempt of attemptsOf(title)) {
        expect(attempt).toMatchObject({
          name: 'process createReport',
          kind: SpanKind.CONSUMER,
          attributes: {
            'messaging.system': 'asyncfirst',
            'messaging.operation.type': 'process',
            'messaging.operation.name': 'process',
            'messaging.destination.name': 'createReport',
            'messaging.message.id': jobIds[title],
          },
          links: [{ traceId: server.traceId, spanId: server.spanId, attributes: {} }],
        });
        // Linked, not parented: each attempt is a trace of its own.
        expect(attempt.parentSpanId).toBeUndefined();
        expect(attempt.traceId).not.toBe(server.traceId);
        // The handler ran inside the attempt's context: its span is the attempt's child.
        const rendered = worker_.filter((span) => span.name === 'render report' && span.parentSpanId === attempt.spanId);
        expect(rendered).toHaveLength(1);
        expect(rendered[0]?.traceId).toBe(attempt.traceId);
      }
    }

    const [fine] = attemptsOf('fine');
    expect(fine).toMatchObject({ attributes: { 'asyncfirst.job.attempt': 1, 'asyncfirst.job.outcome': 'succeeded' }, status: { code: SpanStatusCode.UNSET } });
    expect(fine?.events).toEqual([]);

    const [firstTry, secondTry] = attemptsOf('flaky');
    expect(firstTry).toMatchObject({
      attributes: { 'asyncfirst.job.attempt': 1, 'asyncfirst.job.outcome': 'retrying' },
      status: { code: SpanStatusCode.ERROR, message: 'busy, try again' },
      events: [{ name: 'exception', attributes: { 'exception.type': 'Error', 'exception.message': 'busy, try again' } }],
    });
    expect(secondTry).toMatchObject({
      attributes: { 'asyncfirst.job.attempt': 2, 'asyncfirst.job.outcome': 'succeeded' },
      status: { code: SpanStatusCode.UNSET },
    });

    const broken = attemptsOf('broken');
    expect(broken).toHaveLength(1);
    expect(broken[0]).toMatchObject({
      attributes: { 'asyncfirst.job.attempt': 1, 'asyncfirst.job.outcome': 'failed' },
      status: { code: SpanStatusCode.ERROR, message: 'this report cannot be rendered' },
      events: [{ name: 'exception', attributes: { 'exception.type': 'PermanentJobError', 'exception.message': 'this report cannot be rendered' } }],
    });
  });
});
