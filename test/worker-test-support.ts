import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { type AsyncFirstApp, createAsyncFirst, type OperationOptions } from '../src/app.js';
import type { AsyncFirstConfig } from '../src/config.js';
import { demoSecurity, parseApiKeys, reportHandlers } from '../src/demo/service.js';
import { openSqliteEngine } from '../src/engine/open-engine.js';
import type { AnyHandler } from '../src/handlers.js';
import { machineLeaseClock } from '../src/store/sqlite/lease-clock.js';
import type { JobRecord, Store } from '../src/store/store.js';
import { ALICE, API_KEYS } from './helpers.js';

/*
 * Support for the worker, lease, cancel, shutdown and crash tests: an app on the demo contract
 * with a job handler of the test's choosing, the stored job's lease, and the demo as a child process.
 */

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CONTRACT_PATH = fileURLToPath(new URL('../openapi.yaml', import.meta.url));

/** Asserts that a stored job holds no lease: no worker owns it and no lease time runs. */
export function expectNoLease(job: JobRecord | undefined): void {
  expect(job).toBeDefined();
  expect(job?.leaseOwner).toBeUndefined();
  expect(job?.leaseExpiresInMs).toBeUndefined();
}

/**
 * A second store on the same file whose lease clock runs `aheadMs` ahead of the machine's: to it,
 * every lease taken less than `aheadMs` ago has expired (a claim through it is a takeover).
 */
export function storeWithLeaseClockAhead(dbPath: string, aheadMs: number): Promise<Store> {
  const clock = machineLeaseClock();
  return openSqliteEngine(dbPath, { leaseClock: { epoch: clock.epoch, now: () => clock.now() + aheadMs } });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a value other than undefined; throws with `what` after the deadline. */
export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000, everyMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A promise with its resolve function: a gate a test opens when it chooses. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Gates by name, made on first use: a test's handler waits on one, the test opens it. */
export function gates(): { gateFor: (name: string) => ReturnType<typeof gate>; release: (name: string) => void; openAll: () => void } {
  const byName = new Map<string, ReturnType<typeof gate>>();
  const gateFor = (name: string) => {
    let entry = byName.get(name);
    if (!entry) {
      entry = gate();
      byName.set(name, entry);
    }
    return entry;
  };
  return {
    gateFor,
    release: (name) => gateFor(name).open(),
    openAll: () => {
      for (const entry of byName.values()) entry.open();
    },
  };
}

/**
 * The demo contract served by an app whose createReport job handler is the test's own.
 * Not started: call startBackground() (or nothing, for workerConcurrency 0).
 */
export function customApp(options: {
  dbPath: string;
  createReport: AnyHandler;
  config?: Partial<AsyncFirstConfig>;
  createReportOptions?: OperationOptions;
  store?: Store;
}): Promise<AsyncFirstApp> {
  return createAsyncFirst({
    ...(options.store ? { store: options.store } : {}),
    contract: CONTRACT_PATH,
    handlers: { createReport: options.createReport, estimateReport: reportHandlers.estimateReport, indexReport: reportHandlers.indexReport },
    security: demoSecurity(parseApiKeys(API_KEYS)),
    operations: options.createReportOptions ? { createReport: options.createReportOptions } : {},
    config: {
      databaseUrl: options.dbPath,
      logLevel: 'silent',
      pollIntervalMs: 20,
      retryBaseMs: 20,
      retryMaxMs: 200,
      ...options.config,
    },
  });
}

/** The demo (`src/demo/main.ts`) running as a child process. */
export interface DemoProcess {
  child: ChildProcess;
  /** http://host:port for `serve`; undefined for `worker`. */
  address: string | undefined;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the process wrote to stderr so far (for failure messages). */
  stderr(): string;
  /** The JSON log lines the process wrote to stdout so far. */
  logs(): Array<{ level: number; msg: string; [field: string]: unknown }>;
}

export interface DemoProcessOptions {
  /** The service module to run instead of the demo (relative to the repository). */
  script?: string;
  /** Node options before the module (e.g. another --import). */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

/**
 * Spawns `node --import tsx src/demo/main.ts <mode>` on PORT 0 and resolves once it logged that
 * it is listening (serve) or that its worker started (worker).
 */
export function startDemoProcess(mode: 'serve' | 'worker', env: Record<string, string>, options: DemoProcessOptions = {}): Promise<DemoProcess> {
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const child = spawn(process.execPath, ['--import', 'tsx', ...(options.nodeArgs ?? []), options.script ?? 'src/demo/main.ts', mode], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', API_KEYS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const readyMessage = mode === 'serve' ? 'asyncfirst demo — reports listening' : 'worker started';
  const logs: Array<{ level: number; msg: string }> = [];
  return new Promise<DemoProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the demo ${mode} process did not start within ${startTimeoutMs} ms; stderr:\n${stderr}`));
    }, startTimeoutMs);
    let buffered = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf('\n');
        let entry: { msg?: unknown; address?: unknown; level?: unknown };
        try {
          entry = JSON.parse(line) as { msg?: unknown; address?: unknown };
        } catch {
          continue;
        }
        logs.push(entry as { level: number; msg: string });
        if (entry.msg === readyMessage) {
          clearTimeout(timer);
          resolve({ child, address: typeof entry.address === 'string' ? entry.address : undefined, exited, stderr: () => stderr, logs: () => logs });
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the demo ${mode} process exited before it was ready (code ${code}, signal ${signal}); stderr:\n${stderr}`));
    });
  });
}

/** SIGKILLs a child this test started, if it still runs, and waits for it to be gone. */
export async function killDemoProcess(demo: DemoProcess | undefined): Promise<void> {
  if (!demo || demo.child.exitCode !== null || demo.child.signalCode !== null) return;
  demo.child.kill('SIGKILL');
  await demo.exited;
}

/** GET /jobs/{id} over the socket as Alice; the test fails unless it answers 200. */
export async function fetchJob<View>(address: string, id: string): Promise<View> {
  const response = await fetch(`${address}/jobs/${id}`, { headers: ALICE });
  expect(response.status).toBe(200);
  return (await response.json()) as View;
}
