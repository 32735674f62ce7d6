import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyBaseLogger, InjectOptions } from 'fastify';
import { pino } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { type AsyncFirstApp, type AsyncFirstOptions, createAsyncFirst } from '../app.js';
import { loadContract, readContractFile } from '../contract/load.js';
import { describeOperations } from '../contract/operations.js';
import { FINISHED_STATES } from '../core/job-states.js';
import { type EnqueueInput, submissionChecker } from '../enqueue.js';
import { type AnyHandler, type FollowUpOptions, type HandlerContext, ResourceLocation } from '../handlers.js';
import { ANONYMOUS_PRINCIPAL } from '../http/security.js';
import { ContractValidators } from '../http/validation.js';

/*
 * asyncfirst/testing: helpers for a service's own tests (vitest, node:test or any runner).
 *
 *   const t = await createTestApp(options);             // the app on a temporary SQLite file
 *   const accepted = await t.submit('POST', '/reports', { title: 'Q3', rows: 10 });
 *   await t.runUntilIdle();                              // the worker runs every due job
 *   const job = await t.job(accepted.jobId!);            // GET /jobs/{id}: status, result
 *   await t.close();
 */

/** An answer of the app, as a test reads it. */
export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  /** The body parsed as JSON (undefined when empty, the text when not JSON). */
  body: unknown;
  /** The job id of a 202 (or of a finished job answered at once), from the X-Job-ID header or the 202's job_id. */
  jobId: string | undefined;
}

/** A service built for tests: not listening, on a database of its own, its worker started by runUntilIdle. */
export interface TestApp<HandlerMap = unknown> {
  /** The whole app (its store, server, config, and enqueue typed from the handlers). */
  readonly app: AsyncFirstApp<HandlerMap>;
  /** The temporary SQLite file (removed by close). */
  readonly databasePath: string;
  /** Any request, through Fastify's inject. */
  request(options: InjectOptions): Promise<TestResponse>;
  /** A submission (or any call) with a JSON body; an Idempotency-Key is added when headers have none. */
  submit(method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<TestResponse>;
  /** Starts the worker (once) and waits until no job is queued or running; throws after timeoutMs (default 10 s). */
  runUntilIdle(options?: { timeoutMs?: number }): Promise<void>;
  /** The job as GET /jobs/{id} shows it (status, result or error); headers carry the principal's credentials. */
  job(id: string, headers?: Record<string, string>): Promise<Record<string, unknown>>;
  /** Stops the app and removes its database. */
  close(): Promise<void>;
}

/** Builds the service on a temporary SQLite file with test timings (fast polls and retries, silent logs). */
export async function createTestApp<HandlerMap extends object>(options: AsyncFirstOptions<HandlerMap>): Promise<TestApp<HandlerMap>> {
  const dir = mkdtempSync(join(tmpdir(), 'asyncfirst-test-'));
  const databasePath = join(dir, 'jobs.db');
  let app: AsyncFirstApp<HandlerMap>;
  try {
    app = await createAsyncFirst({
      ...options,
      config: { logLevel: 'silent', pollIntervalMs: 20, retryBaseMs: 10, retryMaxMs: 100, ...options.config, databaseUrl: databasePath },
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let started = false;
  const request = async (injected: InjectOptions): Promise<TestResponse> => {
    const response = await app.server.inject(injected);
    let body: unknown;
    if (response.body !== '') {
      try {
        body = JSON.parse(response.body);
      } catch {
        body = response.body;
      }
    }
    const header = response.headers['x-job-id'];
    const bodyId = response.statusCode === 202 && body !== null && typeof body === 'object' ? (body as { job_id?: unknown }).job_id : undefined;
    return {
      status: response.statusCode,
      headers: response.headers,
      body,
      jobId: typeof header === 'string' ? header : typeof bodyId === 'string' ? bodyId : undefined,
    };
  };
  return {
    app,
    databasePath,
    request,
    submit(method, url, body, headers = {}) {
      const hasKey = Object.keys(headers).some((name) => name.toLowerCase() === 'idempotency-key');
      return request({
        method: method as InjectOptions['method'],
        url,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(hasKey ? {} : { 'idempotency-key': uuidv7() }), ...headers },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    },
    async runUntilIdle({ timeoutMs = 10_000 } = {}) {
      if (!started) {
        started = true;
        app.startBackground();
      }
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const counts = await app.store.countJobs();
        const pending = counts.filter((count) => !(FINISHED_STATES as readonly string[]).includes(count.status) && count.count > 0);
        // A finish is visible in the counts once committed; the worker is done with the job (its log
        // line written, its attempt's work over) once the commit is durable and acknowledged.
        if (pending.length === 0 && (app.runtime.worker?.activeJobs ?? 0) === 0) return;
        if (Date.now() > deadline) {
          throw new Error(
            `jobs still pending after ${timeoutMs} ms: ${pending.map((count) => `${count.count} ${count.operation} ${count.status}`).join(', ') || `the worker still holds ${app.runtime.worker?.activeJobs} job(s)`}`,
          );
        }
        await new Promise((done) => setTimeout(done, 10));
      }
    },
    async job(id, headers = {}) {
      const response = await request({ method: 'GET', url: `/jobs/${encodeURIComponent(id)}`, headers });
      if (response.status !== 200) throw new Error(`GET /jobs/${id} answered ${response.status}: ${JSON.stringify(response.body)}`);
      return response.body as Record<string, unknown>;
    },
    async close() {
      try {
        await app.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** What runHandler saw: the handler's result as a client receives it (checked against the contract, undeclared properties dropped) and the progress it reported. */
export interface HandlerRun<Result> {
  result: Result;
  progress: { percent: number; message: string | undefined }[];
  /** What the handler asked for with ctx.enqueue, in order, each input checked against the contract (in a worker, stored only with the job's success). */
  followUps: { operationId: string; input: EnqueueInput; options: FollowUpOptions }[];
}

/** A handler's result that does not match its operation's response schema. */
export class ResultMismatchError extends Error {
  constructor(
    readonly operationId: string,
    readonly violations: string,
  ) {
    super(`the result of ${operationId} does not match the contract: ${violations}`);
    this.name = 'ResultMismatchError';
  }
}

/**
 * Runs one handler on its own with a real context (an abort signal, a progress recorder, a logger)
 * and checks its result against the operation's 200/201 response schema in the contract.
 */
export async function runHandler<HandlerMap extends object, OperationId extends keyof HandlerMap & string>(
  options: Pick<AsyncFirstOptions<HandlerMap>, 'contract' | 'handlers'>,
  operationId: OperationId,
  input: { params?: unknown; query?: unknown; body?: unknown },
  context: { principal?: string; signal?: AbortSignal; log?: FastifyBaseLogger; attempt?: number } = {},
): Promise<HandlerRun<HandlerMap[OperationId] extends (...args: never[]) => infer Result ? Awaited<Result> : unknown>> {
  const document = typeof options.contract === 'string' ? await readContractFile(options.contract) : options.contract;
  const contract = await loadContract(document, typeof options.contract === 'string' ? options.contract : 'the contract');
  const operation = describeOperations(contract).find((candidate) => candidate.operationId === operationId);
  if (!operation) throw new Error(`the contract has no operation "${operationId}"`);
  const handler = (options.handlers as Record<string, AnyHandler>)[operationId];
  if (typeof handler !== 'function') throw new Error(`no handler is registered for "${operationId}"`);
  const progress: HandlerRun<unknown>['progress'] = [];
  const followUps: HandlerRun<unknown>['followUps'] = [];
  const validators = new ContractValidators(document.openapi);
  const checkFollowUp = submissionChecker(describeOperations(contract), validators, 'ctx.enqueue');
  const handlerContext: HandlerContext = {
    principal: context.principal ?? ANONYMOUS_PRINCIPAL,
    signal: context.signal ?? new AbortController().signal,
    log: context.log ?? (pino({ level: 'silent' }) as FastifyBaseLogger),
    progress: async (percent, message) => {
      progress.push({ percent, message });
    },
    enqueue: (operationId, input = {}, options = {}) => {
      if (!operation.async) throw new TypeError("ctx.enqueue stores a follow-up with the success of a job: call it from an asynchronous operation's handler");
      checkFollowUp(operationId, input);
      followUps.push({ operationId, input, options });
    },
    ...(operation.async ? { job: { id: `test-${uuidv7()}`, attempt: context.attempt ?? 1, maxAttempts: context.attempt ?? 1 } } : {}),
  };
  const result = await handler({ params: input.params ?? {}, query: input.query ?? {}, body: input.body }, handlerContext);
  if (result instanceof ResourceLocation || !operation.result?.schema) return { result: result as never, progress, followUps };
  const written = validators.resultWriter(operation.result.schema)(result);
  if (written.violations !== undefined) throw new ResultMismatchError(operationId, written.violations);
  // The result as a client receives it: what the schema does not declare is dropped.
  return { result: JSON.parse(written.json) as never, progress, followUps };
}
