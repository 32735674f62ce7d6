import { type Context, context, createTraceState, isSpanContextValid, type SpanContext, trace } from '@opentelemetry/api';
import type { TraceContext } from '../store/store.js';

/*
 * The W3C Trace Context format (https://www.w3.org/TR/trace-context/), written and read here:
 * @opentelemetry/api has no propagator of its own (the W3C one lives in @opentelemetry/core, which
 * would be a second run-time dependency), and a stored or sent context must be W3C whatever
 * propagator the application registered.
 */

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The trace context of a span context, as the traceparent and tracestate headers carry it; undefined for an invalid one. */
export function traceContextOf(spanContext: SpanContext | undefined): TraceContext | undefined {
  if (!spanContext || !isSpanContextValid(spanContext)) return undefined;
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
  const traceparent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
  const tracestate = spanContext.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** The trace context of the span in `active` (by default the active context), if there is a valid one. */
export function activeTraceContext(active: Context = context.active()): TraceContext | undefined {
  return traceContextOf(trace.getSpanContext(active));
}

/** The remote span context a stored trace context names; undefined when its traceparent is not a valid version-00 one. */
export function spanContextOf(traceContext: TraceContext | undefined): SpanContext | undefined {
  const match = traceContext ? TRACEPARENT.exec(traceContext.traceparent) : null;
  if (!match) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16),
    isRemote: true,
    ...(traceContext?.tracestate ? { traceState: createTraceState(traceContext.tracestate) } : {}),
  };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}
