import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ALICE } from './helpers.js';
import { queryPostgres } from './postgres-support.js';
import { type DemoProcess, killDemoProcess, sleep, startDemoProcess, waitFor } from './worker-test-support.js';

/*
 * PostgreSQL goes away under load and comes back. The test runs its own PostgreSQL server (initdb
 * into a temporary folder, on a port of its own), so stopping it disturbs nothing else.
 */

const BIN = (() => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const version = readdirSync(root).sort().at(-1);
  return version && existsSync(join(root, version, 'bin', 'initdb')) ? join(root, version, 'bin') : undefined;
})();
const canRun = process.platform === 'linux' && process.getuid?.() === 0 && BIN !== undefined;
if (!canRun) console.log('skipping the PostgreSQL outage test: it needs root and the PostgreSQL server binaries to run a private server');

const PORT = 55_000 + Math.floor(Math.random() * 4000);
const dataDir = canRun ? mkdtempSync(join(tmpdir(), 'asyncfirst-pg-outage-')) : '';
const URL = `postgres://postgres@127.0.0.1:${PORT}/postgres`;

function asPostgres(command: string, args: string[]): void {
  execFileSync('runuser', ['-u', 'postgres', '--', join(BIN as string, command), ...args], { stdio: 'ignore' });
}
const startServer = () =>
  asPostgres('pg_ctl', ['-D', dataDir, '-w', '-l', join(dataDir, 'server.log'), '-o', `-p ${PORT} -k ${dataDir} -c listen_addresses=127.0.0.1`, 'start']);
const stopServer = () => asPostgres('pg_ctl', ['-D', dataDir, '-w', '-m', 'fast', 'stop']);

describe.skipIf(!canRun)('PostgreSQL stops for a few seconds under load', () => {
  let server: DemoProcess | undefined;
  afterAll(async () => {
    await killDemoProcess(server);
    try {
      stopServer();
    } catch {}
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers 503 with Retry-After meanwhile, loses nothing acknowledged, and recovers by itself', { timeout: 90_000 }, async () => {
    execFileSync('chown', ['postgres:', dataDir]);
    asPostgres('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    startServer();
    server = await startDemoProcess('serve', {
      DATABASE_URL: URL,
      DATABASE_SCHEMA: 'outage',
      WORKER_CONCURRENCY: '4',
      WORKER_POLL_MS: '100',
      DB_BUSY_TIMEOUT_MS: '1000',
    });
    const address = server.address as string;

    const acknowledged = new Map<string, string>();
    const statuses = new Map<number, number>();
    const problems = new Set<string>();
    let next = 0;
    let loading = true;
    const lanes = Array.from({ length: 8 }, async () => {
      while (loading) {
        const key = `outage-${next++}`;
        try {
          const response = await fetch(`${address}/reports`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
            body: JSON.stringify({ title: key, rows: 1 }),
            signal: AbortSignal.timeout(5000),
          });
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          const body = (await response.json()) as { job_id?: string; type?: string };
          if (response.status === 202) acknowledged.set(key, body.job_id as string);
          else {
            problems.add(`${response.status} ${body.type} retry-after=${response.headers.get('retry-after')}`);
          }
        } catch (error) {
          problems.add(`no answer: ${(error as Error).message}`);
        }
        await sleep(5);
      }
    });

    await sleep(1000);
    const beforeOutage = acknowledged.size;
    stopServer();
    await sleep(3000);
    const duringOutage = statuses.get(503) ?? 0;
    startServer();
    const restartedAt = Date.now();
    // Recovery without a restart: new submissions are acknowledged again.
    const resumedFrom = acknowledged.size;
    await waitFor('submissions to be acknowledged again', () => (acknowledged.size > resumedFrom + 20 ? true : undefined), 20_000, 50);
    loading = false;
    await Promise.all(lanes);

    expect(beforeOutage).toBeGreaterThan(0);
    expect(duringOutage).toBeGreaterThan(0);
    // Every answer was a 202 or a 503 store-unavailable with Retry-After; no 500, no hang.
    expect([...statuses.keys()].sort()).toEqual([202, 503]);
    expect([...problems]).toEqual(['503 urn:asyncfirst:problem:store-unavailable retry-after=2']);
    await waitFor('/readyz to answer 200', async () => ((await fetch(`${address}/readyz`)).status === 200 ? true : undefined), 10_000, 100);

    // Nothing acknowledged was lost: every 202's job is stored and is run to success — soon, not
    // after the 30 s lease of the jobs whose outcome could not be written during the outage
    // (their workers keep trying while the lease holds).
    const ids = [...acknowledged.values()];
    await waitFor(
      'every acknowledged job to succeed',
      async () => {
        const rows = await queryPostgres<{ n: number }>(
          'outage',
          `SELECT count(*)::int AS n FROM jobs WHERE id = ANY($1) AND status = 'succeeded'`,
          [ids],
          URL,
        );
        return rows[0]?.n === ids.length ? true : undefined;
      },
      15_000,
      200,
    );
    expect(Date.now() - restartedAt).toBeLessThan(20_000);
    // And every acknowledged key still replays its job.
    for (const [key, jobId] of [...acknowledged].slice(0, 50)) {
      const replay = await fetch(`${address}/reports`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
        body: JSON.stringify({ title: key, rows: 1 }),
      });
      expect(replay.status).toBe(202);
      expect(((await replay.json()) as { job_id: string }).job_id).toBe(jobId);
    }
  });
});
