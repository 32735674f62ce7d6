import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PG_URL } from './shared.js';

/*
 * The benchmark's PostgreSQL schemas: every child that uses PostgreSQL makes a schema of its
 * own, named for its pid (asyncfirst_bench_<pid>_<label>_<hex>), and drops it when it ends; the
 * parent drops at start what a child killed by SIGKILL left. Its connections carry the schema's
 * name as application_name, so that the CPU time of the PostgreSQL backends serving them can be
 * read from /proc (the database shares the machine's cores with everything measured).
 */

const SCHEMA_PREFIX = 'asyncfirst_bench_';

/** A new schema name for this process (a plain identifier under PostgreSQL's 63-byte limit). */
export function benchSchemaName(label: string): string {
  return `${SCHEMA_PREFIX}${process.pid}_${label.replace(/\W/g, '_').slice(0, 20)}_${randomBytes(4).toString('hex')}`;
}

/** The channel asyncfirst's PostgreSQL driver NOTIFYs on for a schema (its commits announce themselves there). */
export function asyncfirstChannel(schema: string): string {
  return `asyncfirst_${schema}`;
}

/** PG_URL with the connections named `applicationName` in pg_stat_activity. */
export function namedConnectionUrl(applicationName: string): string {
  const url = new URL(PG_URL);
  url.searchParams.set('application_name', applicationName);
  return url.toString();
}

/** Runs `work` on one short-lived connection. */
export async function withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Drops a schema and everything in it. */
export function dropSchema(schema: string): Promise<void> {
  if (!schema.startsWith(SCHEMA_PREFIX)) throw new Error(`refusing to drop ${schema}: not a benchmark schema`);
  return withClient(async (client) => {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Drops the benchmark schemas whose process is gone (a child killed before it could drop its own). */
export async function dropLeftoverSchemas(): Promise<string[]> {
  return withClient(async (client) => {
    const { rows } = await client.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE '${SCHEMA_PREFIX}%'`);
    const dropped: string[] = [];
    for (const { nspname } of rows) {
      const pid = Number(/^asyncfirst_bench_(\d+)_/.exec(nspname)?.[1]);
      if (!pid || alive(pid)) continue;
      await client.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
      dropped.push(nspname);
    }
    return dropped;
  });
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ: 100 on every Linux platform Node supports). */
const USER_HZ = 100;

function cpuSecondsOf(pid: number): number | undefined {
  try {
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds used so far by the PostgreSQL backends serving connections named
 * `applicationName`, per backend pid (Linux, with the database on this machine; empty otherwise).
 */
export async function backendCpu(applicationName: string): Promise<Map<number, number>> {
  const pids = await withClient(
    async (client) => (await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rows,
  );
  const cpu = new Map<number, number>();
  for (const { pid } of pids) {
    const seconds = cpuSecondsOf(pid);
    if (seconds !== undefined) cpu.set(pid, seconds);
  }
  return cpu;
}

/** CPU seconds the backends used between two readings of backendCpu (a backend opened in between counts from zero). */
function backendCpuBetween(before: Map<number, number>, after: Map<number, number>): { seconds: number; backends: number } {
  let seconds = 0;
  for (const [pid, total] of after) seconds += total - (before.get(pid) ?? 0);
  return { seconds, backends: after.size };
}

/** What a window of work cost on the database side, and this process's own CPU time over it. */
export interface DatabaseWindow {
  seconds: number;
  /** Round trips this process's named connections sent, all and by statement. */
  queries: number;
  byStatement: Record<string, number>;
  /** Milliseconds from sending to answer, summed by statement (a round trip's latency, the database's work included). */
  queryMs: Record<string, number>;
  /** Notifications sent on the channel listened to (one per committed transaction that NOTIFYs); undefined when no channel was given. */
  notifications?: number;
  /** CPU seconds of the PostgreSQL backends serving this process's connections (0 where /proc cannot tell). */
  backendCpuSeconds: number;
  backends: number;
  /** CPU seconds of this process (user + system). */
  processCpuSeconds: number;
  /** Cores the whole machine kept busy over the window, every process counted, this run's and others' (/proc/stat; undefined elsewhere). */
  machineBusyCores?: number;
}

/** Busy and total CPU time of the machine so far, in seconds (the first line of /proc/stat). */
export function readMachineCpu(): { busy: number; total: number } | undefined {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
    const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0); // idle + iowait
    return { busy: (total - idle) / USER_HZ, total: total / USER_HZ };
  } catch {
    return undefined;
  }
}

/** Cores the machine kept busy between two readings of machineCpu. */
export function machineBusyCoresSince(before: ReturnType<typeof readMachineCpu>, seconds: number): number | undefined {
  const after = readMachineCpu();
  return before && after && seconds > 0 ? (after.busy - before.busy) / seconds : undefined;
}

/**
 * Starts measuring a window: resets the query count, reads the backends' and this process's
 * CPU time and, given a channel, LISTENs on it (on a connection of its own) to count what was
 * notified.
 */
export async function startDatabaseWindow(applicationName: string, queries: QueryCounter, channel?: string): Promise<{ stop(): Promise<DatabaseWindow> }> {
  let notifications = 0;
  const listener = channel ? new pg.Client({ connectionString: PG_URL }) : undefined;
  if (listener) {
    await listener.connect();
    listener.on('notification', () => {
      notifications++;
    });
    await listener.query(`LISTEN "${channel}"`);
  }
  queries.reset();
  const backends = await backendCpu(applicationName);
  const cpu = process.cpuUsage();
  const machine = readMachineCpu();
  const began = performance.now();
  return {
    async stop() {
      const counted = queries.snapshot();
      const used = process.cpuUsage(cpu);
      const seconds = (performance.now() - began) / 1000;
      const machineBusyCores = machineBusyCoresSince(machine, seconds);
      const heard = notifications;
      await listener?.end();
      const after = backendCpuBetween(backends, await backendCpu(applicationName));
      return {
        seconds,
        queries: counted.total,
        byStatement: Object.fromEntries(counted.byStatement),
        queryMs: Object.fromEntries(counted.msByStatement),
        ...(listener ? { notifications: heard } : {}),
        backendCpuSeconds: after.seconds,
        backends: after.backends,
        processCpuSeconds: (used.user + used.system) / 1e6,
        ...(machineBusyCores === undefined ? {} : { machineBusyCores }),
      };
    },
  };
}

export interface QueryCount {
  /** All round trips (one per client.query). */
  total: number;
  /** By statement: BEGIN, COMMIT, a named statement's name, or the first word of the text. */
  byStatement: Map<string, number>;
  /** Milliseconds from sending to answer, summed by statement. */
  msByStatement: Map<string, number>;
}

export interface QueryCounter {
  snapshot(): QueryCount;
  reset(): void;
}

/**
 * Counts every query node-postgres sends on connections named `applicationName` (those of the
 * system measured, not the benchmark's own), by statement: each is one round trip, as a
 * pg.Client sends its next query only when the last one has been answered. Installed before any
 * pool connects.
 */
export function countQueries(applicationName: string): QueryCounter {
  const byStatement = new Map<string, number>();
  const msByStatement = new Map<string, number>();
  let total = 0;
  // A reset bumps the generation: a query sent before it is not timed into the new window.
  let generation = 0;
  const prototype = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = prototype.query;
  prototype.query = function countedQuery(this: { connectionParameters?: { application_name?: string } }, ...args: unknown[]) {
    if (this.connectionParameters?.application_name === applicationName) {
      const [first] = args;
      const { name, text } = (typeof first === 'object' && first !== null ? first : { text: first }) as { name?: unknown; text?: unknown };
      // A prepared statement by its name (without a schema in it), any other text by its first word.
      const label =
        typeof name === 'string'
          ? name.replace(/\/?asyncfirst_bench_\w+/g, '')
          : typeof text === 'string'
            ? (text.trim().split(/\s+/)[0] ?? '?').toUpperCase()
            : '?';
      total++;
      byStatement.set(label, (byStatement.get(label) ?? 0) + 1);
      const sent = performance.now();
      const of = generation;
      const answered = () => {
        if (of === generation) msByStatement.set(label, (msByStatement.get(label) ?? 0) + performance.now() - sent);
      };
      // pg-pool passes a callback (client.query returns nothing then); a direct caller gets a promise.
      const last = args[args.length - 1];
      if (typeof last === 'function') {
        const callback = last as (...results: unknown[]) => unknown;
        args[args.length - 1] = (...results: unknown[]) => {
          answered();
          return callback(...results);
        };
      }
      const result = original.apply(this, args);
      if (typeof (result as Promise<unknown> | undefined)?.then === 'function') (result as Promise<unknown>).then(answered, answered);
      return result;
    }
    return original.apply(this, args);
  };
  return {
    snapshot: () => ({ total, byStatement: new Map(byStatement), msByStatement: new Map(msByStatement) }),
    reset: () => {
      total = 0;
      generation++;
      byStatement.clear();
      msByStatement.clear();
    },
  };
}
