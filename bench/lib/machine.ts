import { closeSync, fdatasyncSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { redisConnection } from './redis.js';
import { PG_URL } from './shared.js';

export interface FsyncRate {
  /** 4 KiB appended + fdatasync, per second. */
  fdatasyncPerSec: number;
  /** 4 KiB appended + fsync, per second. */
  fsyncPerSec: number;
  dir: string;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  availableParallelism: number;
  memoryGiB: number;
  node: string;
  os: string;
  fsync: FsyncRate;
}

/**
 * Durable small writes per second in `dir` (the databases' folder): append 4 KiB, then
 * fdatasync (what SQLite's WAL commit does with synchronous=FULL), for half of `seconds`;
 * then the same with fsync.
 */
export function probeFsync(dir: string, seconds: number): FsyncRate {
  const path = join(dir, 'fsync-probe.bin');
  const block = Buffer.alloc(4096, 7);
  const loop = (sync: (fd: number) => void) => {
    const fd = openSync(path, 'w');
    try {
      let count = 0;
      const start = performance.now();
      const end = start + (seconds * 1000) / 2;
      while (performance.now() < end) {
        writeSync(fd, block, 0, block.length, count * block.length);
        sync(fd);
        count++;
      }
      return count / ((performance.now() - start) / 1000);
    } finally {
      closeSync(fd);
      rmSync(path, { force: true });
    }
  };
  return { fdatasyncPerSec: loop(fdatasyncSync), fsyncPerSec: loop(fsyncSync), dir };
}

export function describeMachine(fsync: FsyncRate): MachineInfo {
  const cpuList = cpus();
  return {
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
    cores: cpuList.length,
    availableParallelism: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${process.platform} ${release()}`,
    fsync,
  };
}

/** Whether a TCP port answers; the reason when it does not. */
export function reachable(host: string, port: number, timeoutMs = 1500): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (reason: string | undefined) => {
      socket.destroy();
      resolve(reason);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`));
    socket.once('connect', () => done(undefined));
    socket.once('error', (error) => done(error.message));
  });
}

/** Redis's persistence settings, as they bear on what BullMQ's acknowledgement means. */
export async function redisSettings(): Promise<string> {
  const connection = (await redisConnection()) as unknown as { call(...args: string[]): Promise<unknown>; quit(): Promise<unknown> };
  try {
    const setting = async (name: string) => {
      const reply = (await connection.call('CONFIG', 'GET', name)) as string[];
      return `${name}=${JSON.stringify(reply[1] ?? '')}`;
    };
    const info = String(await connection.call('INFO', 'server'));
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
    return `Redis ${version}: ${[await setting('appendonly'), await setting('appendfsync'), await setting('save')].join(', ')}`;
  } finally {
    await connection.quit();
  }
}

type PgClient = { connect(): Promise<void>; query(text: string): Promise<{ rows: Array<Record<string, string>> }>; end(): Promise<void> };

/** PostgreSQL's durability settings, as they bear on what pg-boss's acknowledgement means. */
export async function postgresSettings(): Promise<string> {
  const specifier: string = 'pg';
  const pg = (await import(specifier)) as { default: { Client: new (options: { connectionString: string }) => PgClient } };
  const client = new pg.default.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    const show = async (name: string) => `${name}=${(await client.query(`SHOW ${name}`)).rows[0]?.[name] ?? '?'}`;
    const version = (await client.query('SHOW server_version')).rows[0]?.server_version ?? '?';
    return `PostgreSQL ${version}: ${[await show('synchronous_commit'), await show('fsync'), await show('wal_sync_method')].join(', ')}`;
  } finally {
    await client.end();
  }
}
