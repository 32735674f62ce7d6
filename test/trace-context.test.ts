import { context, createTraceState, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstConfig } from '../src/config.js';
import type { ClaimedJob } from '../src/store/store.js';
import { spanContextOf, traceContextOf } from '../src/tracing/trace-context.js';
import { startDemo, submitReport } from './helpers.js';
import { registerTestSdk, spanRecord } from './tracing-support.js';

/*
 * The trace context of a submission is stored with its job, with an SDK and @fastify/otel registered
 * in this process as an application would: over HTTP it is the context active in the route (the
 * request's span), from app.enqueue the caller's. The worker is off, so a claim here reads it back.
 */

const exporter = new InMemorySpanExporter();
const provider = registerTestSdk(exporter);
afterAll(() => provider.shutdown());

describe('the trace context stored with a job', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    exporter.reset();
  });

  async function demo(config: Partial<AsyncFirstConfig> = {}) {
    const started = await startDemo({ workerConcurrency: 0, ...config });
    cleanups.push(started.close);
    return started.app;
  }

  async function claimed(app: Awaited<ReturnType<typeof demo>>, jobId: string): Promise<ClaimedJob> {
    const [job] = await app.store.claimJobs({ owner: 'test', limit: 1, now: Date.now(), leaseMs: 30_000 });
    expect(job?.id).toBe(jobId);
    return job as ClaimedJob;
  }

  it("over HTTP is the request's: the span active in the route, a child of the HTTP server span, in the trace the client's traceparent named", async () => {
    const app = await demo();
    const clientTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const accepted = await submitReport(
      app,
      { title: 'traced', rows: 1 },
      { 'idempotency-key': 'traced-1', traceparent: `00-${clientTrace}-00f067aa0ba902b7-01` },
    );
    expect(accepted.statusCode).toBe(202);
    const job = await claimed(app, accepted.json<{ job_id: string }>().job_id);

    const spans = exporter.getFinishedSpans().map(spanRecord);
    const server = spans.find((span) => span.kind === SpanKind.SERVER);
    expect(server).toMatchObject({
      traceId: clientTrace,
      parentSpanId: '00f067aa0ba902b7',
      attributes: { 'http.route': '/reports', 'http.request.method': 'POST' },
    });
    const stored = spanContextOf(job.traceContext);
    expect(stored).toMatchObject({ traceId: clientTrace, traceFlags: 1, isRemote: true });
    // @fastify/otel runs the route's handler in a span of its own, a child of the server span.
    const active = spans.find((span) => span.spanId === stored?.spanId);
    expect(active).toMatchObject({ traceId: clientTrace, parentSpanId: server?.spanId });
    expect(job.traceContext).toEqual({ traceparent: `00-${clientTrace}-${stored?.spanId}-01` });
  });

  it("from app.enqueue is the caller's active span, tracestate included; with no span active, none is stored", async () => {
    const app = await demo();
    const tracer = trace.getTracer('test');
    const { jobId, traceContext } = await tracer.startActiveSpan('nightly batch', async (span) => {
      const enqueued = await app.enqueue('createReport', { body: { title: 'from code', rows: 1 } }, { principal: 'alice' });
      span.end();
      return { jobId: enqueued.jobId, traceContext: traceContextOf(span.spanContext()) };
    });
    expect(traceContext?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect((await claimed(app, jobId)).traceContext).toEqual(traceContext);

    // A remote parent with a tracestate (as a propagator extracts one): both are stored.
    const remote = trace.setSpanContext(context.active(), {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: 0,
      isRemote: true,
      traceState: createTraceState('vendor=opaque,other=1'),
    });
    const fromRemote = await context.with(remote, () => app.enqueue('createReport', { body: { title: 'remote', rows: 1 } }, { principal: 'alice' }));
    expect((await claimed(app, fromRemote.jobId)).traceContext).toEqual({
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
      tracestate: 'vendor=opaque,other=1',
    });

    const untraced = await app.enqueue('createReport', { body: { title: 'no span', rows: 1 } }, { principal: 'alice' });
    const job = await claimed(app, untraced.jobId);
    expect(job).not.toHaveProperty('traceContext');
  });

  it('stores nothing with TRACING=off, even inside a traced request', async () => {
    const app = await demo({ tracing: false });
    const accepted = await submitReport(
      app,
      { title: 'untraced', rows: 1 },
      { 'idempotency-key': 'off-1', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    );
    expect(accepted.statusCode).toBe(202);
    // The request itself was traced (the application's instrumentation does that); the job has no context.
    expect(exporter.getFinishedSpans().some((span) => span.kind === SpanKind.SERVER)).toBe(true);
    expect(await claimed(app, accepted.json<{ job_id: string }>().job_id)).not.toHaveProperty('traceContext');
  });
});
