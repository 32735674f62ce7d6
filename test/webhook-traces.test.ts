import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstApp } from '../src/app.js';
import type { AnyHandler } from '../src/handlers.js';
import { ALICE, tempDir } from './helpers.js';
import { registerTestSdk, type SpanRecord, spanRecord } from './tracing-support.js';
import { customApp, waitFor } from './worker-test-support.js';

/*
 * Each webhook delivery attempt is a CLIENT span, and its request carries that span's context as
 * traceparent. An SDK is registered in this process; the receiver is a node:http server on 127.0.0.1.
 */

const exporter = new InMemorySpanExporter();
const provider = registerTestSdk(exporter);
afterAll(() => provider.shutdown());

const SECRET = `whsec_${Buffer.from('asyncfirst-webhook-test-secret!!').toString('base64')}`;
const REPORT: AnyHandler = async (input) => {
  const { title, rows } = input.body as { title: string; rows: number };
  return { title, format: 'csv', rowCount: rows, bytes: 0, sha256: 'a'.repeat(64) };
};

describe('traces of webhook deliveries', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    exporter.reset();
  });

  /** A receiver answering its n-th request with statuses[n] (200 after the list). */
  async function receiver(statuses: number[]) {
    const requests: IncomingHttpHeaders[] = [];
    const server = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        requests.push(request.headers);
        response.writeHead(statuses[requests.length - 1] ?? 200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/reports?token=secret`, requests };
  }

  async function app(tracing: boolean): Promise<AsyncFirstApp> {
    const tmp = tempDir();
    const started = await customApp({
      dbPath: tmp.dbPath,
      createReport: REPORT,
      config: { webhookSecret: SECRET, webhookAllowedHosts: '127.0.0.1', webhookRetryBaseMs: 20, webhookRetryMaxMs: 40, webhookTimeoutMs: 2000, tracing },
    });
    cleanups.push(async () => {
      await started.close();
      tmp.cleanup();
    });
    started.startBackground();
    return started;
  }

  async function submit(target: AsyncFirstApp, key: string, callbackUrl: string) {
    const response = await target.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { ...ALICE, 'content-type': 'application/json', 'idempotency-key': key, 'callback-url': callbackUrl },
      payload: JSON.stringify({ title: key, rows: 2 }),
    });
    expect(response.statusCode).toBe(202);
    return response.json<{ job_id: string }>().job_id;
  }

  it("sends traceparent naming each attempt's CLIENT span, which records the receiver's answer", async () => {
    const hooks = await receiver([503]);
    const service = await app(true);
    const jobId = await submit(service, 'hooked', hooks.url);
    const clients = await waitFor('two delivery spans', () => {
      const spans = exporter
        .getFinishedSpans()
        .map(spanRecord)
        .filter((span) => span.kind === SpanKind.CLIENT);
      return spans.length >= 2 ? spans : undefined;
    });
    expect(hooks.requests).toHaveLength(2);
    const byAttempt = (attempt: number) => clients.find((span) => span.attributes['asyncfirst.webhook.attempt'] === attempt) as SpanRecord;
    for (const [index, request] of hooks.requests.entries()) {
      const span = byAttempt(index + 1);
      expect(request.traceparent).toBe(`00-${span.traceId}-${span.spanId}-01`);
      expect(span).toMatchObject({
        name: 'POST',
        attributes: {
          'http.request.method': 'POST',
          'url.full': hooks.url.replace('?token=secret', ''),
          'server.address': '127.0.0.1',
          'server.port': Number(new URL(hooks.url).port),
          'asyncfirst.webhook.id': request['webhook-id'],
          'asyncfirst.webhook.event_type': 'job.succeeded',
          'asyncfirst.job.id': jobId,
        },
      });
      expect(span.parentSpanId).toBeUndefined();
    }
    expect(byAttempt(1)).toMatchObject({
      attributes: { 'http.response.status_code': 503, 'error.type': '503' },
      status: { code: SpanStatusCode.ERROR, message: 'receiver answered 503' },
    });
    expect(byAttempt(2)).toMatchObject({ attributes: { 'http.response.status_code': 200 }, status: { code: SpanStatusCode.UNSET } });
    expect(byAttempt(2).attributes).not.toHaveProperty('error.type');
    // The query string (where receivers keep tokens) is in no attribute.
    expect(JSON.stringify(clients)).not.toContain('token=secret');
  });

  it('sends no traceparent and records no span with TRACING=off', async () => {
    const hooks = await receiver([]);
    const service = await app(false);
    await submit(service, 'untraced', hooks.url);
    await waitFor('the delivery', () => (hooks.requests.length > 0 ? true : undefined));
    expect(hooks.requests[0]).toHaveProperty('webhook-id');
    expect(hooks.requests[0]).not.toHaveProperty('traceparent');
    expect(exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.CLIENT || span.kind === SpanKind.CONSUMER)).toEqual([]);
  });
});
