import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { OpenApiDocument } from '../contract/load.js';
import type { OperationSpec } from '../contract/operations.js';
import { jobsSecurity } from '../contract/served-document.js';
import { ProblemError, problem } from '../core/problems.js';
import type { CallbackPolicy } from '../delivery/callback-url.js';
import type { JobEventStreams } from '../delivery/event-stream.js';
import type { JobWatch } from '../delivery/job-watch.js';
import type { AnyHandler } from '../handlers.js';
import type { Store } from '../store/store.js';
import { type ConnectionLimits, clientErrorAnswerer, limitedServerFactory } from './connections.js';
import { registerDocumentRoutes } from './document-routes.js';
import { registerJobRoutes } from './job-routes.js';
import { registerOperationRoute } from './operation-routes.js';
import { problemFor, sendProblem } from './problem-replies.js';
import { jsonBodyParser } from './request-body.js';
import { SecurityEnforcer, type SecurityHandler } from './security.js';
import type { ContractValidators } from './validation.js';

export interface ServerDeps {
  served: OpenApiDocument;
  securitySchemes: Record<string, { type: string }>;
  operations: OperationSpec[];
  handlers: Map<string, AnyHandler>;
  maxAttempts: (operationId: string) => number;
  securityHandlers: Record<string, SecurityHandler>;
  validators: ContractValidators;
  store: Store;
  /** Aborts a job's handler if it runs in this process (DELETE /jobs/{id}). */
  cancelRunningJob: (jobId: string) => void;
  watch: JobWatch;
  streams: JobEventStreams;
  longPollMaxSeconds: number;
  /** Present when webhooks are configured. */
  webhooks?: { policy: CallbackPolicy };
  bodyLimit: number;
  /** How deeply arrays and objects may nest in a JSON body (BODY_MAX_DEPTH). */
  bodyMaxDepth: number;
  connectionLimits: ConnectionLimits;
  idempotencyRetentionMs: number;
  logger: FastifyServerOptions['logger'];
  /** True once shutdown began: new requests get 503. */
  isClosing: () => boolean;
  /** Resolves when this process can serve jobs now; throws (a ProblemError or StoreUnavailableError) when not. */
  readiness: () => Promise<void>;
}

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Builds the Fastify server for a contract: one route per operation, the jobs API, the documents. */
export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const server = Fastify({
    logger: deps.logger,
    bodyLimit: deps.bodyLimit,
    serverFactory: limitedServerFactory(deps.connectionLimits),
    clientErrorHandler: clientErrorAnswerer(deps.connectionLimits),
    return503OnClosing: false,
    exposeHeadRoutes: true,
    frameworkErrors: (error, request, reply) => {
      const { details, headers } = problemFor(error, request);
      sendProblem(reply, details, headers);
    },
  });
  server.decorateRequest('principal', '');
  server.setValidatorCompiler(deps.validators.compiler);
  // One JSON parser for application/json and the +json media types (application/merge-patch+json, …):
  // UTF-8 only, Fastify's default parsing and prototype-poisoning checks, then the nesting limit.
  const parseJson = jsonBodyParser(server.getDefaultJsonParser('error', 'error'), deps.bodyMaxDepth);
  server.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseJson);
  server.addContentTypeParser(/^application\/[\w.-]+\+json$/i, { parseAs: 'buffer' }, parseJson);

  server.setErrorHandler((error, request, reply) => {
    const { details, headers } = problemFor(error as Error, request);
    return sendProblem(reply, details, headers);
  });
  server.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('notFound', `Nothing is served at ${request.method} ${request.url.split('?')[0]}.`)),
  );
  server.addHook('onRequest', async (_request, reply) => {
    if (deps.isClosing()) {
      reply.header('connection', 'close');
      throw new ProblemError('shuttingDown', 'The server is shutting down; retry on another instance or in a moment.', { headers: { 'retry-after': '1' } });
    }
  });

  const usedSchemes = new Set<string>();
  for (const operation of deps.operations) for (const requirement of operation.security) for (const name of requirement) usedSchemes.add(name);
  const security = new SecurityEnforcer(deps.securitySchemes, deps.securityHandlers, usedSchemes);

  const methodsByPath = new Map<string, Set<string>>();
  for (const operation of deps.operations) {
    registerOperationRoute(server, operation, {
      store: deps.store,
      handler: deps.handlers.get(operation.operationId) as AnyHandler,
      authenticate: security.authenticator(operation.security, operation.anonymousAllowed),
      maxAttempts: deps.maxAttempts(operation.operationId),
      idempotencyRetentionMs: deps.idempotencyRetentionMs,
      watch: deps.watch,
      longPollMaxSeconds: deps.longPollMaxSeconds,
      ...(deps.webhooks ? { webhooks: deps.webhooks } : {}),
    });
    const methods = methodsByPath.get(operation.routeUrl) ?? new Set<string>();
    methods.add(operation.method);
    if (operation.method === 'GET') methods.add('HEAD');
    methodsByPath.set(operation.routeUrl, methods);
  }

  const jobRequirements = jobsSecurity(deps.operations);
  const jobsAuthenticate = security.authenticator(
    (jobRequirements ?? []).map((requirement) => Object.keys(requirement)).filter((names) => names.length > 0),
    jobRequirements === undefined || jobRequirements.some((requirement) => Object.keys(requirement).length === 0),
  );
  registerJobRoutes(server, {
    store: deps.store,
    authenticate: jobsAuthenticate,
    cancelRunningJob: deps.cancelRunningJob,
    watch: deps.watch,
    streams: deps.streams,
    longPollMaxSeconds: deps.longPollMaxSeconds,
  });
  methodsByPath.set('/jobs/:id', new Set(['GET', 'HEAD', 'DELETE']));
  methodsByPath.set('/jobs/:id/result', new Set(['GET', 'HEAD']));
  methodsByPath.set('/jobs/:id/events', new Set(['GET', 'HEAD']));

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

  await registerDocumentRoutes(server, deps.served);
  // Liveness: the process answers (no store call). Readiness: it can take and serve jobs now.
  server.get('/healthz', async () => ({ status: 'ok' }));
  server.get('/readyz', async () => {
    await deps.readiness();
    return { status: 'ready' };
  });
  return server;
}
