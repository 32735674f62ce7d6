/** Runtime settings; every field maps to one environment variable (see the README's table). */
export interface AsyncFirstConfig {
  /** PORT: the TCP port to listen on. */
  port: number;
  /** HOST: the address to listen on. */
  host: string;
  /** DATABASE_URL: an SQLite file path or file: URL. */
  databaseUrl: string;
  /** WORKER_CONCURRENCY: jobs this process runs at once; 0 runs no worker here. */
  workerConcurrency: number;
  /** LOG_LEVEL: pino level (fatal, error, warn, info, debug, trace, silent). */
  logLevel: string;
  /** BODY_LIMIT: the largest request body, in bytes. */
  bodyLimit: number;
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
}

export const DEFAULT_CONFIG: AsyncFirstConfig = {
  port: 3000,
  host: '127.0.0.1',
  databaseUrl: './data/asyncfirst.db',
  workerConcurrency: 4,
  logLevel: 'info',
  bodyLimit: 1024 * 1024,
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
};

const ENV_NAMES: Record<keyof AsyncFirstConfig, string> = {
  port: 'PORT',
  host: 'HOST',
  databaseUrl: 'DATABASE_URL',
  workerConcurrency: 'WORKER_CONCURRENCY',
  logLevel: 'LOG_LEVEL',
  bodyLimit: 'BODY_LIMIT',
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
};

const MINIMUM: Partial<Record<keyof AsyncFirstConfig, number>> = {
  port: 0,
  workerConcurrency: 0,
  maxAttempts: 1,
  bodyLimit: 1,
  leaseMs: 100,
  pollIntervalMs: 10,
};
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
    } else {
      (config[field] as string) = raw.trim();
    }
  }
  Object.assign(config, overrides);
  if (!LOG_LEVELS.includes(config.logLevel)) throw new ConfigError(`LOG_LEVEL="${config.logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);
  return config;
}
