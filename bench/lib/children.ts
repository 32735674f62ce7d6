import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './shared.js';

/*
 * The parent half of the protocol in child-side.ts: every server and drain runs in its own
 * `node --import tsx` child. Every child is registered, and killed when the parent exits for
 * any reason; a child also exits by itself when its stdin (the parent) closes.
 */

export interface SpawnOptions {
  /** Extra environment (LOG_LEVEL=silent is always set). */
  env?: Record<string, string>;
  /** Arguments after the entry file. */
  args?: string[];
  /** Node options before --import tsx (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** The checkout the entry file is in, and the child's working directory (default: this repository; a baseline's worktree). */
  root?: string;
}

export type Message = Record<string, unknown>;

export class BenchChild {
  readonly process: ChildProcess;
  readonly name: string;
  private readonly queue: Message[] = [];
  private readonly waiting: Array<{ resolve: (message: Message) => void; reject: (error: Error) => void }> = [];
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private stderrTail = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;

  constructor(entry: string, options: SpawnOptions = {}) {
    this.name = options.root ? `${entry} (baseline)` : entry;
    const root = options.root ?? REPO_ROOT;
    this.process = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', join(root, entry), ...(options.args ?? [])], {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'silent', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this);
    this.process.stdin?.on('error', () => {});
    this.process.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    createInterface({ input: this.process.stdout as NodeJS.ReadableStream }).on('line', (line) => this.onLine(line));
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        const error = new Error(`${this.name} exited (${signal ?? `code ${code}`}) ${this.stderrTail.trim()}`.trim());
        for (const waiter of this.waiting.splice(0)) waiter.reject(error);
        for (const request of this.pending.values()) request.reject(error);
        this.pending.clear();
        resolve();
      });
    });
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  /** The next announcement line (not a command reply), within `timeoutMs`. */
  nextMessage(timeoutMs: number): Promise<Message> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.exitInfo) return Promise.reject(new Error(`${this.name} has exited: ${this.stderrTail.trim()}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiting.indexOf(waiter);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(new Error(`${this.name} said nothing within ${timeoutMs} ms ${this.stderrTail.trim()}`.trim()));
      }, timeoutMs);
      const waiter = {
        resolve: (message: Message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiting.push(waiter);
    });
  }

  /** Sends a command and waits for its reply. */
  command<T>(cmd: string, timeoutMs = 30_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: no reply to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.stdin?.write(`${JSON.stringify({ id, cmd })}\n`);
    });
  }

  /** The child's resident set size in bytes, from /proc (Linux), else by asking it. */
  async rss(): Promise<number> {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      if (match) return Number(match[1]) * 1024;
    } catch {
      // not Linux, or the process is gone: ask it
    }
    return this.command<number>('rss', 5000);
  }

  /** SIGTERM (graceful), then SIGKILL after `graceMs`. */
  async stop(graceMs = 8000): Promise<void> {
    if (this.exitInfo) return;
    this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private onLine(line: string): void {
    let message: Message;
    try {
      message = JSON.parse(line) as Message;
    } catch {
      return; // not ours (a library printing to stdout)
    }
    if (typeof message.id === 'number' && this.pending.has(message.id)) {
      const request = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (typeof message.error === 'string') request?.reject(new Error(`${this.name}: ${message.error}`));
      else request?.resolve(message.result);
      return;
    }
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(message);
    else this.queue.push(message);
  }
}

const live = new Set<BenchChild>();

/** Kills every child still running (synchronously: safe in an 'exit' handler). */
export function killAllChildren(): void {
  for (const child of live) {
    try {
      child.process.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

/** Starts a server child and waits for its {"url": …} line. */
export async function startServer(entry: string, options: SpawnOptions = {}, timeoutMs = 60_000): Promise<{ child: BenchChild; url: string; info: Message }> {
  const child = new BenchChild(entry, options);
  try {
    const message = await child.nextMessage(timeoutMs);
    if (typeof message.error === 'string') throw new Error(message.error);
    if (typeof message.url !== 'string') throw new Error(`${entry} announced ${JSON.stringify(message)} instead of a url`);
    return { child, url: message.url, info: message };
  } catch (error) {
    await child.stop(2000);
    throw error;
  }
}

/** Preloaded with `nodeArgs: IO_AT_EXIT` (node --import), a child reports at exit what it wrote; runOnce adds it to the result as `io`. */
export const IO_AT_EXIT = ['--import', pathToFileURL(join(REPO_ROOT, 'bench/lib/io-at-exit.mjs')).href];

/** Runs a one-shot child (a drain) and returns its result line (with `io` when the child reported it at exit). */
export async function runOnce(entry: string, options: SpawnOptions, timeoutMs: number): Promise<Message> {
  const child = new BenchChild(entry, options);
  let message: Message;
  try {
    message = await child.nextMessage(timeoutMs);
    if (typeof message.error === 'string') throw new Error(`${entry}: ${message.error}`);
    // A drain child exits by itself once it has announced: let it (its exit report comes then), SIGTERM only a straggler.
    await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  } finally {
    await child.stop(5000);
  }
  const io = /asyncfirst-bench-io (\{.*\})/.exec(child.stderr)?.[1];
  return io ? { ...message, io: JSON.parse(io) as unknown } : message;
}
