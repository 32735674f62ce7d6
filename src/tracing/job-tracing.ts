import {
  type Attributes,
  type Context,
  context,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { SendOutcome } from '../delivery/webhook-sender.js';
import type { ClaimedJob, TraceContext, WebhookDelivery } from '../store/store.js';
import { activeTraceContext, spanContextOf, traceContextOf } from './trace-context.js';

/**
 * How an attempt ended, as its span's `asyncfirst.job.outcome` says: the job's final state, a retry
 * to come, the job given back at shutdown, the lease lost to another worker, or an outcome that
 * could not be recorded (the next claim runs the job again).
 */
export type AttemptEnding = 'succeeded' | 'failed' | 'canceled' | 'retrying' | 'released' | 'lease-lost' | 'not-recorded';

/**
 * OpenTelemetry traces of jobs, through @opentelemetry/api alone: with no SDK registered every span
 * is the API's non-recording one. The trace context active at a submission is stored with its job;
 * each attempt is a CONSUMER span `process {operationId}` that links to it (its own trace, since an
 * attempt may run long after the submission's trace ended, and several times), and each webhook
 * delivery attempt a CLIENT span whose context the request carries as traceparent.
 */
export class JobTracing {
  private readonly tracer: Tracer = trace.getTracer('asyncfirst');

  /** The trace context to store with a job submitted now (the active one; undefined when no span is active). */
  submissionContext(): TraceContext | undefined {
    return activeTraceContext();
  }

  /**
   * Starts the span of a claimed job's attempt; undefined while no SDK is registered, when the span
   * would record nothing and carry no context (an attempt's span is a root), so the attempt runs
   * without building one — its attributes, its link, its context — per job.
   */
  startAttempt(job: ClaimedJob): AttemptSpan | undefined {
    if (!sdkRegistered()) return undefined;
    const submission = spanContextOf(job.traceContext);
    const span = this.tracer.startSpan(
      `process ${job.operation}`,
      {
        kind: SpanKind.CONSUMER,
        root: true,
        attributes: {
          'messaging.system': 'asyncfirst',
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'messaging.destination.name': job.operation,
          'messaging.message.id': job.id,
          'asyncfirst.job.attempt': job.attempts,
          'asyncfirst.job.max_attempts': job.maxAttempts,
        },
        ...(submission ? { links: [{ context: submission }] } : {}),
      },
      ROOT_CONTEXT,
    );
    return new AttemptSpan(span);
  }

  /** Starts the span of one webhook delivery attempt; its headers carry the span's context to the receiver. */
  startDelivery(delivery: WebhookDelivery): DeliverySpan {
    const attributes: Attributes = {
      'http.request.method': 'POST',
      'asyncfirst.webhook.id': delivery.id,
      'asyncfirst.webhook.event_type': delivery.eventType,
      'asyncfirst.webhook.attempt': delivery.attempts,
      'asyncfirst.job.id': delivery.jobId,
    };
    const target = parseUrl(delivery.url);
    if (target) {
      // The query is left out: receivers put tokens there.
      attributes['url.full'] = `${target.origin}${target.pathname}`;
      attributes['server.address'] = target.hostname.replace(/^\[|\]$/g, '');
      attributes['server.port'] = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
    }
    const span = this.tracer.startSpan('POST', { kind: SpanKind.CLIENT, root: true, attributes }, ROOT_CONTEXT);
    return new DeliverySpan(span);
  }
}

/**
 * Whether an OpenTelemetry SDK has been registered (checked each time: one may be registered after
 * the service started). Without one, the global provider is the API's proxy with no delegate.
 */
function sdkRegistered(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer('asyncfirst') !== undefined;
}

function parseUrl(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

/** The span of one attempt of a job. */
export class AttemptSpan {
  private readonly attemptContext: Context;
  private failed = false;

  constructor(private readonly span: Span) {
    this.attemptContext = trace.setSpan(ROOT_CONTEXT, span);
  }

  /** Runs the handler inside the span's context, so that the spans it starts are the attempt's children. */
  run<T>(handler: () => T): T {
    return context.with(this.attemptContext, handler);
  }

  /** The handler threw: the error is recorded on the span, whose status is ERROR. */
  handlerFailed(error: unknown): void {
    this.failed = true;
    if (!this.span.isRecording()) return;
    this.span.recordException(error instanceof Error ? error : String(error));
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }

  /** Ends the span with how the attempt ended; a job that failed without a thrown error (an invalid result) is an ERROR too. */
  end(ending: AttemptEnding): void {
    if (this.span.isRecording()) {
      this.span.setAttribute('asyncfirst.job.outcome', ending);
      if (ending === 'failed' && !this.failed) this.span.setStatus({ code: SpanStatusCode.ERROR, message: 'the job failed' });
    }
    this.span.end();
  }
}

/** The span of one webhook delivery attempt. */
export class DeliverySpan {
  /** traceparent (and tracestate) naming this span, to send with the request; empty when the span has no valid context. */
  readonly headers: Record<string, string>;

  constructor(private readonly span: Span) {
    const carried = traceContextOf(span.spanContext());
    this.headers = carried ? { ...carried } : {};
  }

  /** Ends the span with the attempt's outcome: the receiver's status, and ERROR for anything but a 2xx. */
  end(outcome: SendOutcome): void {
    if (this.span.isRecording()) {
      if (outcome.status !== undefined) this.span.setAttribute('http.response.status_code', outcome.status);
      if (outcome.kind !== 'delivered') {
        this.span.setAttribute('error.type', outcome.status === undefined ? '_OTHER' : String(outcome.status));
        this.span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error });
      }
    }
    this.span.end();
  }
}
