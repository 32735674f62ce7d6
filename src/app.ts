import type { FastifyInstance } from 'fastify';
import { type AsyncFirstConfig, ConfigError, loadConfig } from './config.js';
import { ContractError, loadContract, type OpenApiDocument, readContractFile } from './contract/load.js';
import { describeOperations } from './contract/operations.js';
import { buildServedDocument, FRAMEWORK_OPERATION_IDS } from './contract/served-document.js';
import { ProblemError } from './core/problems.js';
import { CallbackPolicy } from './delivery/callback-url.js';
import { JobEventStreams } from './delivery/event-stream.js';
import { JobWatch } from './delivery/job-watch.js';
import { WebhookDispatcher } from './delivery/webhook-dispatcher.js';
import { decodeWebhookSecret } from './delivery/webhook-signature.js';
import { openJobEngine } from './engine/open-engine.js';
import type { AnyHandler } from './handlers.js';
import type { SecurityHandler } from './http/security.js';
import { buildServer } from './http/server.js';
import { ContractValidators } from './http/validation.js';
import type { Store } from './store/store.js';
import { Sweeper } from './worker/sweeper.js';
import { type JobOperation, Worker } from './worker/worker.js';

/** Per-operation settings given in code. */
export interface OperationOptions {
  /** Handler runs before the job fails (default: JOB_MAX_ATTEMPTS). */
  maxAttempts?: number;
}

export interface AsyncFirstOptions<HandlerMap> {
  /** The contract: a path to a YAML/JSON file, or the parsed document. */
  contract: string | OpenApiDocument;
  /** One handler per operationId; type it with Handlers<operations> from generated/. */
  handlers: HandlerMap;
  /** One function per security scheme of the contract: credential → principal. */
  security?: Record<string, SecurityHandler>;
  operations?: { [OperationId in keyof HandlerMap]?: OperationOptions };
  /** Settings over those read from the environment. */
  config?: Partial<AsyncFirstConfig>;
  /** Use this store instead of opening DATABASE_URL (tests, other backends). */
  store?: Store;
}

/** A running asyncfirst service: the HTTP server, the store, and (unless concurrency is 0) the worker. */
export interface AsyncFirstApp {
  readonly config: AsyncFirstConfig;
  readonly server: FastifyInstance;
  readonly store: Store;
  readonly worker: Worker | undefined;
  readonly sweeper: Sweeper;
  /** Sends webhooks; present when WEBHOOK_SECRET is set. */
  readonly dispatcher: WebhookDispatcher | undefined;
  /** The contract with the framework's endpoints merged in, as served at /openapi.json. */
  readonly servedDocument: OpenApiDocument;
  /** Starts the worker and the sweeper, then listens on config.host:config.port; resolves with the address. */
  listen(): Promise<string>;
  /** Starts the worker and the sweeper without serving HTTP (a worker-only process). */
  startBackground(): void;
  /** Graceful stop: refuse new requests, finish in-flight ones, let handlers finish within the grace period, close the store. */
  close(): Promise<void>;
}

/** Builds an asyncfirst service from a contract and its handlers. Start errors name what is wrong. */
export async function createAsyncFirst<HandlerMap extends object>(options: AsyncFirstOptions<HandlerMap>): Promise<AsyncFirstApp> {
  const config = loadConfig(process.env, options.config);
  const document = typeof options.contract === 'string' ? await readContractFile(options.contract) : options.contract;
  const source = typeof options.contract === 'string' ? options.contract : 'the contract';
  const contract = await loadContract(document, source);
  const operations = describeOperations(contract);
  const handlers = new Map(Object.entries(options.handlers) as [string, AnyHandler][]);
  checkHandlers(
    operations.map((operation) => operation.operationId),
    handlers,
    source,
  );

  const servedDocument = buildServedDocument(contract.document, operations);
  const validators = new ContractValidators(document.openapi);
  const maxAttempts = (operationId: string) =>
    (options.operations as Record<string, OperationOptions> | undefined)?.[operationId]?.maxAttempts ?? config.maxAttempts;
  const webhookSecrets = parseWebhookSecrets(config.webhookSecret);
  const callbackPolicy = CallbackPolicy.fromList(config.webhookAllowedHosts);
  const store = options.store ?? (await openJobEngine(config));
  // Where the database announces other processes' changes, the version check is only a backstop.
  const watch = new JobWatch((ids) => store.jobVersions(ids), store.announcesOtherProcesses ? config.changeCheckMs * 8 : config.changeCheckMs);
  store.onJobsChanged((jobIds) => watch.changed(jobIds));
  const streams = new JobEventStreams({ store, watch, maxStreamsPerPrincipal: config.sseMaxStreamsPerPrincipal, heartbeatMs: config.sseHeartbeatMs });

  let server: FastifyInstance | undefined;
  let background = false;
  let worker: Worker | undefined;
  const logger = { level: config.logLevel };
  let closing = false;
  try {
    server = await buildServer({
      served: servedDocument,
      securitySchemes: ((contract.dereferenced.components as Record<string, unknown> | undefined)?.securitySchemes ?? {}) as Record<string, { type: string }>,
      operations,
      handlers,
      maxAttempts,
      securityHandlers: options.security ?? {},
      validators,
      store,
      bodyLimit: config.bodyLimit,
      bodyMaxDepth: config.bodyMaxDepth,
      connectionLimits: {
        requestTimeoutMs: config.requestTimeoutMs,
        headersTimeoutMs: config.headersTimeoutMs,
        keepAliveTimeoutMs: config.keepAliveTimeoutMs,
        maxConnections: config.maxConnections,
      },
      idempotencyRetentionMs: config.idempotencyRetentionMs,
      logger,
      isClosing: () => closing,
      readiness: async () => {
        if (!background)
          throw new ProblemError('notReady', 'The server is starting; its worker and sweeper are not running yet.', { headers: { 'retry-after': '1' } });
        await store.checkReady();
      },
      cancelRunningJob: (jobId) => worker?.cancel(jobId),
      watch,
      streams,
      longPollMaxSeconds: config.longPollMaxSeconds,
      ...(webhookSecrets.length > 0 ? { webhooks: { policy: callbackPolicy } } : {}),
    });
  } catch (error) {
    await store.close();
    throw error;
  }
  const log = server.log;
  store.onFault((fault) =>
    log.error(
      { cause: fault.error.message, fault: fault.kind },
      fault.kind === 'file-lost'
        ? 'the database file is gone: every write now answers 503 until it is restored and the server restarted'
        : 'the database refuses writes; answering 503 until it accepts them again',
    ),
  );

  if (config.workerConcurrency > 0) {
    const jobOperations = new Map<string, JobOperation>();
    for (const operation of operations.filter((candidate) => candidate.async)) {
      jobOperations.set(operation.operationId, {
        handler: handlers.get(operation.operationId) as AnyHandler,
        maxAttempts: maxAttempts(operation.operationId),
        checkResult: validators.resultChecker(operation.result?.schema),
      });
    }
    worker = new Worker({
      store,
      operations: jobOperations,
      concurrency: config.workerConcurrency,
      leaseMs: config.leaseMs,
      pollIntervalMs: config.pollIntervalMs,
      retryBaseMs: config.retryBaseMs,
      retryMaxMs: config.retryMaxMs,
      log: log.child({ component: 'worker' }),
    });
    // A job accepted in this process starts as soon as its transaction commits, without waiting for a poll.
    const localWorker = worker;
    store.onJobsQueued(() => localWorker.notify());
  }
  let dispatcher: WebhookDispatcher | undefined;
  if (webhookSecrets.length > 0) {
    dispatcher = new WebhookDispatcher({
      store,
      secrets: webhookSecrets,
      policy: callbackPolicy,
      timeoutMs: config.webhookTimeoutMs,
      retryBaseMs: config.webhookRetryBaseMs,
      retryMaxMs: config.webhookRetryMaxMs,
      pollIntervalMs: config.pollIntervalMs,
      concurrency: 8,
      log: log.child({ component: 'webhooks' }),
    });
    const localDispatcher = dispatcher;
    store.onDeliveriesQueued(() => localDispatcher.notify());
  }
  const sweeper = new Sweeper(store, { intervalMs: config.sweepIntervalMs, jobRetentionMs: config.jobRetentionMs, log: log.child({ component: 'sweeper' }) });

  const startBackground = () => {
    if (background) return;
    background = true;
    worker?.start();
    dispatcher?.start();
    sweeper.start();
  };
  let closed: Promise<void> | undefined;
  const readyServer = server;
  return {
    config,
    server: readyServer,
    store,
    worker,
    sweeper,
    dispatcher,
    servedDocument,
    startBackground,
    async listen() {
      startBackground();
      return readyServer.listen({ port: config.port, host: config.host });
    },
    close() {
      closed ??= (async () => {
        closing = true;
        sweeper.stop();
        // Long-polls answer with what they have and event streams end, so no request holds the close.
        watch.close();
        streams.closeAll();
        // In-flight requests finish within the grace period; a connection still open after it (a client
        // that keeps an unused keep-alive connection) is closed rather than allowed to hold the exit.
        const forceClose = setTimeout(() => readyServer.server.closeAllConnections(), config.shutdownGraceMs);
        await Promise.all([readyServer.close(), worker?.stop(config.shutdownGraceMs), dispatcher?.stop()]).finally(() => clearTimeout(forceClose));
        await store.close();
      })();
      return closed;
    },
  };
}

/** WEBHOOK_SECRET: comma-separated whsec_ secrets (several during a rotation). */
function parseWebhookSecrets(value: string): string[] {
  const secrets = value
    .split(',')
    .map((secret) => secret.trim())
    .filter(Boolean);
  for (const secret of secrets) {
    try {
      decodeWebhookSecret(secret);
    } catch (error) {
      throw new ConfigError(`WEBHOOK_SECRET: ${(error as Error).message}`);
    }
  }
  return secrets;
}

function checkHandlers(operationIds: string[], handlers: Map<string, AnyHandler>, source: string): void {
  const known = new Set(operationIds);
  for (const operationId of operationIds) {
    if (typeof handlers.get(operationId) !== 'function')
      throw new ContractError(`${source}: operation "${operationId}" has no handler; register one under handlers.${operationId}`);
  }
  for (const name of handlers.keys()) {
    if ((FRAMEWORK_OPERATION_IDS as readonly string[]).includes(name))
      throw new ContractError(`handler "${name}" names an endpoint asyncfirst serves itself; remove it`);
    if (!known.has(name)) throw new ContractError(`a handler is registered for "${name}", but ${source} has no operation with that operationId`);
  }
}
