import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { type Logger, type LoggerOptions, pino } from 'pino';
import { type AsyncFirstConfig, ConfigError, loadConfig } from './config.js';
import { ContractError, loadContract, type OpenApiDocument, readContractFile } from './contract/load.js';
import { describeOperations } from './contract/operations.js';
import { type NotifyEntry, settlePolicies } from './contract/policies.js';
import { SCHEDULES_EXTENSION, type ScheduleDefinition, settleSchedules } from './contract/schedules.js';
import { buildServedDocument, FRAMEWORK_OPERATION_IDS } from './contract/served-document.js';
import type { DashboardOptions } from './dashboard/dashboard-routes.js';
import { CallbackPolicy } from './delivery/callback-url.js';
import { type Notifier, SLACK_NOTIFIER_NAME, slackNotifier } from './delivery/notifiers.js';
import type { WebhookDispatcher } from './delivery/webhook-dispatcher.js';
import { decodeWebhookSecret } from './delivery/webhook-signature.js';
import { openJobEngine } from './engine/open-engine.js';
import { type Enqueue, type EnqueueArgumentsOf, type Enqueued, type EnqueueOperationId, makeEnqueue } from './enqueue.js';
import { makeFollowUpPlanner } from './follow-ups.js';
import type { AnyHandler, BeforeAccept } from './handlers.js';
import type { IsOperator } from './http/job-routes.js';
import type { SecurityHandler } from './http/security.js';
import { buildServer } from './http/server.js';
import { ContractValidators } from './http/validation.js';
import { JobRuntime } from './runtime/job-runtime.js';
import type { NotificationRoute, Store } from './store/store.js';
import type { Sweeper } from './worker/sweeper.js';
import type { JobOperation, Worker } from './worker/worker.js';

/** Per-operation settings given in code; the policy fields override the operation's x-asyncfirst extension field by field. */
export interface OperationOptions<Input = { params: unknown; query: unknown; body: unknown }> {
  /** Handler runs before the job fails (default: the contract's x-asyncfirst maxAttempts, else JOB_MAX_ATTEMPTS). */
  maxAttempts?: number;
  /** Seconds one attempt may run before its signal fires and it fails as job-timeout (default: the contract's, else none). */
  timeout?: number;
  /** Retry delays in seconds: the first retry's ceiling and the largest (default: the contract's, else RETRY_BASE_MS and RETRY_MAX_MS). */
  backoff?: { base?: number; max?: number };
  /** Higher runs first among due jobs, from -100 to 100 (default: the contract's, else 0). */
  priority?: number;
  /** The most attempts of this operation running at once across every process (default: the contract's, else no limit). */
  concurrency?: number;
  /** At most `max` starts of this operation in any `per` seconds across every process (default: the contract's, else no limit). */
  rateLimit?: { max: number; per: number };
  /**
   * The notifiers told of the operation's job endings, each a name in `notifiers` (every ending) or
   * { notifier, on: ['job.failed', …] }; replaces the contract's x-asyncfirst notify (an empty list: none).
   */
  notify?: NotifyEntry[];
  /** Seconds the operation's finished jobs (`jobs`) and idempotency keys (`keys`) are kept, each field over the contract's (default: JOB_RETENTION_MS, IDEMPOTENCY_RETENTION_MS). */
  retention?: { jobs?: number; keys?: number };
  /** Asynchronous operations: may refuse a submission (throw an HttpProblem) before its job or key is stored. */
  beforeAccept?: BeforeAccept<Input>;
}

export interface AsyncFirstOptions<HandlerMap> {
  /** The contract: a path to a YAML/JSON file, or the parsed document. */
  contract: string | OpenApiDocument;
  /** One handler per operationId; type it with Handlers<operations> from generated/. */
  handlers: HandlerMap;
  /** One function per security scheme of the contract: credential → principal. */
  security?: Record<string, SecurityHandler>;
  operations?: {
    // Keys as strings: the handler map's symbol-keyed type marker (Handlers<operations>) is no operation.
    [OperationId in keyof HandlerMap & string]?: OperationOptions<
      HandlerMap[OperationId] extends (input: infer Input, ...rest: never[]) => unknown ? Input : unknown
    >;
  };
  /**
   * Out-of-band notifiers by name (slackNotifier({ url }), or any async function of the
   * notification), which operations name in x-asyncfirst notify. NOTIFY_SLACK_URL adds one named slack.
   */
  notifiers?: Record<string, Notifier>;
  /** Chooses operators in code, besides those named in ADMIN_PRINCIPALS: they list and retry every principal's jobs. */
  operators?: IsOperator;
  /** Settings over those read from the environment. */
  config?: Partial<AsyncFirstConfig>;
  /** The service's logger: a pino instance (used as it is), or pino options (over LOG_LEVEL and LOG_FORMAT). */
  logger?: Logger | LoggerOptions;
  /**
   * Recurring schedules besides (or over, by name) the contract's x-asyncfirst-schedules: each
   * submits a job of an asynchronous operation at every tick of its cron expression.
   */
  schedules?: ScheduleDefinition[];
  /** Use this store instead of opening DATABASE_URL (tests, other backends). */
  store?: Store;
}

/**
 * What an asyncfirst process runs besides (or without) HTTP: the engine, the worker, the dispatcher,
 * the sweeper. HandlerMap is the service's handler map, which types enqueue.
 */
export interface AsyncFirstBackground<HandlerMap = unknown> {
  readonly config: AsyncFirstConfig;
  /** The job engine. */
  readonly store: Store;
  /** The owner of the moving parts. */
  readonly runtime: JobRuntime;
  readonly worker: Worker | undefined;
  readonly sweeper: Sweeper;
  /** Sends webhooks; present when WEBHOOK_SECRET is set. */
  readonly dispatcher: WebhookDispatcher | undefined;
  readonly log: FastifyBaseLogger;
  /**
   * Submits a job from code, with an HTTP submission's validation, idempotency (options.key, scoped
   * by options.principal and the operation) and durability: resolves once the job is stored. With
   * handlers typed as Handlers<operations>, the operationId is one of the contract's asynchronous
   * operations and the input is typed from it.
   */
  enqueue<OperationId extends EnqueueOperationId<HandlerMap>>(
    operationId: OperationId,
    ...rest: EnqueueArgumentsOf<HandlerMap, OperationId>
  ): Promise<Enqueued>;
  /** Starts the worker, the dispatcher and the sweeper. */
  startBackground(): void;
  /** Graceful stop: let handlers finish within the grace period, then close the store. */
  close(): Promise<void>;
}

/** A running asyncfirst service: the HTTP server in front of the runtime (whose worker runs unless WORKER_CONCURRENCY is 0). */
export interface AsyncFirstApp<HandlerMap = unknown> extends AsyncFirstBackground<HandlerMap> {
  readonly server: FastifyInstance;
  /** The contract with the framework's endpoints merged in, as served at /openapi.json. */
  readonly servedDocument: OpenApiDocument;
  /** Starts the worker and the sweeper, then listens on config.host:config.port; resolves with the address. */
  listen(): Promise<string>;
  /** Graceful stop: refuse new requests, finish in-flight ones, let handlers finish within the grace period, close the store. */
  close(): Promise<void>;
}

/** A service's contract loaded and checked against its handlers, and its runtime: what both kinds of process share. */
async function prepare<HandlerMap extends object>(options: AsyncFirstOptions<HandlerMap>) {
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
  const validators = new ContractValidators(document.openapi);
  const inCode = (operationId: string): OperationOptions | undefined => (options.operations as Record<string, OperationOptions> | undefined)?.[operationId];
  const notifiers = notifiersOf(options.notifiers, config);
  const policies = settlePolicies(
    operations,
    inCode,
    { maxAttempts: config.maxAttempts, retryBaseMs: config.retryBaseMs, retryMaxMs: config.retryMaxMs },
    source,
    new Set(notifiers.keys()),
  );
  const maxAttempts = (operationId: string) => policies.get(operationId)?.maxAttempts ?? inCode(operationId)?.maxAttempts ?? config.maxAttempts;
  const beforeAccept = (operationId: string): BeforeAccept | undefined => inCode(operationId)?.beforeAccept;
  const keyRetentionMs = (operationId: string) => policies.get(operationId)?.keyRetentionMs ?? config.idempotencyRetentionMs;
  const jobRetentionByOperation = new Map<string, number>();
  for (const [operationId, policy] of policies) if (policy.jobRetentionMs !== undefined) jobRetentionByOperation.set(operationId, policy.jobRetentionMs);
  const schedules = settleSchedules(document[SCHEDULES_EXTENSION], options.schedules, operations, validators, source);
  const webhookSecrets = parseWebhookSecrets(config.webhookSecret);
  const callbackPolicy = CallbackPolicy.fromList(config.webhookAllowedHosts);
  const jobOperations = new Map<string, JobOperation>();
  for (const operation of operations.filter((candidate) => candidate.async)) {
    const policy = policies.get(operation.operationId);
    jobOperations.set(operation.operationId, {
      handler: handlers.get(operation.operationId) as AnyHandler,
      maxAttempts: maxAttempts(operation.operationId),
      timeoutMs: policy?.timeoutMs,
      retry: policy && { baseMs: policy.retryBaseMs, maxMs: policy.retryMaxMs },
      writeResult: validators.resultWriter(operation.result?.schema),
    });
  }
  const log = serviceLogger(options.logger, config);
  const store = options.store ?? (await openJobEngine(config));
  store.useClaimPolicies(policies);
  const routes = new Map<string, NotificationRoute[]>();
  for (const [operationId, policy] of policies) if (policy.notify.length > 0) routes.set(operationId, policy.notify);
  store.routeNotifications({ byOperation: routes, maxAttempts: config.notifyMaxAttempts });
  const runtime = new JobRuntime({
    config,
    store,
    log,
    operations: jobOperations,
    schedules: { schedules, maxAttempts, keyRetentionMs },
    jobRetentionByOperation,
    planFollowUp: (tracing) =>
      makeFollowUpPlanner({
        operations,
        validators,
        maxAttempts,
        keyRetentionMs,
        notBeforeMaxSeconds: config.notBeforeMaxSeconds,
        ...(tracing ? { tracing } : {}),
      }),
    ...(webhookSecrets.length > 0 ? { webhooks: { secrets: webhookSecrets, policy: callbackPolicy } } : {}),
    ...(notifiers.size > 0 ? { notifiers: { byName: notifiers, policy: callbackPolicy } } : {}),
  });
  const enqueue = makeEnqueue({
    operations,
    validators,
    store,
    maxAttempts,
    keyRetentionMs,
    notBeforeMaxSeconds: config.notBeforeMaxSeconds,
    ...(runtime.tracing ? { tracing: runtime.tracing } : {}),
    log,
  });
  return {
    config,
    contract,
    operations,
    handlers,
    validators,
    maxAttempts,
    keyRetentionMs,
    beforeAccept,
    callbackPolicy,
    webhookSecrets,
    log,
    store,
    runtime,
    enqueue,
  };
}

function background<HandlerMap>(config: AsyncFirstConfig, runtime: JobRuntime, log: FastifyBaseLogger, enqueue: Enqueue): AsyncFirstBackground<HandlerMap> {
  return {
    config,
    store: runtime.store,
    runtime,
    worker: runtime.worker,
    sweeper: runtime.sweeper,
    dispatcher: runtime.dispatcher,
    log,
    // The types (EnqueueArgumentsOf) only narrow what the untyped enqueue accepts.
    enqueue: enqueue as AsyncFirstBackground<HandlerMap>['enqueue'],
    startBackground: () => runtime.start(),
    close: () => runtime.stop(),
  };
}

/** Builds an asyncfirst service from a contract and its handlers. Start errors name what is wrong. */
export async function createAsyncFirst<HandlerMap extends object>(options: AsyncFirstOptions<HandlerMap>): Promise<AsyncFirstApp<HandlerMap>> {
  const prepared = await prepare(options);
  const { config, contract, runtime, log } = prepared;
  const servedDocument = buildServedDocument(contract.document, prepared.operations);
  let server: FastifyInstance;
  try {
    server = await buildServer({
      contract: {
        served: servedDocument,
        securitySchemes: ((contract.dereferenced.components as Record<string, unknown> | undefined)?.securitySchemes ?? {}) as Record<string, { type: string }>,
        operations: prepared.operations,
        handlers: prepared.handlers,
        validators: prepared.validators,
        maxAttempts: prepared.maxAttempts,
        keyRetentionMs: prepared.keyRetentionMs,
        beforeAccept: prepared.beforeAccept,
      },
      securityHandlers: options.security ?? {},
      isOperator: operatorsOf(config.adminPrincipals, options.operators),
      runtime,
      limits: {
        bodyLimit: config.bodyLimit,
        bodyMaxDepth: config.bodyMaxDepth,
        connections: {
          requestTimeoutMs: config.requestTimeoutMs,
          headersTimeoutMs: config.headersTimeoutMs,
          keepAliveTimeoutMs: config.keepAliveTimeoutMs,
          maxConnections: config.maxConnections,
        },
        longPollMaxSeconds: config.longPollMaxSeconds,
        notBeforeMaxSeconds: config.notBeforeMaxSeconds,
      },
      ...(prepared.webhookSecrets.length > 0 ? { webhooks: { policy: prepared.callbackPolicy } } : {}),
      ...(config.metricsToken ? { metricsToken: config.metricsToken } : {}),
      ...(config.dashboard ? { dashboard: dashboardOptions(config) } : {}),
      logger: log,
    });
  } catch (error) {
    await runtime.store.close();
    throw error;
  }
  return {
    ...background<HandlerMap>(config, runtime, log, prepared.enqueue),
    server,
    servedDocument,
    async listen() {
      runtime.start();
      return server.listen({ port: config.port, host: config.host });
    },
    close: () =>
      runtime.stop(async () => {
        // In-flight requests finish within the grace period; a connection still open after it (a client
        // that keeps an unused keep-alive connection) is closed rather than allowed to hold the exit.
        const forceClose = setTimeout(() => server.server.closeAllConnections(), config.shutdownGraceMs);
        await server.close().finally(() => clearTimeout(forceClose));
      }),
  };
}

/**
 * Builds a worker-only process of the service: the runtime (engine, worker, dispatcher, sweeper)
 * without an HTTP server. Start errors name what is wrong.
 */
export async function createAsyncFirstWorker<HandlerMap extends object>(options: AsyncFirstOptions<HandlerMap>): Promise<AsyncFirstBackground<HandlerMap>> {
  const { config, runtime, log, enqueue } = await prepare(options);
  return background<HandlerMap>(config, runtime, log, enqueue);
}

/** Operators: the principals ADMIN_PRINCIPALS names (comma-separated), and those the application's function chooses. */
function operatorsOf(adminPrincipals: string, chosen: IsOperator | undefined): IsOperator {
  const named = new Set(
    adminPrincipals
      .split(',')
      .map((principal) => principal.trim())
      .filter(Boolean),
  );
  return (principal, request) => named.has(principal) || (chosen?.(principal, request) ?? false);
}

/** The logger a service logs with: its own pino instance, or one made from its options, LOG_LEVEL and LOG_FORMAT. */
function serviceLogger(logger: Logger | LoggerOptions | undefined, config: AsyncFirstConfig): FastifyBaseLogger {
  if (logger !== undefined && typeof (logger as Logger).child === 'function') return logger as Logger as FastifyBaseLogger;
  const options: LoggerOptions = { level: config.logLevel, ...(logger as LoggerOptions | undefined) };
  // pino-pretty runs in pino's transport thread, so formatting never holds the event loop.
  if (config.logFormat === 'pretty' && options.transport === undefined)
    options.transport = { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } };
  return pino(options) as FastifyBaseLogger;
}

/** The dashboard's settings from DASHBOARD_PREFIX, DASHBOARD_READ_ONLY, DASHBOARD_USER and DASHBOARD_PASSWORD. */
function dashboardOptions(config: AsyncFirstConfig): DashboardOptions {
  return {
    prefix: config.dashboardPrefix,
    readOnly: config.dashboardReadOnly,
    ...(config.dashboardUser ? { credentials: { user: config.dashboardUser, password: config.dashboardPassword } } : {}),
  };
}

/** The service's notifiers: those given in code, and slack when NOTIFY_SLACK_URL is set (code's own slack wins). */
function notifiersOf(given: Record<string, Notifier> | undefined, config: AsyncFirstConfig): Map<string, Notifier> {
  const notifiers = new Map<string, Notifier>();
  if (config.notifySlackUrl !== '') {
    if (!/^https?:\/\//i.test(config.notifySlackUrl) || !URL.canParse(config.notifySlackUrl))
      throw new ConfigError(`NOTIFY_SLACK_URL="${config.notifySlackUrl}" must be an http(s) URL: the incoming webhook's (https://hooks.slack.com/services/…)`);
    notifiers.set(SLACK_NOTIFIER_NAME, slackNotifier({ url: config.notifySlackUrl }));
  }
  for (const [name, notifier] of Object.entries(given ?? {})) {
    if (typeof notifier !== 'function') throw new ConfigError(`notifiers.${name} must be a function (notification, context) => Promise<void>`);
    notifiers.set(name, notifier);
  }
  return notifiers;
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
