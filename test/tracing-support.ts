import { FastifyOtelInstrumentation, type FastifyOtelInstrumentationOpts } from '@fastify/otel';
import type { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { NodeTracerProvider, type ReadableSpan, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-node';

/*
 * An OpenTelemetry SDK registered as an application would: a NodeTracerProvider (its AsyncLocalStorage
 * context manager and W3C propagator) with a span processor that exports each span as it ends, and
 * the @fastify/otel instrumentation registered on every Fastify instance made from then on.
 */

/** Registers the SDK globally in this process, exporting finished spans to `exporter`. */
export function registerTestSdk(exporter: SpanExporter, fastifyOtelOptions: FastifyOtelInstrumentationOpts = {}): NodeTracerProvider {
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  provider.register();
  const fastifyOtel = new FastifyOtelInstrumentation({ registerOnInitialization: true, ...fastifyOtelOptions });
  fastifyOtel.setTracerProvider(provider);
  return provider;
}

/** A finished span as the tests read it (what the child processes write, one JSON line each). */
export interface SpanRecord {
  name: string;
  kind: SpanKind;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  links: Array<{ traceId: string; spanId: string; attributes: Record<string, unknown> }>;
  status: { code: SpanStatusCode; message?: string };
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  /** The process that recorded it. */
  pid: number;
}

export function spanRecord(span: ReadableSpan): SpanRecord {
  const { traceId, spanId } = span.spanContext();
  return {
    name: span.name,
    kind: span.kind,
    traceId,
    spanId,
    ...(span.parentSpanContext ? { parentSpanId: span.parentSpanContext.spanId } : {}),
    attributes: { ...span.attributes },
    links: span.links.map((link) => ({ traceId: link.context.traceId, spanId: link.context.spanId, attributes: { ...link.attributes } })),
    status: { code: span.status.code, ...(span.status.message === undefined ? {} : { message: span.status.message }) },
    events: span.events.map((event) => ({ name: event.name, attributes: { ...event.attributes } })),
    pid: process.pid,
  };
}
