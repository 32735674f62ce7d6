// asyncfirst as a server child.
//   BENCH_MODE=demo     the demo service (createDemo), worker concurrency BENCH_WORKER_CONCURRENCY (default 0: no worker)
//   BENCH_MODE=latency  the demo contract with a no-op createReport that records when each job's handler starts,
//                       and an onResponse hook that records when each 202 was sent; the "latency" command reports
//                       the distribution of (handler start - 202 sent) and (handler start - request arrival).
// BENCH_DB is the SQLite file (the parent creates and removes its folder); BENCH_DB=postgres runs on PostgreSQL
// instead, in a schema this child creates and drops when it stops (DATABASE_POOL_MAX connections, the default 10).
// BENCH_PROFILE_FILE is where the profile-stop command writes the CPU profile started by profile-start.
// On PostgreSQL, db-start / db-stop measure a window: the queries this process sent, by statement, the CPU
// time of the PostgreSQL backends serving it, the notifications sent on asyncfirst's channel, and this process's own CPU time.
import type { FastifyRequest } from 'fastify';
import type { operations } from '../../generated/api.js';
import { type AsyncFirstApp, createAsyncFirst } from '../../src/app.js';
import { createDemo, demoSecurity, parseApiKeys, reportHandlers } from '../../src/demo/service.js';
import type { Handlers } from '../../src/handlers.js';
import { announce, cpuProfiler, rss, serveParent } from '../lib/child-side.js';
import { asyncfirstChannel, benchSchemaName, countQueries, type DatabaseWindow, dropSchema, namedConnectionUrl, startDatabaseWindow } from '../lib/postgres.js';
import { BENCH_API_KEYS, CONTRACT_PATH, noopReport } from '../lib/shared.js';
import { summarize } from '../lib/stats.js';

const mode = process.env.BENCH_MODE ?? 'demo';
const database = process.env.BENCH_DB;
if (!database) throw new Error('BENCH_DB must name the SQLite file, or be "postgres"');
const schema = database === 'postgres' ? benchSchemaName('server') : undefined;
const queries = schema ? countQueries(schema) : undefined;
const config = {
  databaseUrl: schema ? namedConnectionUrl(schema) : database,
  ...(schema ? { databaseSchema: schema } : {}),
  workerConcurrency: Number(process.env.BENCH_WORKER_CONCURRENCY ?? 0),
  logLevel: 'silent',
  port: 0,
  host: '127.0.0.1',
};

const handlerStarted = new Map<string, number>();
const responseSent = new Map<string, number>();
const requestArrived = new Map<string, number>();
const arrival = new WeakMap<FastifyRequest, number>();

let app: AsyncFirstApp;
if (mode === 'demo') {
  app = await createDemo({ apiKeys: BENCH_API_KEYS, config });
} else if (mode === 'latency') {
  const handlers: Handlers<operations> = {
    createReport({ body }, { job }) {
      if (job) handlerStarted.set(job.id, performance.now());
      return noopReport(body);
    },
    estimateReport({ query }) {
      return { rows: query.rows, format: query.format ?? 'csv', estimatedBytes: 0 };
    },
    indexReport: reportHandlers.indexReport,
  };
  app = await createAsyncFirst({ contract: CONTRACT_PATH, handlers, security: demoSecurity(parseApiKeys(BENCH_API_KEYS)), config });
  // Hooks can still be added: app.server is built but not ready until listen().
  app.server.addHook('onRequest', async (request) => {
    arrival.set(request, performance.now());
  });
  app.server.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode !== 202) return;
    const id = reply.getHeader('x-job-id');
    if (typeof id !== 'string') return;
    responseSent.set(id, performance.now());
    const arrived = arrival.get(request);
    if (arrived !== undefined) requestArrived.set(id, arrived);
  });
} else {
  throw new Error(`unknown BENCH_MODE ${mode}`);
}

function latency() {
  const fromResponse: number[] = [];
  const fromArrival: number[] = [];
  for (const [id, sent] of responseSent) {
    const started = handlerStarted.get(id);
    if (started === undefined) continue;
    fromResponse.push(started - sent);
    const arrived = requestArrived.get(id);
    if (arrived !== undefined) fromArrival.push(started - arrived);
  }
  // Map keeps insertion order, i.e. the order the 202s were sent: a backlog that grows shows as
  // a last third much slower than the first.
  const third = Math.floor(fromResponse.length / 3);
  return {
    accepted: responseSent.size,
    started: handlerStarted.size,
    fromResponse: summarize(fromResponse),
    fromArrival: summarize(fromArrival),
    handlerBeforeResponse: fromResponse.filter((delta) => delta < 0).length,
    p50FirstThird: summarize(fromResponse.slice(0, third)).p50,
    p50LastThird: summarize(fromResponse.slice(fromResponse.length - third)).p50,
  };
}

// CPU profile of a chosen window (the parent starts it after warm-up): like --cpu-prof, without the start-up.
const profiler = cpuProfiler();
function stopProfile() {
  const file = process.env.BENCH_PROFILE_FILE;
  if (!file) throw new Error('BENCH_PROFILE_FILE is unset');
  return profiler.stop(file);
}

const url = await app.listen();
function reset() {
  handlerStarted.clear();
  responseSent.clear();
  requestArrived.clear();
  return true;
}

// A window of database work (PostgreSQL only): queries sent, backend CPU, this process's CPU.
let window: { stop(): Promise<DatabaseWindow> } | undefined;
async function databaseStart() {
  if (!schema || !queries) throw new Error('db-start needs BENCH_DB=postgres');
  window = await startDatabaseWindow(schema, queries, asyncfirstChannel(schema));
  return true;
}
function databaseStop(): Promise<DatabaseWindow> {
  if (!window) throw new Error('db-stop without db-start');
  return window.stop();
}

serveParent(
  {
    rss,
    latency,
    reset,
    // This process's CPU time so far (user and system, every thread), µs: the parent takes the difference over a window.
    cpu: () => process.cpuUsage(),
    'profile-start': () => profiler.start(),
    'profile-stop': stopProfile,
    'db-start': databaseStart,
    'db-stop': databaseStop,
  },
  async () => {
    await app.close();
    if (schema) await dropSchema(schema);
  },
);
announce({ url, pid: process.pid });
