import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { JobEngine } from '../src/engine/job-engine.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import { SQL, type Statement } from '../src/store/postgres/statements.js';
import { acceptRequest } from './driver-support.js';
import { freshSchema, TEST_DATABASE_URL } from './postgres-support.js';

/*
 * PostgreSQL's plans for the statements the worker runs for every job. node-postgres prepares each
 * statement once per connection, and after a few executions PostgreSQL keeps one generic plan for
 * it, made with the table sizes of that moment and made again only when the tables' statistics
 * change (a VACUUM or an ANALYZE). A pool's connections make theirs in the first seconds of a new
 * schema, when every table is small and was never analyzed: the plan made then must stay cheap
 * as the tables grow, i.e. find rows through an index, never scan a table that grows with every job.
 */
describe('PostgreSQL query plans of the hot statements', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** The generic plan of `statement` on `client` (its parameters all NULL: the plan does not depend on them). */
  async function genericPlan(client: pg.Client, statement: Statement): Promise<string> {
    await client.query(`PREPARE plan_under_test AS ${statement.text}`);
    try {
      const [row] = (await client.query<{ n: number }>(`SELECT cardinality(parameter_types) AS n FROM pg_prepared_statements WHERE name = 'plan_under_test'`))
        .rows;
      const parameters = Array.from({ length: row?.n ?? 0 }, () => 'NULL').join(', ');
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN EXECUTE plan_under_test${parameters ? `(${parameters})` : ''}`);
      return rows.map((line) => line['QUERY PLAN']).join('\n');
    } finally {
      await client.query('DEALLOCATE plan_under_test');
    }
  }

  /** An engine on a schema of the test's own, with `accepted` jobs queued. */
  async function engineWithJobs(accepted: number): Promise<{ engine: JobEngine; schema: string }> {
    const { schema, drop } = freshSchema('af_pg_plans');
    cleanups.push(drop);
    const engine = await JobEngine.start(new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax: 2 }));
    cleanups.push(() => engine.close());
    await Promise.all(Array.from({ length: accepted }, (_, i) => engine.acceptJob(acceptRequest(`k${i}`))));
    return { engine, schema };
  }

  /** A connection of the test's own to `schema` that plans every prepared statement generically. */
  async function planningClient(schema: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema}` });
    await client.connect();
    cleanups.push(() => client.end());
    await client.query('SET plan_cache_mode = force_generic_plan');
    return client;
  }

  it("records a transaction's events with a plan made while the event log was small that looks up each job's previous event by the primary key, never scanning the log", async () => {
    // A few jobs accepted, claimed and finished: a log of some dozens of events, never analyzed.
    const { engine, schema } = await engineWithJobs(20);
    const claimed = await engine.claimJobs({ owner: 'w', limit: 20, now: Date.now(), leaseMs: 30_000 });
    expect(claimed).toHaveLength(20);
    for (const job of claimed) expect(await engine.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);

    const client = await planningClient(schema);
    const plan = await genericPlan(client, SQL.insertEvents);
    expect(plan).toContain('Index Scan using job_events_pkey on job_events');
    expect(plan).not.toMatch(/Seq Scan on job_events|Hash Join|Merge Join/);
  });

  it('claims due jobs with a plan made while the queue was small that walks the queue in order from its index (jobs_queued; by priority, jobs_queued_by_priority above and below 0 too), never sorting the queue', async () => {
    const { schema } = await engineWithJobs(20);
    const client = await planningClient(schema);
    /** The plan of one CTE of a claim: from its name to the next CTE's. */
    const part = (plan: string, cte: string) => plan.slice(plan.indexOf(`CTE ${cte}\n`)).split(/\n {2}CTE /)[0] as string;
    const plain = await genericPlan(client, SQL.claimJobs);
    expect(part(plain, 'due')).toMatch(/LockRows[^\n]*\n\s*-> {2}Index Scan using jobs_queued on jobs/);
    expect(part(plain, 'due')).not.toContain('Sort');
    const byPriority = await genericPlan(client, SQL.claimJobsByPriority);
    expect(part(byPriority, 'due_above')).toMatch(/Index Scan using jobs_queued_by_priority on jobs[^\n]*\n\s*Index Cond: \(\(priority > 0\)/);
    expect(part(byPriority, 'due_plain')).toMatch(/Index Scan using jobs_queued on jobs/);
    expect(part(byPriority, 'due_below')).toMatch(/Index Scan using jobs_queued_by_priority on jobs[^\n]*\n\s*Index Cond: \(\(priority < 0\)/);
    for (const cte of ['due_above', 'due_plain', 'due_below']) expect(part(byPriority, cte)).not.toContain('Sort');
  });

  it('claims past the index entries of finished jobs whose leases lapsed since: a probe that marks them dead gates the reads of lapsed leases, so what a claim reads stops growing with the jobs finished since the last vacuum', async () => {
    // 10,000 jobs claimed with a lease of 1 ms in one claim and finished: the versions they ran in,
    // dead now, stay in jobs_leased with their lapsed leases until a vacuum. (With fewer, the plan
    // made for the small table reads jobs_leased by plain index scans, which mark them dead too.)
    const jobs = 10_000;
    const { engine, schema } = await engineWithJobs(jobs);
    const claimed = await engine.claimJobs({ owner: 'w', limit: jobs, now: Date.now(), leaseMs: 1 });
    expect(claimed).toHaveLength(jobs);
    const finished = await Promise.all(claimed.map((job) => engine.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, Date.now())));
    expect(finished.every(Boolean)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 20));

    const client = await planningClient(schema);
    const plan = await genericPlan(client, SQL.claimJobs);
    expect(plan).toMatch(/CTE lapsed\n.*\n.*\n\s*-> {2}Index (Only )?Scan using jobs_leased/);
    expect(plan.match(/One-Time Filter/g)).toHaveLength(3);

    // Buffers a claim reads (rolled back). Once a probe has marked the dead entries (as soon as no
    // snapshot in the cluster can still see their rows), a claim reads some 50 pages (the queue's
    // and the leases' index pages): the three bitmap scans read some 700, every claim, until a vacuum.
    await client.query(`PREPARE claim_under_test AS ${SQL.claimJobs.text}`);
    const buffersOfClaim = async () => {
      await client.query('BEGIN');
      try {
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN (ANALYZE, BUFFERS) EXECUTE claim_under_test('w2', 30000, ${Date.now()}, 100, '{}', '{}')`,
        );
        return Number(/Buffers: shared hit=(\d+)/.exec(rows.map((line) => line['QUERY PLAN']).join('\n'))?.[1]);
      } finally {
        await client.query('ROLLBACK');
      }
    };
    let buffers = await buffersOfClaim();
    for (let tries = 0; buffers >= 200 && tries < 100; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      buffers = await buffersOfClaim();
    }
    expect(buffers).toBeLessThan(200);
  }, 30_000);
});
