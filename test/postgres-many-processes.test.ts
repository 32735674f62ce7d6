import { type ClientRequest, get as httpGet } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE } from './helpers.js';
import { freshSchema, queryPostgres, TEST_DATABASE_URL } from './postgres-support.js';
import { SseReader } from './sse-reader.js';
import { type DemoProcess, killDemoProcess, sleep, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * Many machines on one PostgreSQL database, as real processes: two API processes that run no
 * worker and two worker processes, all on one schema. Handlers record each run in a table of the
 * test's own, so "ran exactly once" is counted, not assumed.
 */

const SCRIPT = 'test/fixtures/slow-service.ts';
const { schema, drop } = freshSchema('af_many');
const SIDE_EFFECTS = `${schema}_side_effects.runs`;

interface Cluster {
  api: [DemoProcess & { address: string }, DemoProcess & { address: string }];
  workers: DemoProcess[];
}

function environment(extra: Record<string, string>): Record<string, string> {
  return {
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_SCHEMA: schema,
    SIDE_EFFECTS_DATABASE_URL: TEST_DATABASE_URL,
    SIDE_EFFECTS_TABLE: SIDE_EFFECTS,
    WORKER_POLL_MS: '200',
    // Long enough that a busy machine's stalls never let a live worker's lease lapse (a lapse means
    // the job may run again, which the exactly-once count below would report); short enough for the
    // SIGKILL test's takeover.
    JOB_LEASE_MS: '6000',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

async function startApi(): Promise<DemoProcess & { address: string }> {
  // The version check runs rarely here (8 × 5 s): a prompt wake-up can only come from NOTIFY.
  const api = await startDemoProcess('serve', environment({ WORKER_CONCURRENCY: '0', CHANGE_CHECK_MS: '5000', LOG_LEVEL: 'info' }), { script: SCRIPT });
  if (!api.address) throw new Error('the API process logged no address');
  return api as DemoProcess & { address: string };
}

function startWorker(concurrency: number): Promise<DemoProcess> {
  return startDemoProcess('worker', environment({ WORKER_CONCURRENCY: String(concurrency), LOG_LEVEL: 'info' }), { script: SCRIPT });
}

async function submit(address: string, key: string, rows: number): Promise<{ status: number; jobId?: string; headers: Headers }> {
  const response = await fetch(`${address}/reports`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
    body: JSON.stringify({ title: key, rows }),
  });
  const body = (await response.json()) as { job_id?: string };
  return { status: response.status, headers: response.headers, ...(body.job_id ? { jobId: body.job_id } : {}) };
}

async function statuses(ids: string[]): Promise<Map<string, string>> {
  const rows = await queryPostgres<{ id: string; status: string }>(schema, 'SELECT id, status FROM jobs WHERE id = ANY($1)', [ids]);
  return new Map(rows.map((row) => [row.id, row.status]));
}

async function runsOf(ids: string[]): Promise<Map<string, number>> {
  const rows = await queryPostgres<{ job_id: string; runs: number }>(
    schema,
    `SELECT job_id, count(*)::int AS runs FROM ${SIDE_EFFECTS} WHERE job_id = ANY($1) GROUP BY job_id`,
    [ids],
  );
  return new Map(rows.map((row) => [row.job_id, row.runs]));
}

async function allSucceeded(ids: string[], timeoutMs: number): Promise<void> {
  await waitFor(
    `${ids.length} jobs to succeed`,
    async () => {
      const now = await statuses(ids);
      return ids.every((id) => now.get(id) === 'succeeded') ? true : undefined;
    },
    timeoutMs,
    200,
  );
}

describe('several API and worker processes on one PostgreSQL database', () => {
  let cluster: Cluster;
  /** The API processes take turns. */
  const apiAddress = (turn: number) => cluster.api[turn % 2 === 0 ? 0 : 1].address;
  beforeAll(async () => {
    await queryPostgres('public', `CREATE SCHEMA "${schema}_side_effects"`);
    await queryPostgres(
      'public',
      `CREATE TABLE ${SIDE_EFFECTS} (job_id text NOT NULL, attempt integer NOT NULL, pid integer NOT NULL, at timestamptz DEFAULT clock_timestamp())`,
    );
    // The first process applies the migrations; the others find them applied.
    const first = await startApi();
    const [second, ...workers] = await Promise.all([startApi(), startWorker(8), startWorker(8)]);
    cluster = { api: [first, second as DemoProcess & { address: string }], workers };
  }, 60_000);
  afterAll(async () => {
    for (const process of [...(cluster?.api ?? []), ...(cluster?.workers ?? [])]) await killDemoProcess(process);
    await queryPostgres('public', `DROP SCHEMA IF EXISTS "${schema}_side_effects" CASCADE`);
    await drop();
  });

  it('makes exactly one job of 40 concurrent submissions with one key spread over both API processes, and every answer names it', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => submit(apiAddress(i), 'one-key-40-times', 5)));
    expect(answers.map((answer) => answer.status)).toEqual(Array(40).fill(202));
    const ids = new Set(answers.map((answer) => answer.jobId));
    expect(ids.size).toBe(1);
    expect(answers.filter((answer) => answer.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    const jobs = await queryPostgres<{ n: number }>(schema, `SELECT count(*)::int AS n FROM jobs WHERE id = ANY($1)`, [[...ids]]);
    expect(jobs[0]?.n).toBe(1);
    const keyed = await queryPostgres<{ n: number }>(schema, `SELECT count(*)::int AS n FROM idempotency_keys WHERE key = 'one-key-40-times'`);
    expect(keyed[0]?.n).toBe(1);
  });

  it('runs each of 1,000 submissions spread over both API processes exactly once, on both workers', async () => {
    const ids: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < 1000) {
          const i = next++;
          const answer = await submit(apiAddress(i), `bulk-${i}`, 1);
          expect(answer.status).toBe(202);
          ids.push(answer.jobId as string);
        }
      }),
    );
    expect(new Set(ids).size).toBe(1000);
    await allSucceeded(ids, 60_000);
    const runs = await runsOf(ids);
    expect(runs.size).toBe(1000);
    expect([...runs.values()].every((count) => count === 1)).toBe(true);
    const byWorker = await queryPostgres<{ pid: number }>(schema, `SELECT DISTINCT pid FROM ${SIDE_EFFECTS} WHERE job_id = ANY($1)`, [ids]);
    expect(byWorker.map((row) => row.pid).sort()).toEqual(cluster.workers.map((worker) => worker.child.pid).sort());
  });

  it('streams every event of the jobs workers ran, submitted to API process B, to one GET /jobs/events client of API process A, woken by NOTIFY', async () => {
    const { reader, request } = await new Promise<{ reader: SseReader; request: ClientRequest }>((resolve, reject) => {
      const request = httpGet(`${cluster.api[0].address}/jobs/events`, { headers: ALICE, agent: false }, (response) => {
        expect(response.statusCode).toBe(200);
        resolve({ reader: new SseReader(response, request), request });
      });
      request.on('error', reject);
    });
    try {
      // The stream's first line is the cursor it starts after: jobs submitted from now on are in it.
      expect(await reader.next()).toMatchObject({ kind: 'event', event: undefined });
      const submitted = await Promise.all([0, 1, 2].map((i) => submit(cluster.api[1].address, `every-${i}`, 300)));
      const ids = submitted.map((answer) => answer.jobId as string);
      const seen = new Map<string, string[]>(ids.map((id) => [id, []]));
      const started = Date.now();
      // API process A checks versions only every 40 s here: the events arrive because NOTIFY wakes its stream.
      while ([...seen.values()].some((types) => types.at(-1) !== 'job.succeeded')) {
        const item = await reader.next();
        if (!item) throw new Error('the stream ended');
        if (item.kind !== 'event' || item.event === undefined) continue;
        seen.get((JSON.parse(item.data) as { id: string }).id)?.push(item.event);
      }
      expect(Date.now() - started).toBeLessThan(15_000);
      for (const id of ids) expect(seen.get(id)).toEqual(['job.queued', 'job.running', 'job.succeeded']);
      const workers = await queryPostgres<{ pid: number }>(schema, `SELECT DISTINCT pid FROM ${SIDE_EFFECTS} WHERE job_id = ANY($1)`, [ids]);
      expect(workers.every((row) => cluster.workers.some((worker) => worker.child.pid === row.pid))).toBe(true);
    } finally {
      request.destroy();
    }
  });

  it('streams every event of a job a worker ran to an SSE client of API process A, and answers Prefer: wait on process B within 1 s of the finish', async () => {
    const { jobId } = await submit(cluster.api[0].address, 'watched', 1500);
    if (!jobId) throw new Error('no job id');
    const stream = fetch(`${cluster.api[0].address}/jobs/${jobId}/events`, { headers: ALICE }).then((response) => response.text());
    const waited = fetch(`${cluster.api[1].address}/jobs/${jobId}`, { headers: { ...ALICE, prefer: 'wait=20' } }).then(async (response) => ({
      at: Date.now(),
      status: response.status,
      body: (await response.json()) as { status: string },
    }));
    const answer = await waited;
    expect(answer.status).toBe(200);
    expect(answer.body.status).toBe('succeeded');
    const [row] = await queryPostgres<{ finished_at: number }>(schema, 'SELECT finished_at::float8 AS finished_at FROM jobs WHERE id = $1', [jobId]);
    expect(answer.at - (row?.finished_at ?? 0)).toBeLessThan(1000);
    const text = await stream;
    const events = [...text.matchAll(/^id: (\d+)\nevent: ([\w.]+)$/gm)].map((match) => [Number(match[1]), match[2]]);
    const stored = await queryPostgres<{ version: number; type: string }>(schema, 'SELECT version, type FROM job_events WHERE job_id = $1 ORDER BY version', [
      jobId,
    ]);
    // The acceptance is the log's row of version 0; every later event is the row of its version.
    expect(stored[0]).toEqual({ version: 0, type: 'job.queued' });
    expect(events).toEqual(stored.map((event) => [event.version, event.type]));
    expect(events.at(-1)?.[1]).toBe('job.succeeded');
  });

  it('takes over the jobs of a worker killed with SIGKILL after their lease, and runs no succeeded job again', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const answer = await submit(apiAddress(i), `crash-${i}`, 1500);
      ids.push(answer.jobId as string);
    }
    const victim = cluster.workers[0] as DemoProcess;
    // Wait until the victim holds some of them, then kill it without warning.
    await waitFor(
      'the first worker to run some of the jobs',
      async () => {
        const rows = await queryPostgres<{ n: number }>(schema, `SELECT count(*)::int AS n FROM ${SIDE_EFFECTS} WHERE job_id = ANY($1) AND pid = $2`, [
          ids,
          victim.child.pid,
        ]);
        return (rows[0]?.n ?? 0) > 0 ? true : undefined;
      },
      10_000,
      50,
    );
    await killDemoProcess(victim);
    await allSucceeded(ids, 30_000);
    const heldByVictim = await queryPostgres<{ job_id: string }>(schema, `SELECT DISTINCT job_id FROM ${SIDE_EFFECTS} WHERE job_id = ANY($1) AND pid = $2`, [
      ids,
      victim.child.pid,
    ]);
    expect(heldByVictim.length).toBeGreaterThan(0);
    const attempts = await queryPostgres<{ id: string; attempts: number }>(schema, 'SELECT id, attempts FROM jobs WHERE id = ANY($1)', [ids]);
    const runs = await runsOf(ids);
    for (const { id, attempts: count } of attempts) expect({ id, runs: runs.get(id) }).toEqual({ id, runs: count });
    for (const { job_id } of heldByVictim) expect(attempts.find((row) => row.id === job_id)?.attempts).toBe(2);
    // Nothing runs again once succeeded.
    await sleep(2500);
    expect(await runsOf(ids)).toEqual(runs);
    // A new worker in its place keeps the cluster at two.
    cluster.workers[0] = await startWorker(8);
  });
});
