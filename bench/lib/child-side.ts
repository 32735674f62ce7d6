import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createInterface } from 'node:readline';

/*
 * The child half of the parent/child protocol. A child writes JSON lines to stdout: first its
 * announcement ({"url": …} for a server, the result for a drain), then one reply per command.
 * The parent writes commands as JSON lines ({"id": 1, "cmd": "stats"}) to the child's stdin.
 * When stdin closes (the parent exited, even by SIGKILL), the child stops: no child outlives
 * the parent. SIGTERM/SIGINT stop it gracefully too.
 */

export type CommandHandlers = Record<string, () => unknown>;

/** Writes one JSON line to the parent. */
export function announce(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** A drain child's result: what it did, and the rates the parent compares (see DrainRun). */
export function announceDrain(run: {
  system: string;
  config: string;
  concurrency: number;
  jobs: number;
  drained: number;
  seconds: number;
  fillSeconds: number;
  /** The drain's CPU time per job, µs (see DrainRun). */
  cpuUsPerJob?: number;
  /** On PostgreSQL: what the drain cost the database (see lib/postgres.ts). */
  database?: unknown;
}): void {
  const { fillSeconds, ...rest } = run;
  announce({ ...rest, jobsPerSec: run.drained / run.seconds, fillJobsPerSec: run.jobs / fillSeconds });
}

/** A child's failure, as the parent reads it. */
export function announceError(error: unknown): void {
  announce({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
}

let stopping = false;

/**
 * Serves the parent's commands and stops (runs `stop`, then exits) when the parent goes away
 * or sends SIGTERM/SIGINT. Returns nothing; the process lives until then.
 */
export function serveParent(commands: CommandHandlers, stop: () => Promise<void>): void {
  const shutdown = (code: number) => {
    if (stopping) return;
    stopping = true;
    const backstop = setTimeout(() => process.exit(code), 10_000);
    backstop.unref();
    stop().then(
      () => process.exit(code),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let request: { id?: unknown; cmd?: unknown };
    try {
      request = JSON.parse(line) as { id?: unknown; cmd?: unknown };
    } catch {
      return;
    }
    const handler = typeof request.cmd === 'string' ? commands[request.cmd] : undefined;
    if (!handler) {
      announce({ id: request.id, error: `unknown command ${String(request.cmd)}` });
      return;
    }
    Promise.resolve()
      .then(handler)
      .then(
        (result) => announce({ id: request.id, result }),
        (error: unknown) => announce({ id: request.id, error: String(error) }),
      );
  });
  lines.on('close', () => shutdown(0));
}

/** For one-shot children (drains): exit at once if the parent goes away. */
export function exitWithParent(): void {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(1));
  process.stdin.on('close', () => process.exit(1));
}

/** Reads `--name=value` arguments. */
export function argValue(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  const found = process.argv.find((argument) => argument.startsWith(prefix));
  return found === undefined ? fallback : found.slice(prefix.length);
}

/** Reads a numeric `--name=value` argument. */
export function argNumber(name: string, fallback: number): number {
  const value = Number(argValue(name, String(fallback)));
  if (!Number.isFinite(value)) throw new Error(`--${name} must be a number`);
  return value;
}

/** The resident set size of this process, in bytes. */
export function rss(): number {
  return process.memoryUsage.rss();
}

/**
 * A CPU profile of a chosen window of this process, through node:inspector: the same sampler
 * (1 ms interval) as `node --cpu-prof`, without the start-up.
 */
export function cpuProfiler(): { start(): Promise<true>; stop(file: string): Promise<string> } {
  let session: Session | undefined;
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => {
      session?.post(method, params ?? {}, (error: Error | null, result?: unknown) => (error ? reject(error) : resolve(result)));
    });
  return {
    async start() {
      session = new Session();
      session.connect();
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 1000 }); // µs, as node --cpu-prof
      await post('Profiler.start');
      return true;
    },
    async stop(file) {
      if (!session) throw new Error('no profile is running');
      const { profile } = (await post('Profiler.stop')) as { profile: unknown };
      session.disconnect();
      session = undefined;
      writeFileSync(file, JSON.stringify(profile));
      return file;
    },
  };
}
