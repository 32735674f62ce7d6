import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { JobEngine } from '../src/engine/job-engine.js';
import { PostgresDriver } from '../src/store/postgres/postgres-driver.js';
import { SQL, type Statement } from '../src/store/postgres/statements.js';
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

  it("records a transaction's events with a plan made while the event log was small that looks up each job's previous event by the primary key, never scanning the log", async () => {
    const { schema, drop } = freshSchema('af_pg_plans');
    cleanups.push(drop);
    const engine = await JobEngine.start(new PostgresDriver({ connectionString: TEST_DATABASE_URL, schema, poolMax: 2 }));
    cleanups.push(() => engine.close());
    // A few jobs accepted, claimed and finished: a log of some dozens of events, never analyzed.
    const now = Date.now();
    for (let i = 0; i < 20; i++) {
      await engine.acceptJob({ principal: 'p', operation: 'op', key: `k${i}`, fingerprint: 'f', input: '{}', maxAttempts: 3, now, keyExpiresAt: now + 60_000 });
    }
    const claimed = await engine.claimJobs({ owner: 'w', limit: 20, now: Date.now(), leaseMs: 30_000 });
    expect(claimed).toHaveLength(20);
    for (const job of claimed) expect(await engine.finishJob(job.id, job.fence, { status: 'succeeded', result: '{}' }, Date.now())).toBe(true);

    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema}` });
    await client.connect();
    cleanups.push(() => client.end());
    await client.query('SET plan_cache_mode = force_generic_plan');
    const plan = await genericPlan(client, SQL.insertEvents);
    expect(plan).toContain('Index Scan using job_events_pkey on job_events');
    expect(plan).not.toMatch(/Seq Scan on job_events|Hash Join|Merge Join/);
  });
});
