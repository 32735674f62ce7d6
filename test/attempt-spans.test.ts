import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import type { ClaimedJob } from '../src/store/store.js';
import { JobTracing } from '../src/tracing/job-tracing.js';
import { registerTestSdk, spanRecord } from './tracing-support.js';

/*
 * With no OpenTelemetry SDK registered an attempt's span would record nothing and carry no context
 * (it is a root), so none is built; one registered later, while the service runs, is used from the
 * next attempt on.
 */

const job = {
  id: '01JOB',
  principal: 'alice',
  operation: 'createReport',
  attempts: 1,
  maxAttempts: 3,
} as unknown as ClaimedJob;

describe("an attempt's span", () => {
  afterAll(() => trace.disable());

  it('is not built while no SDK is registered, and is from the first attempt after one is', async () => {
    const tracing = new JobTracing();
    expect(tracing.startAttempt(job)).toBeUndefined();

    const exporter = new InMemorySpanExporter();
    const provider = registerTestSdk(exporter);
    const span = tracing.startAttempt(job);
    expect(span).toBeDefined();
    span?.end('succeeded');
    const [record] = exporter.getFinishedSpans().map(spanRecord);
    expect(record).toMatchObject({ name: 'process createReport', attributes: expect.objectContaining({ 'asyncfirst.job.outcome': 'succeeded' }) });
    await provider.shutdown();
  });
});
