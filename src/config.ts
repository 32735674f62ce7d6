/** Runtime settings; every field maps to one environment variable (see the README's table). */
export interface AsyncFirstConfig {
  /** PORT: the TCP port to listen on. */
  port: number;
  /** HOST: the address to listen on. */
  host: string;
  /** DATABASE_URL: an SQLite file path or file: URL, or a postgres:// (postgresql://) URL. */
  databaseUrl: string;
  /** DATABASE_SCHEMA: PostgreSQL only: the schema asyncfirst's tables live in (created if missing). */
  databaseSchema: string;
  /** DATABASE_POOL_MAX: PostgreSQL only: pooled connections per process (the listener holds one more). */
  databasePoolMax: number;
  /** DATABASE_STATEMENT_TIMEOUT_MS: PostgreSQL only: the longest one statement may run. */
  databaseStatementTimeoutMs: number;
  /** WORKER_CONCURRENCY: jobs this process runs at once; 0 runs no worker here. */
  workerConcurrency: number;
  /** LOG_LEVEL: pino level (fatal, error, warn, info, debug, trace, silent). */
  logLevel: string;
  /** LOG_FORMAT: json (one JSON object a line, for log collectors) or pretty (coloured lines for a terminal, by pino-pretty). */
  logFormat: string;
  /** BODY_LIMIT: the largest request body, in bytes. */
  bodyLimit: number;
  /** BODY_MAX_DEPTH: how deeply arrays and objects may nest in a JSON body. */
  bodyMaxDepth: number;
  /** REQUEST_TIMEOUT_MS: time to receive a whole request, headers and body; then 408 and the connection is closed. */
  requestTimeoutMs: number;
  /** HEADERS_TIMEOUT_MS: time to receive a request's headers (at most REQUEST_TIMEOUT_MS). */
  headersTimeoutMs: number;
  /** KEEP_ALIVE_TIMEOUT_MS: how long an idle connection is kept open for the next request. */
  keepAliveTimeoutMs: number;
  /** MAX_CONNECTIONS: open connections at most; a connection past it is closed at once. */
  maxConnections: number;
  /** IDEMPOTENCY_RETENTION_MS: how long an Idempotency-Key stays bound to its job. */
  idempotencyRetentionMs: number;
  /** JOB_RETENTION_MS: how long a finished job is kept after it finished. */
  jobRetentionMs: number;
  /** SWEEP_INTERVAL_MS: how often expired records and jobs are deleted. */
  sweepIntervalMs: number;
  /** JOB_LEASE_MS: how long a claim lasts without renewal; a dead worker's job is taken over after it. */
  leaseMs: number;
  /** WORKER_POLL_MS: how often a worker looks for due jobs nobody woke it for. */
  pollIntervalMs: number;
  /** JOB_MAX_ATTEMPTS: handler runs before a job fails (per operation in code, too). */
  maxAttempts: number;
  /** RETRY_BASE_MS: the first retry's delay ceiling; it doubles per attempt. */
  retryBaseMs: number;
  /** RETRY_MAX_MS: the largest retry delay. */
  retryMaxMs: number;
  /** SHUTDOWN_GRACE_MS: how long running handlers may finish after SIGTERM/SIGINT. */
  shutdownGraceMs: number;
  /** DB_BUSY_TIMEOUT_MS: how long a write waits for the database lock before answering 503. */
  busyTimeoutMs: number;
  /** LONG_POLL_MAX_SECONDS: the cap on Prefer: wait=N. */
  longPollMaxSeconds: number;
  /** NOT_BEFORE_MAX_SECONDS: how far ahead a submission may ask its job to start (Not-Before, enqueue's runAt). */
  notBeforeMaxSeconds: number;
  /** CHANGE_CHECK_MS: while requests wait on jobs, how often other processes' changes are looked for. */
  changeCheckMs: number;
  /** SSE_MAX_STREAMS_PER_PRINCIPAL: open event streams per principal (per process) before 429. */
  sseMaxStreamsPerPrincipal: number;
  /** SSE_HEARTBEAT_MS: how often an idle event stream gets a comment line. */
  sseHeartbeatMs: number;
  /** ADMIN_PRINCIPALS: comma-separated principals who are operators: they list, count and retry every principal's jobs. */
  adminPrincipals: string;
  /** METRICS: whether this process keeps Prometheus metrics and serves GET /metrics. */
  metrics: boolean;
  /** METRICS_TOKEN: when set, GET /metrics requires `Authorization: Bearer <it>`. */
  metricsToken: string;
  /** TRACING: whether jobs are traced through @opentelemetry/api (submission contexts stored, attempt and webhook spans). */
  tracing: boolean;
  /** COUNTS_CACHE_MS: how long the job counts (GET /jobs/counts) are served before the store is read again. */
  countsCacheMs: number;
  /** DASHBOARD: whether the dashboard is served (on or off). */
  dashboard: boolean;
  /** DASHBOARD_PREFIX: the path the dashboard is served at (its API under <prefix>/api/). */
  dashboardPrefix: string;
  /** DASHBOARD_USER: with DASHBOARD_PASSWORD, the HTTP basic user that signs in to the dashboard as an operator. */
  dashboardUser: string;
  /** DASHBOARD_PASSWORD: that user's password. */
  dashboardPassword: string;
  /** DASHBOARD_READ_ONLY: the dashboard shows no actions and refuses them. */
  dashboardReadOnly: boolean;
  /** WEBHOOK_SECRET: comma-separated whsec_… secrets; every delivery is signed with each (rotation). */
  webhookSecret: string;
  /** WEBHOOK_ALLOWED_HOSTS: comma-separated host names or CIDRs that callbacks may reach although not public. */
  webhookAllowedHosts: string;
  /** WEBHOOK_TIMEOUT_MS: how long one delivery attempt may take. */
  webhookTimeoutMs: number;
  /** WEBHOOK_MAX_ATTEMPTS: attempts per delivery before it is marked failed. */
  webhookMaxAttempts: number;
  /** WEBHOOK_RETRY_BASE_MS: the first delivery retry's delay ceiling; it doubles per attempt. */
  webhookRetryBaseMs: number;
  /** WEBHOOK_RETRY_MAX_MS: the largest delivery retry delay. */
  webhookRetryMaxMs: number;
  /** NOTIFY_SLACK_URL: when set, a notifier named slack posts {"text": …} to this incoming-webhook URL. */
  notifySlackUrl: string;
  /** NOTIFY_TIMEOUT_MS: how long one call of a notifier may take. */
  notifyTimeoutMs: number;
  /** NOTIFY_MAX_ATTEMPTS: calls per notification before it is marked failed. */
  notifyMaxAttempts: number;
  /** NOTIFY_RETRY_BASE_MS: the first notification retry's delay ceiling; it doubles per attempt. */
  notifyRetryBaseMs: number;
  /** NOTIFY_RETRY_MAX_MS: the largest notification retry delay. */
  notifyRetryMaxMs: number;
}

export const DEFAULT_CONFIG: AsyncFirstConfig = {
  port: 3000,
  host: '127.0.0.1',
  databaseUrl: './data/asyncfirst.db',
  databaseSchema: 'asyncfirst',
  databasePoolMax: 10,
  databaseStatementTimeoutMs: 10_000,
  workerConcurrency: 100,
  logLevel: 'info',
  logFormat: 'json',
  bodyLimit: 1024 * 1024,
  bodyMaxDepth: 64,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 72_000,
  maxConnections: 4096,
  idempotencyRetentionMs: 24 * 60 * 60 * 1000,
  jobRetentionMs: 7 * 24 * 60 * 60 * 1000,
  sweepIntervalMs: 60_000,
  leaseMs: 30_000,
  pollIntervalMs: 1000,
  maxAttempts: 5,
  retryBaseMs: 1000,
  retryMaxMs: 5 * 60_000,
  shutdownGraceMs: 10_000,
  busyTimeoutMs: 5000,
  longPollMaxSeconds: 30,
  notBeforeMaxSeconds: 30 * 24 * 60 * 60,
  changeCheckMs: 250,
  sseMaxStreamsPerPrincipal: 10,
  sseHeartbeatMs: 15_000,
  adminPrincipals: '',
  countsCacheMs: 2000,
  metrics: true,
  metricsToken: '',
  tracing: true,
  dashboard: true,
  dashboardPrefix: '/dashboard',
  dashboardUser: '',
  dashboardPassword: '',
  dashboardReadOnly: false,
  webhookSecret: '',
  webhookAllowedHosts: '',
  webhookTimeoutMs: 10_000,
  webhookMaxAttempts: 8,
  webhookRetryBaseMs: 1000,
  webhookRetryMaxMs: 60 * 60_000,
  notifySlackUrl: '',
  notifyTimeoutMs: 10_000,
  notifyMaxAttempts: 8,
  notifyRetryBaseMs: 1000,
  notifyRetryMaxMs: 60 * 60_000,
};

const ENV_NAMES: Record<keyof AsyncFirstConfig, string> = {
  port: 'PORT',
  host: 'HOST',
  databaseUrl: 'DATABASE_URL',
  databaseSchema: 'DATABASE_SCHEMA',
  databasePoolMax: 'DATABASE_POOL_MAX',
  databaseStatementTimeoutMs: 'DATABASE_STATEMENT_TIMEOUT_MS',
  workerConcurrency: 'WORKER_CONCURRENCY',
  logLevel: 'LOG_LEVEL',
  logFormat: 'LOG_FORMAT',
  bodyLimit: 'BODY_LIMIT',
  bodyMaxDepth: 'BODY_MAX_DEPTH',
  requestTimeoutMs: 'REQUEST_TIMEOUT_MS',
  headersTimeoutMs: 'HEADERS_TIMEOUT_MS',
  keepAliveTimeoutMs: 'KEEP_ALIVE_TIMEOUT_MS',
  maxConnections: 'MAX_CONNECTIONS',
  idempotencyRetentionMs: 'IDEMPOTENCY_RETENTION_MS',
  jobRetentionMs: 'JOB_RETENTION_MS',
  sweepIntervalMs: 'SWEEP_INTERVAL_MS',
  leaseMs: 'JOB_LEASE_MS',
  pollIntervalMs: 'WORKER_POLL_MS',
  maxAttempts: 'JOB_MAX_ATTEMPTS',
  retryBaseMs: 'RETRY_BASE_MS',
  retryMaxMs: 'RETRY_MAX_MS',
  shutdownGraceMs: 'SHUTDOWN_GRACE_MS',
  busyTimeoutMs: 'DB_BUSY_TIMEOUT_MS',
  longPollMaxSeconds: 'LONG_POLL_MAX_SECONDS',
  notBeforeMaxSeconds: 'NOT_BEFORE_MAX_SECONDS',
  changeCheckMs: 'CHANGE_CHECK_MS',
  sseMaxStreamsPerPrincipal: 'SSE_MAX_STREAMS_PER_PRINCIPAL',
  sseHeartbeatMs: 'SSE_HEARTBEAT_MS',
  adminPrincipals: 'ADMIN_PRINCIPALS',
  countsCacheMs: 'COUNTS_CACHE_MS',
  metrics: 'METRICS',
  metricsToken: 'METRICS_TOKEN',
  tracing: 'TRACING',
  dashboard: 'DASHBOARD',
  dashboardPrefix: 'DASHBOARD_PREFIX',
  dashboardUser: 'DASHBOARD_USER',
  dashboardPassword: 'DASHBOARD_PASSWORD',
  dashboardReadOnly: 'DASHBOARD_READ_ONLY',
  webhookSecret: 'WEBHOOK_SECRET',
  webhookAllowedHosts: 'WEBHOOK_ALLOWED_HOSTS',
  webhookTimeoutMs: 'WEBHOOK_TIMEOUT_MS',
  webhookMaxAttempts: 'WEBHOOK_MAX_ATTEMPTS',
  webhookRetryBaseMs: 'WEBHOOK_RETRY_BASE_MS',
  webhookRetryMaxMs: 'WEBHOOK_RETRY_MAX_MS',
  notifySlackUrl: 'NOTIFY_SLACK_URL',
  notifyTimeoutMs: 'NOTIFY_TIMEOUT_MS',
  notifyMaxAttempts: 'NOTIFY_MAX_ATTEMPTS',
  notifyRetryBaseMs: 'NOTIFY_RETRY_BASE_MS',
  notifyRetryMaxMs: 'NOTIFY_RETRY_MAX_MS',
};

const MINIMUM: Partial<Record<keyof AsyncFirstConfig, number>> = {
  port: 0,
  workerConcurrency: 0,
  maxAttempts: 1,
  notifyMaxAttempts: 1,
  notifyTimeoutMs: 1,
  bodyLimit: 1,
  databasePoolMax: 1,
  databaseStatementTimeoutMs: 1,
  bodyMaxDepth: 1,
  // 0 would switch the limit off, which is what lets idle clients hold every file descriptor.
  requestTimeoutMs: 1,
  headersTimeoutMs: 1,
  keepAliveTimeoutMs: 1,
  maxConnections: 1,
  leaseMs: 100,
  pollIntervalMs: 10,
};
const FLAGS: Record<string, boolean> = { on: true, true: true, yes: true, '1': true, off: false, false: false, no: false, '0': false };
/** A path of one or more segments, no trailing slash, nothing a URL would need to escape. */
const DASHBOARD_PREFIX = /^(\/[A-Za-z0-9._~-]+)+$/;
/** Paths the server itself serves, which the dashboard may not be put over. */
const FRAMEWORK_PATHS = ['/jobs', '/openapi.json', '/openapi.yaml', '/docs', '/healthz', '/readyz', '/metrics'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** A setting that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Reads the configuration from environment variables, over the defaults. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<AsyncFirstConfig> = {}): AsyncFirstConfig {
  const config = { ...DEFAULT_CONFIG };
  for (const [field, name] of Object.entries(ENV_NAMES) as [keyof AsyncFirstConfig, string][]) {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') continue;
    if (typeof DEFAULT_CONFIG[field] === 'number') {
      const value = Number(raw);
      const minimum = MINIMUM[field] ?? 0;
      if (!Number.isInteger(value) || value < minimum) throw new ConfigError(`${name}="${raw}" must be an integer of at least ${minimum}`);
      (config[field] as number) = value;
    } else if (typeof DEFAULT_CONFIG[field] === 'boolean') {
      const value = FLAGS[raw.trim().toLowerCase()];
      if (value === undefined) throw new ConfigError(`${name}="${raw}" must be on or off (true/false, yes/no, 1/0)`);
      (config[field] as boolean) = value;
    } else {
      (config[field] as string) = raw.trim();
    }
  }
  Object.assign(config, overrides);
  if (!DASHBOARD_PREFIX.test(config.dashboardPrefix)) {
    throw new ConfigError(
      `DASHBOARD_PREFIX="${config.dashboardPrefix}" must be a path such as /dashboard (segments of letters, digits, . _ ~ -; no trailing slash)`,
    );
  }
  const taken = FRAMEWORK_PATHS.find((path) => config.dashboardPrefix === path || config.dashboardPrefix.startsWith(`${path}/`));
  if (taken) throw new ConfigError(`DASHBOARD_PREFIX="${config.dashboardPrefix}" is under ${taken}, which the server serves itself; choose another path`);
  if ((config.dashboardUser === '') !== (config.dashboardPassword === '')) throw new ConfigError('DASHBOARD_USER and DASHBOARD_PASSWORD must be set together');
  if (config.dashboardUser.includes(':')) {
    throw new ConfigError('DASHBOARD_USER must not contain ":" (HTTP basic separates the user from the password with it)');
  }
  if (!LOG_LEVELS.includes(config.logLevel)) throw new ConfigError(`LOG_LEVEL="${config.logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);
  if (config.logFormat !== 'json' && config.logFormat !== 'pretty') throw new ConfigError(`LOG_FORMAT="${config.logFormat}" must be json or pretty`);
  return config;
}
