import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, type AsyncFirstOptions, createAsyncFirst } from '../src/app.js';
import { checkContract } from '../src/cli/check.js';
import { ContractError, type OpenApiDocument } from '../src/contract/load.js';
import { tempDir } from './helpers.js';
import { taskContract } from './policy-support.js';

/*
 * x-asyncfirst on an operation: its JSON Schema stops a start on a bad value (naming the operation
 * and the field), options in code are
 * checked the same way and override the contract, and the served document keeps the extension.
 */

type Handlers = Record<string, (...args: never[]) => unknown>;
const handlers: Handlers = { runTask: async () => ({ name: 'x' }), previewTask: () => ({}) };

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(contract: OpenApiDocument, operations?: AsyncFirstOptions<Handlers>['operations']): Promise<AsyncFirstApp> {
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const app = await createAsyncFirst<Handlers>({
    contract,
    handlers,
    ...(operations ? { operations } : {}),
    config: { databaseUrl: tmp.dbPath, logLevel: 'silent', workerConcurrency: 0 },
  });
  cleanups.push(() => app.close());
  return app;
}

async function startError(contract: OpenApiDocument, operations?: AsyncFirstOptions<Handlers>['operations']): Promise<string> {
  const error = await start(contract, operations).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ContractError);
  return (error as ContractError).message;
}

describe('x-asyncfirst: a bad value stops the start, naming the operation and the field', () => {
  it.each([
    [{ timeout: 0 }, 'x-asyncfirst.timeout must be > 0 (given: 0)'],
    [{ timeout: '30s' }, 'x-asyncfirst.timeout must be number (given: "30s")'],
    [{ maxAttempts: 0 }, 'x-asyncfirst.maxAttempts must be >= 1 (given: 0)'],
    [{ maxAttempts: 2.5 }, 'x-asyncfirst.maxAttempts must be integer (given: 2.5)'],
    [{ backoff: { base: -1 } }, 'x-asyncfirst.backoff.base must be > 0 (given: -1)'],
    [{ backoff: {} }, 'x-asyncfirst.backoff must give base or max (seconds)'],
    [{ backoff: { base: 1, jitter: true } }, 'x-asyncfirst.backoff.jitter is not a known field (known: base, max)'],
    [{ backoff: { base: 10, max: 5 } }, 'backoff.max (5 s) is below backoff.base (10 s)'],
    [{ retries: 3 }, 'x-asyncfirst.retries is not a known field (known: maxAttempts, timeout, backoff, priority, concurrency, rateLimit, notify, retention)'],
    [{ retention: 3600 }, 'x-asyncfirst.retention must be object (given: 3600)'],
    [{ retention: {} }, 'x-asyncfirst.retention must give jobs or keys (seconds)'],
    [{ retention: { jobs: 0 } }, 'x-asyncfirst.retention.jobs must be > 0 (given: 0)'],
    [{ retention: { keys: '1d' } }, 'x-asyncfirst.retention.keys must be number (given: "1d")'],
    [{ retention: { jobs: 11 * 365 * 24 * 3600 } }, 'x-asyncfirst.retention.jobs must be <= 315360000'],
    [{ retention: { jobs: 60, results: 60 } }, 'x-asyncfirst.retention.results is not a known field (known: jobs, keys)'],
    [{ priority: 1.5 }, 'x-asyncfirst.priority must be integer (given: 1.5)'],
    [{ priority: 101 }, 'x-asyncfirst.priority must be <= 100 (given: 101)'],
    [{ priority: 'high' }, 'x-asyncfirst.priority must be integer (given: "high")'],
    [{ concurrency: 0 }, 'x-asyncfirst.concurrency must be >= 1 (given: 0)'],
    [{ concurrency: 2.5 }, 'x-asyncfirst.concurrency must be integer (given: 2.5)'],
    [{ rateLimit: { max: 5 } }, 'x-asyncfirst.rateLimit must give per (rateLimit is { max: starts, per: seconds })'],
    [{ rateLimit: { max: 0, per: 1 } }, 'x-asyncfirst.rateLimit.max must be >= 1 (given: 0)'],
    [{ rateLimit: { max: 1, per: 0 } }, 'x-asyncfirst.rateLimit.per must be > 0 (given: 0)'],
    [{ rateLimit: { max: 1, per: 1, burst: 2 } }, 'x-asyncfirst.rateLimit.burst is not a known field (known: max, per)'],
    [{ rateLimit: 10 }, 'x-asyncfirst.rateLimit must be object (given: 10)'],
    [{ timeout: 8 * 24 * 3600 }, 'x-asyncfirst.timeout must be <= 604800'],
    [5, 'x-asyncfirst must be object (given: 5)'],
  ])('%j', async (policy, expected) => {
    const message = await startError(taskContract(policy));
    expect(message).toContain('POST /tasks (runTask)');
    expect(message).toContain(expected);
  });

  it('refuses the extension on a synchronous operation, whose calls are no jobs', async () => {
    const contract = taskContract();
    (contract.paths?.['/tasks/preview']?.get as Record<string, unknown>)['x-asyncfirst'] = { timeout: 5 };
    const message = await startError(contract);
    expect(message).toContain('GET /tasks/preview (previewTask)');
    expect(message).toContain('asynchronous operations only');
  });

  it('is reported by asyncfirst check as an error naming the operation and the field', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const path = join(tmp.dir, 'openapi.json');
    writeFileSync(path, JSON.stringify(taskContract({ timeout: -5 })));
    const problems = await checkContract(path);
    expect(problems).toEqual([
      { severity: 'error', place: path, rule: 'asyncfirst', message: `${path}: POST /tasks (runTask): x-asyncfirst.timeout must be > 0 (given: -5)` },
    ]);
  });

  it('checks options given in code the same way, naming operations.<id>.<field>', async () => {
    expect(await startError(taskContract(), { runTask: { timeout: -1 } })).toContain('operations.runTask.timeout must be > 0 (given: -1)');
    expect(await startError(taskContract(), { runTask: { backoff: { base: 'fast' as unknown as number } } })).toContain(
      'operations.runTask.backoff.base must be number',
    );
    expect(await startError(taskContract(), { runTask: { concurrency: 0 } })).toContain('operations.runTask.concurrency must be >= 1 (given: 0)');
    expect(await startError(taskContract({ priority: 5 }), { runTask: { priority: -200 } })).toContain(
      'operations.runTask.priority must be >= -100 (given: -200)',
    );
    expect(await startError(taskContract(), { runTask: { rateLimit: { max: 2 } as never } })).toContain('operations.runTask.rateLimit must give per');
    expect(await startError(taskContract(), { runTask: { retention: 1 } as never })).toContain('operations.runTask.retention must be object (given: 1)');
    expect(await startError(taskContract({ retention: { jobs: 60 } }), { runTask: { retention: { keys: -1 } } })).toContain(
      'operations.runTask.retention.keys must be > 0 (given: -1)',
    );
  });
});

describe('x-asyncfirst in a contract that starts', () => {
  const policy = { maxAttempts: 2, timeout: 30, backoff: { base: 0.5, max: 10 } };

  it('keeps the extension in the served document (GET /openapi.json)', async () => {
    const app = await start(taskContract(policy));
    expect((app.servedDocument.paths?.['/tasks']?.post as Record<string, unknown> | undefined)?.['x-asyncfirst']).toEqual(policy);
    const served = await app.server.inject({ method: 'GET', url: '/openapi.json' });
    expect(served.statusCode).toBe(200);
    expect(served.json().paths['/tasks'].post['x-asyncfirst']).toEqual(policy);
  });

  it("stores the contract's maxAttempts with each job, and code's over it", async () => {
    const submit = async (app: AsyncFirstApp) => {
      const accepted = await app.server.inject({
        method: 'POST',
        url: '/tasks',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k1' },
        payload: { name: 'a' },
      });
      expect(accepted.statusCode).toBe(202);
      const job = await app.server.inject({ method: 'GET', url: `/jobs/${accepted.json().job_id}` });
      return job.json() as { maxAttempts: number; status: string };
    };
    expect(await submit(await start(taskContract(policy)))).toMatchObject({ status: 'queued', maxAttempts: 2 });
    expect(await submit(await start(taskContract(policy), { runTask: { maxAttempts: 7 } }))).toMatchObject({ status: 'queued', maxAttempts: 7 });
    // No extension: JOB_MAX_ATTEMPTS (5).
    expect(await submit(await start(taskContract()))).toMatchObject({ maxAttempts: 5 });
  });
});
