// Drain: N jobs already in graphile-worker 0.17's queue (WorkerUtils.addJobs, in batches of 1,000),
// a no-op task, one runner with `concurrency` jobs at once; one process. --local-queue=<size> turns
// on graphile-worker's batching (a local queue of that many jobs fetched and locked at once, and
// completions written together): its own advice for many short jobs. graphile-worker deletes a job
// when it completes, so "done" is "no job left". Its schema is this child's own, dropped at the end.
// Like asyncfirst's drain child on PostgreSQL, it reports the round trips the drain sent, by
// statement, and the CPU time of the backends serving it.

import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import pg from 'pg';
import { announceDrain, announceError, argNumber, exitWithParent } from '../lib/child-side.js';
import { benchSchemaName, countQueries, dropSchema, namedConnectionUrl, startDatabaseWindow } from '../lib/postgres.js';
import { PG_URL, REPORT_BODY } from '../lib/shared.js';

exitWithParent();
const jobs = argNumber('jobs', 1000);
const concurrency = argNumber('concurrency', 8);
const localQueue = argNumber('local-queue', 0);
const timeoutMs = argNumber('timeout', 120) * 1000;
const schema = benchSchemaName('graphile');
const connectionString = namedConnectionUrl(schema);
const queries = countQueries(schema);

// graphile-worker logs through @graphile/logger; the benchmark's children print only their result.
const silent = new Logger(() => () => {});

try {
  const utils = await makeWorkerUtils({ connectionString, schema, logger: silent });
  await utils.migrate();
  const fillStart = performance.now();
  for (let first = 0; first < jobs; first += 1000) {
    const count = Math.min(1000, jobs - first);
    await utils.addJobs(
      Array.from({ length: count }, (_, i) => ({ identifier: 'createReport', payload: { principal: 'bench', key: `drain-${first + i}`, body: REPORT_BODY } })),
    );
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;

  let handled = 0;
  let allHandled: () => void = () => {};
  const everyTaskRan = new Promise<void>((resolve) => {
    allHandled = resolve;
  });
  const window = await startDatabaseWindow(schema, queries);
  const start = performance.now();
  const deadline = Date.now() + timeoutMs;
  const runner = await run({
    connectionString,
    schema,
    concurrency,
    maxPoolSize: Math.max(10, concurrency + 2),
    noHandleSignals: true,
    logger: silent,
    taskList: {
      createReport: async () => {
        if (++handled === jobs) allHandled();
      },
    },
    ...(localQueue > 0 ? { preset: { worker: { localQueue: { size: localQueue }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } } } : {}),
  });
  await Promise.race([everyTaskRan, new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
  const database = await window.stop();
  // A task's completion is written after it returns: poll, on a connection of the benchmark's own, until no job is left.
  const counter = new pg.Client({ connectionString: PG_URL });
  await counter.connect();
  const countLeft = async () => Number((await counter.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}"._private_jobs`)).rows[0]?.n ?? jobs);
  let left = await countLeft();
  while (left > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    left = await countLeft();
  }
  const seconds = (performance.now() - start) / 1000;
  await counter.end();
  await runner.stop();
  await utils.release();
  announceDrain({
    system: 'graphile',
    config: `concurrency ${concurrency}${localQueue > 0 ? `, localQueue ${localQueue}, batched completion` : ''}`,
    concurrency,
    jobs,
    drained: jobs - left,
    seconds,
    fillSeconds,
    database,
  });
} catch (error) {
  announceError(error);
} finally {
  await dropSchema(schema).catch((error: unknown) => console.error(`dropping ${schema}: ${(error as Error).message}`));
  process.exit(0);
}
