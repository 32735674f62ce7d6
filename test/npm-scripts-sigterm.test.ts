import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { API_KEYS, tempDir } from './helpers.js';
import { REPO_ROOT, waitFor } from './worker-test-support.js';

/*
 * The documented commands, `npm start` and `npm run worker`, as real processes: npm runs the
 * script through a shell, so a SIGTERM sent to npm alone must still reach the server and stop it
 * gracefully, not leave it running without a parent.
 */

interface LogEntry {
  msg?: string;
  pid?: number;
  signal?: string;
  address?: string;
}

interface NpmScript {
  npm: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every JSON log line the server wrote so far. */
  log: LogEntry[];
  output(): string;
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Whether a TCP connection to 127.0.0.1:port is refused. */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

function runNpmScript(args: string[], env: Record<string, string>): NpmScript {
  const npm = spawn('npm', args, {
    cwd: REPO_ROOT,
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', API_KEYS, npm_config_update_notifier: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: LogEntry[] = [];
  let output = '';
  let partial = '';
  npm.stdout?.setEncoding('utf8');
  npm.stdout?.on('data', (chunk: string) => {
    output += chunk;
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      try {
        log.push(JSON.parse(line) as LogEntry);
      } catch {
        // npm's own lines ("> asyncfirst@… start").
      }
    }
  });
  npm.stderr?.setEncoding('utf8');
  npm.stderr?.on('data', (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    npm.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { npm, exited, log, output: () => output };
}

describe('SIGTERM to npm start / npm run worker', () => {
  const started: NpmScript[] = [];
  const serverPids: number[] = [];
  const cleanups: Array<() => void> = [];
  afterEach(async () => {
    // Whatever a failed test left behind: the server it started, then npm.
    for (const pid of serverPids.splice(0)) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    for (const script of started.splice(0)) {
      if (script.npm.exitCode === null && script.npm.signalCode === null) script.npm.kill('SIGKILL');
      await script.exited;
    }
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  async function start(args: string[], readyMessage: string, env: Record<string, string>) {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const script = runNpmScript(args, { DATABASE_URL: tmp.dbPath, ...env });
    started.push(script);
    const ready = await waitFor(
      `"${readyMessage}" from npm ${args.join(' ')}`,
      () => {
        if (script.npm.exitCode !== null) throw new Error(`npm exited early:\n${script.output()}`);
        return script.log.find((entry) => entry.msg === readyMessage);
      },
      20_000,
    );
    const serverPid = ready.pid as number;
    serverPids.push(serverPid);
    expect(serverPid).not.toBe(script.npm.pid);
    expect(isRunning(serverPid)).toBe(true);
    return { script, ready, serverPid };
  }

  async function stopWithSigterm(script: NpmScript, serverPid: number) {
    script.npm.kill('SIGTERM');
    const timeout = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 5000).unref());
    const exit = await Promise.race([script.exited, timeout]);
    // npm exits after its script does: the server is gone by now, not orphaned.
    expect(isRunning(serverPid), script.output()).toBe(false);
    expect(exit, script.output()).toEqual({ code: 0, signal: null });
    const fromServer = script.log.filter((entry) => entry.pid === serverPid).map((entry) => entry.msg);
    expect(script.log.find((entry) => entry.msg === 'shutting down')).toMatchObject({ pid: serverPid, signal: 'SIGTERM' });
    expect(fromServer.slice(-2)).toEqual(['shutting down', 'stopped']);
  }

  it('npm start: npm exits 0 within seconds, the server logged "shutting down" then "stopped", its process is gone and its port refuses connections', async () => {
    const port = await freePort();
    const { script, ready, serverPid } = await start(['start'], 'asyncfirst demo — reports listening', { PORT: String(port) });
    expect(ready.address).toBe(`http://127.0.0.1:${port}`);
    const served = await fetch(`http://127.0.0.1:${port}/jobs/unknown`, { headers: { 'x-api-key': 'key-a' } });
    expect(served.status).toBe(404);

    await stopWithSigterm(script, serverPid);
    expect(await connectionRefused(port)).toBe(true);
  });

  it('npm run worker: npm exits 0 within seconds, the worker logged "shutting down" then "stopped", and its process is gone', async () => {
    const { script, serverPid } = await start(['run', 'worker'], 'worker started', { WORKER_CONCURRENCY: '1' });
    await stopWithSigterm(script, serverPid);
  });
});
