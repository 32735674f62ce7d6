import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import type { OpenApiDocument } from '../src/contract/load.js';
import { DATABASES, taskContract } from './policy-support.js';

/*
 * x-asyncfirst retention, end to end on each driver: the running sweeper deletes an operation's
 * finished jobs after its own retention.jobs and its keys expire after its retention.keys, while
 * another operation of the same service keeps JOB_RETENTION_MS and IDEMPOTENCY_RETENTION_MS; code's
 * retention overrides the contract's field by field.
 */

const HOUR_MS = 3_600_000;

/** runTask (POST /tasks) with `retention` as its x-asyncfirst, and runChore (POST /chores), the same operation with no policy. */
function contractWithChores(retention: unknown): OpenApiDocument {
  const contract = taskContract({ retention });
  const tasks = contract.paths?.['/tasks']?.post as Record<string, unknown>;
  const { 'x-asyncfirst': _policy, ...chore } = tasks;
  (contract.paths as Record<string, unknown>)['/chores'] = { post: { ...chore, operationId: 'runChore' } };
  return contract;
}

type Handlers = Record<string, (...args: never[]) => unknown>;
const handlers: Handlers = { runTask: async () => ({ name: 'task' }), runChore: async () => ({ name: 'chore' }), previewTask: () => ({}) };

describe.each(DATABASES)("an operation's retention on $name", ({ make }) => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function submit(app: AsyncFirstApp, path: string, key: string): Promise<{ status: number; jobId: string }> {
    const response = await app.server.inject({
      method: 'POST',
      url: path,
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      payload: { name: key },
    });
    return { status: response.statusCode, jobId: response.json().job_id };
  }

  async function until(read: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!(await read())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("sweeps the operation's finished jobs and expires its keys after its own retention; the other operation keeps the global ones", async () => {
    const database = make();
    cleanups.push(database.drop);
    // The contract keeps jobs an hour and keys 0.4 s; code's jobs (0.4 s) replaces the contract's and leaves its keys.
    const app = await createAsyncFirst<Handlers>({
      contract: contractWithChores({ jobs: 3600, keys: 0.4 }),
      handlers,
      operations: { runTask: { retention: { jobs: 0.4 } } },
      config: { ...database.config, logLevel: 'silent', pollIntervalMs: 20, sweepIntervalMs: 50, jobRetentionMs: HOUR_MS, idempotencyRetentionMs: HOUR_MS },
    });
    cleanups.push(() => app.close());
    app.startBackground();

    const submittedAt = Date.now();
    const task = await submit(app, '/tasks', 'task-1');
    const chore = await submit(app, '/chores', 'chore-1');
    expect([task.status, chore.status]).toEqual([202, 202]);
    const taskKey = await app.store.getIdempotencyRecord('anonymous', 'runTask', 'task-1');
    const choreKey = await app.store.getIdempotencyRecord('anonymous', 'runChore', 'chore-1');
    // Each key's expiry was set at acceptance from its operation's retention.
    expect(taskKey?.expiresAt).toBeGreaterThanOrEqual(submittedAt + 400);
    expect(taskKey?.expiresAt).toBeLessThan(submittedAt + 5_000);
    expect(choreKey?.expiresAt).toBeGreaterThanOrEqual(submittedAt + HOUR_MS);
    // A submission from code (app.enqueue) is given its operation's key retention too.
    await app.enqueue('runTask', { body: { name: 'from code' } }, { key: 'task-enqueued' });
    expect((await app.store.getIdempotencyRecord('anonymous', 'runTask', 'task-enqueued'))?.expiresAt).toBeLessThan(submittedAt + 5_000);

    await until(async () => (await app.store.getJob('anonymous', chore.jobId))?.status === 'succeeded', "the chore's job to succeed");
    // The task's job finishes, then the sweeper deletes it, and its expired key, within its retention and a few sweeps.
    await until(async () => (await app.store.getJob('anonymous', task.jobId)) === undefined, "the task's job to be swept");
    await until(async () => (await app.store.getIdempotencyRecord('anonymous', 'runTask', 'task-1')) === undefined, "the task's key to be swept");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await app.store.getJob('anonymous', chore.jobId)).toMatchObject({ status: 'succeeded' });
    expect(await app.store.getIdempotencyRecord('anonymous', 'runChore', 'chore-1')).toEqual(choreKey);

    // The task's key is free: it makes a new job; the chore's still replays its job.
    const again = await submit(app, '/tasks', 'task-1');
    expect(again.status).toBe(202);
    expect(again.jobId).not.toBe(task.jobId);
    expect(await submit(app, '/chores', 'chore-1')).toEqual({ status: 202, jobId: chore.jobId });
  });
});
