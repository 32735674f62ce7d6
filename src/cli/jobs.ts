import { JOB_STATES, type JobState } from '../core/job-states.js';
import { ProblemError } from '../core/problems.js';
import { openJobEngine } from '../engine/open-engine.js';
import type { JobRecord, Store } from '../store/store.js';
import { databaseTarget } from './database.js';
import { CliError } from './errors.js';

/*
 * asyncfirst jobs list|show|retry|cancel: the operator's view of DATABASE_URL, through the job
 * engine (every principal's jobs, as an operator sees them over HTTP).
 */

export interface JobsListOptions {
  database?: string;
  status?: string[];
  operation?: string;
  principal?: string;
  limit?: string;
  cursor?: string;
}

/** A job as the CLI prints it: its record with the result parsed and times as ISO 8601. */
export function jobView(job: JobRecord): Record<string, unknown> {
  return {
    id: job.id,
    principal: job.principal,
    operation: job.operation,
    status: job.status,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    ...(job.cancelRequested ? { cancelRequested: true } : {}),
    ...(job.progress ? { progress: job.progress } : {}),
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(job.updatedAt).toISOString(),
    ...(job.finishedAt === undefined ? {} : { finishedAt: new Date(job.finishedAt).toISOString() }),
    ...(job.result === undefined ? {} : { result: JSON.parse(job.result) as unknown }),
    ...(job.resultLocation === undefined ? {} : { resultLocation: job.resultLocation }),
    ...(job.error === undefined ? {} : { error: job.error }),
  };
}

async function withEngine<T>(database: string | undefined, use: (store: Store) => Promise<T>): Promise<T> {
  const { config } = databaseTarget(database);
  const store = await openJobEngine({ ...config, logLevel: 'silent' });
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

/** jobs list: newest first, filtered; returns the page. */
export function listJobs(options: JobsListOptions): Promise<{ jobs: JobRecord[]; nextCursor?: string }> {
  const statuses = options.status?.map((status) => {
    if (!(JOB_STATES as readonly string[]).includes(status)) throw new CliError(`--status ${status}: use one of ${JOB_STATES.join(', ')}`, 2);
    return status as JobState;
  });
  const limit = options.limit === undefined ? undefined : Number(options.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 200)) throw new CliError(`--limit ${options.limit}: use 1 to 200`, 2);
  return withEngine(options.database, async (store) => {
    try {
      return await store.listJobs({
        ...(options.principal === undefined ? {} : { principal: options.principal }),
        ...(statuses === undefined ? {} : { statuses }),
        ...(options.operation === undefined ? {} : { operation: options.operation }),
        ...(limit === undefined ? {} : { limit }),
        ...(options.cursor === undefined ? {} : { cursor: options.cursor }),
      });
    } catch (error) {
      if (error instanceof ProblemError) throw new CliError(error.message);
      throw error;
    }
  });
}

async function owned(store: Store, id: string): Promise<string> {
  const principal = await store.jobPrincipal(id);
  if (principal === undefined) throw new CliError(`there is no job ${id}`);
  return principal;
}

export function showJob(id: string, database: string | undefined): Promise<JobRecord> {
  return withEngine(database, async (store) => {
    const job = await store.getJob(await owned(store, id), id);
    if (!job) throw new CliError(`there is no job ${id}`);
    return job;
  });
}

/** jobs retry: a failed or canceled job queued again as new. */
export function retryJob(id: string, database: string | undefined): Promise<JobRecord> {
  return withEngine(database, async (store) => {
    const outcome = await store.retryEndedJob(undefined, id, Date.now());
    if (outcome.kind === 'not-found') throw new CliError(`there is no job ${id}`);
    if (outcome.kind === 'not-retryable') throw new CliError(`job ${id} is ${outcome.job.status}: only a failed or canceled job can be retried`);
    return outcome.job;
  });
}

/** jobs cancel: a queued job is canceled at once; a running one is flagged and its handler aborted at its next lease renewal. */
export function cancelJob(id: string, database: string | undefined): Promise<{ kind: 'canceled' | 'signalled'; job: JobRecord }> {
  return withEngine(database, async (store) => {
    const outcome = await store.cancelJob(await owned(store, id), id, Date.now());
    if (outcome.kind === 'not-found') throw new CliError(`there is no job ${id}`);
    if (outcome.kind === 'finished') throw new CliError(`job ${id} has already ended (${outcome.job.status})`);
    return outcome;
  });
}

/** One line per job for a terminal. */
export function jobLine(job: JobRecord): string {
  return [job.id, job.status.padEnd(9), job.operation, job.principal, `${job.attempts}/${job.maxAttempts}`, new Date(job.createdAt).toISOString()].join('  ');
}
