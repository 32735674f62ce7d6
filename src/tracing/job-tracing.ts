import type { TraceContext } from '../store/store.js';
import { activeTraceContext } from './trace-context.js';

/**
 * OpenTelemetry traces of jobs, through @opentelemetry/api alone: with no SDK registered nothing is
 * recorded. The trace context active at a submission is stored with its job.
 */
export class JobTracing {
  /** The trace context to store with a job submitted now (the active one; undefined when no span is active). */
  submissionContext(): TraceContext | undefined {
    return activeTraceContext();
  }
}
