import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { ContractError, type OpenApiDocument } from '../contract/load.js';
import type { OperationSpec } from '../contract/operations.js';
import { jobsSecurity } from '../contract/served-document.js';
import { ProblemError, problem } from '../core/problems.js';
import { type DashboardOptions, registerDashboard } from '../dashboard/dashboard-routes.js';
import type { CallbackPolicy } from '../delivery/callback-url.js';
import type { AnyHandler, BeforeAccept } from '../handlers.js';
import type { JobRuntime } from '../runtime/job-runtime.js';
import { type ConnectionLimits, clientErrorAnswerer, limitedServerFactory } from './connections.js';
import { registerDocumentRoutes } from './document-routes.js';
import { type IsOperator, registerJobRoutes } from './job-routes.js';
import { registerOperationRoute } from './operation-routes.js';
import { problemFor, sendProblem } from './problem-replies.js';
import { jsonBodyParser } from './request-body.js';
import { SecurityEnforcer, type SecurityHandler } from './security.js';
import type { ContractValidators } from './validation.js';

export interface ServerDeps {
  /** The contract, loaded and indexed, with its handlers and compiled validators. */
  contract: {
    served: OpenApiDocument;
    securitySchemes: Record<string, { type: string }>;
    operations: OperationSpec[];
    handlers: Map<string, AnyHandler>;
    validators: ContractValidators;
    maxAttempts: (operationId: string) => number;
    /** How long the operation's idempotency keys stay bound (its retention.keys, else IDEMPOTENCY_RETENTION_MS). */
    keyRetentionMs: (operationId: string) => number;
    /** The operation's pre-acceptance hook, if the service gave one. */
    beforeAccept?: (operationId: string) => BeforeAccept | undefined;
  };
  securityHandlers: Record<string, SecurityHandler>;
  /** Whether a principal is an operator (sees and retries every principal's jobs). */
  isOperator: IsOperator;
  /** The engine and the waiters the routes use; its readiness is /readyz. */
  runtime: JobRuntime;
  limits: {
    bodyLimit: number;
    /** How deeply arrays and objects may nest in a JSON body (BODY_MAX_DEPTH). */
    bodyMaxDepth: number;
    connections: ConnectionLimits;
    longPollMaxSeconds: number;
    notBeforeMaxSeconds: number;
  };
  /** Present when webhooks are configured. */
  webhooks?: { policy: CallbackPolicy };
  /** METRICS_TOKEN: when set, GET /metrics asks for it as a bearer token. */
  metricsToken?: string;
  /** The dashboard's settings; absent: no dashboard (DASHBOARD=off). */
  dashboard?: DashboardOptions;
  logger: FastifyBaseLogger;
}

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Builds the Fastify server for a contract: one route per operation, the jobs API, the documents. */
export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const { contract, runtime, limits } = deps;
  const server = Fastify({
    loggerInstance: deps.logger,
    bodyLimit: limits.bodyLimit,
    serverFactory: limitedServerFactory(limits.connections),
    clientErrorHandler: clientErrorAnswerer(limits.connections),
    return503OnClosing: false,
    exposeHeadRoutes: true,
    frameworkErrors: (error, request, reply) => {
      const { details, headers } = problemFor(error, request);
      sendProblem(reply, details, headers);
    },
  });
  server.decorateRequest('principal', '');
  server.setValidatorCompiler(contract.validators.compiler);
  // One JSON parser for application/json and the +json media types (application/merge-patch+json, …):
  // UTF-8 only, Fastify's default parsing and prototype-poisoning checks, then the nesting limit.
  const parseJson = jsonBodyParser(server.getDefaultJsonParser('error', 'error'), limits.bodyMaxDepth);
  server.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseJson);
  server.addContentTypeParser(/^application\/[\w.-]+\+json$/i, { parseAs: 'buffer' }, parseJson);

  server.setErrorHandler((error, request, reply) => {
    const { details, headers } = problemFor(error as Error, request);
    return sendProblem(reply, details, headers);
  });
  server.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('notFound', `Nothing is served at ${request.method} ${request.url.split('?')[0]}.`)),
  );
  // The route's pattern (never its job id) labels the request's duration.
  const { metrics } = runtime;
  if (metrics) {
    server.addHook('onResponse', async (request, reply) => {
      metrics.requestServed(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    });
  }
  // An async hook, not a callback one: with @fastify/otel registered, a callback hook's done() runs
  // the rest of the request inside the hook's span, so the handler would see (and a job would
  // store) that span instead of the request's (traces-across-processes.test.ts).
  server.addHook('onRequest', async (_request, reply) => {
    if (runtime.isStopping) {
      reply.header('connection', 'close');
      throw new ProblemError('shuttingDown', 'The server is shutting down; retry on another instance or in a moment.', { headers: { 'retry-after': '1' } });
    }
  });

  const usedSchemes = new Set<string>();
  for (const operation of contract.operations) for (const requirement of operation.security) for (const name of requirement) usedSchemes.add(name);
  const security = new SecurityEnforcer(contract.securitySchemes, deps.securityHandlers, usedSchemes);

  const methodsByPath = new Map<string, Set<string>>();
  for (const operation of contract.operations) {
    registerOperationRoute(server, operation, {
      store: runtime.store,
      handler: contract.handlers.get(operation.operationId) as AnyHandler,
      authenticate: security.authenticator(operation.security, operation.anonymousAllowed),
      maxAttempts: contract.maxAttempts(operation.operationId),
      beforeAccept: contract.beforeAccept?.(operation.operationId),
      writeResult: operation.async || !operation.result?.schema ? undefined : contract.validators.resultWriter(operation.result.schema),
      keyRetentionMs: contract.keyRetentionMs(operation.operationId),
      notBeforeMaxSeconds: limits.notBeforeMaxSeconds,
      metrics: runtime.metrics,
      tracing: runtime.tracing,
      watch: runtime.watch,
      longPollMaxSeconds: limits.longPollMaxSeconds,
      ...(deps.webhooks ? { webhooks: deps.webhooks } : {}),
    });
    const methods = methodsByPath.get(operation.routeUrl) ?? new Set<string>();
    methods.add(operation.method);
    if (operation.method === 'GET') methods.add('HEAD');
    methodsByPath.set(operation.routeUrl, methods);
  }

  const jobRequirements = jobsSecurity(contract.operations);
  const jobsAuthenticate = security.authenticator(
    (jobRequirements ?? []).map((requirement) => Object.keys(requirement)).filter((names) => names.length > 0),
    jobRequirements === undefined || jobRequirements.some((requirement) => Object.keys(requirement).length === 0),
  );
  registerJobRoutes(server, {
    store: runtime.store,
    counts: runtime.counts,
    authenticate: jobsAuthenticate,
    cancelRunningJob: (jobId) => runtime.cancelRunningJob(jobId),
    watch: runtime.watch,
    streams: runtime.streams,
    longPollMaxSeconds: limits.longPollMaxSeconds,
    isOperator: deps.isOperator,
  });
  methodsByPath.set('/jobs', new Set(['GET', 'HEAD']));
  methodsByPath.set('/jobs/counts', new Set(['GET', 'HEAD']));
  methodsByPath.set('/jobs/events', new Set(['GET', 'HEAD']));
  methodsByPath.set('/jobs/:id', new Set(['GET', 'HEAD', 'DELETE']));
  methodsByPath.set('/jobs/:id/result', new Set(['GET', 'HEAD']));
  methodsByPath.set('/jobs/:id/events', new Set(['GET', 'HEAD']));
  methodsByPath.set('/jobs/:id/retry', new Set(['POST']));

  // Known path, other method: 405 with Allow, not 404.
  for (const [url, methods] of methodsByPath) {
    const others = ALL_METHODS.filter((method) => !methods.has(method));
    const allow = [...methods].join(', ');
    if (others.length === 0) continue;
    server.route({
      method: others,
      url,
      handler: async (request, reply) => sendProblem(reply, problem('methodNotAllowed', `${request.method} is not allowed here; use ${allow}.`), { allow }),
    });
  }

  if (deps.dashboard) {
    const { prefix } = deps.dashboard;
    const clash = contract.operations.find((operation) => operation.routeUrl === prefix || operation.routeUrl.startsWith(`${prefix}/`));
    if (clash) {
      throw new ContractError(`the contract's path ${clash.path} is under DASHBOARD_PREFIX ${prefix}; set another DASHBOARD_PREFIX, or DASHBOARD=off`);
    }
    await registerDashboard(server, {
      ...deps.dashboard,
      store: runtime.store,
      counts: runtime.counts,
      streams: runtime.streams,
      authenticate: jobsAuthenticate,
      isOperator: deps.isOperator,
      cancelRunningJob: (jobId) => runtime.cancelRunningJob(jobId),
    });
  }
  await registerDocumentRoutes(server, contract.served);
  // Liveness: the process answers (no store call). Readiness: it can take and serve jobs now.
  server.get('/healthz', async () => ({ status: 'ok' }));
  // METRICS=off: no /metrics (404).
  if (metrics) {
    const metricsToken = deps.metricsToken ? createHash('sha256').update(deps.metricsToken).digest() : undefined;
    server.get('/metrics', async (request, reply) => {
      if (metricsToken) {
        const [scheme, token] = (request.headers.authorization ?? '').split(' ', 2);
        const presented = createHash('sha256')
          .update(token ?? '')
          .digest();
        if (scheme?.toLowerCase() !== 'bearer' || !timingSafeEqual(presented, metricsToken)) {
          throw new ProblemError('unauthorized', 'GET /metrics needs Authorization: Bearer with METRICS_TOKEN.', {
            headers: { 'www-authenticate': 'Bearer realm="asyncfirst-metrics"' },
          });
        }
      }
      const { contentType, body } = await metrics.render();
      return reply.code(200).type(contentType).send(body);
    });
  }
  server.get('/readyz', async () => {
    await runtime.checkReady();
    return { status: 'ready' };
  });
  return server;
}
