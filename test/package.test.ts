import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The package as a user gets it: `npm pack` (which builds dist/ on prepack), the tarball installed
 * into a new project outside this repository (so nothing resolves through the repository's own
 * node_modules), and that project's strict `tsc` against the published declarations.
 */

const repo = resolve(import.meta.dirname, '..');
const repoVersion = (name: string) => (JSON.parse(readFileSync(join(repo, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

let work: string;
let tarball: string;
let consumer: string;

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' },
  });
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'asyncfirst-package-'));
  run('npm', ['pack', '--pack-destination', work], repo);
  tarball = join(work, readdirSync(work).find((file) => file.endsWith('.tgz'))!);
  consumer = join(work, 'consumer');
  execFileSync('mkdir', [consumer]);
  writeFileSync(join(consumer, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module' })}\n`);
  // --ignore-scripts: the declarations and the client need no native addon; the cache serves what it holds.
  run(
    'npm',
    ['install', '--prefer-offline', '--ignore-scripts', tarball, `typescript@${repoVersion('typescript')}`, `@types/node@${repoVersion('@types/node')}`],
    consumer,
  );
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('ships dist/ (JavaScript, declarations, source maps, the PostgreSQL migrations), README and LICENSE, and nothing of the repository else', () => {
    const files = run('tar', ['tzf', tarball], work)
      .split('\n')
      .filter(Boolean)
      .map((file) => file.replace(/^package\//, ''));
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map']));
    expect(files).toEqual(expect.arrayContaining(['dist/client/index.js', 'dist/client/index.d.ts', 'dist/store/postgres/migrations/0001_jobs.sql']));
    expect(files.filter((file) => !file.startsWith('dist/') && !['package.json', 'README.md', 'LICENSE'].includes(file))).toEqual([]);
    expect(files.some((file) => file.startsWith('dist/demo/'))).toBe(false);
    const manifest = JSON.parse(readFileSync(join(consumer, 'node_modules/asyncfirst/package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.private).toBeUndefined();
    expect(manifest.license).toBe('MIT');
    expect(readFileSync(join(consumer, 'node_modules/asyncfirst/LICENSE'), 'utf8')).toMatch(/^MIT License/);
  });

  it('asyncfirst/client imports none of Fastify, better-sqlite3, pg, pino or the server modules', () => {
    const packageRoot = join(consumer, 'node_modules/asyncfirst');
    const seen = new Set<string>();
    const packages = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = readFileSync(file, 'utf8');
      for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*'([^']+)'|import\(\s*'([^']+)'\s*\)|(?:^|\n)\s*import\s*'([^']+)'/g)) {
        const specifier = match[1] ?? match[2] ?? match[3]!;
        if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier));
        else packages.add(specifier);
      }
    };
    visit(join(packageRoot, 'dist/client/index.js'));
    const modules = [...seen].map((file) => file.slice(packageRoot.length + 1)).sort();
    expect(modules).toContain('dist/client/index.js');
    expect(modules.filter((file) => /^dist\/(http|store|engine|runtime|worker|delivery|contract)\/|^dist\/(app|cli|index)\.js$/.test(file))).toEqual([]);
    expect([...packages].filter((name) => /^(fastify|@fastify\/|better-sqlite3|pg|pino|openapi-backend|ajv)/.test(name))).toEqual([]);
    // And at run time: importing it under plain node loads, without the native addon being built.
    const keys = run(
      'node',
      ['--input-type=module', '-e', "const c = await import('asyncfirst/client'); console.log(Object.keys(c).sort().join(','))"],
      consumer,
    );
    expect(keys.trim()).toBe('JobFailedError,createClient,retryingFetch');
    // The require condition: Node >= 20.19 loads the ES module through require.
    const required = run('node', ['-e', "console.log(Object.keys(require('asyncfirst/client')).sort().join(','))"], consumer);
    expect(required.trim()).toBe('JobFailedError,createClient,retryingFetch');
  });

  it('asyncfirst and asyncfirst/testing load under plain node through import and through require', () => {
    for (const [entry, names] of [
      ['asyncfirst', ['createAsyncFirst', 'createAsyncFirstWorker', 'HttpProblem', 'runProcess', 'SqliteDriver']],
      ['asyncfirst/testing', ['createTestApp', 'ResultMismatchError', 'runHandler']],
    ] as const) {
      const imported = run('node', ['--input-type=module', '-e', `const m = await import('${entry}'); console.log(Object.keys(m).sort().join(','))`], consumer);
      const required = run('node', ['-e', `console.log(Object.keys(require('${entry}')).sort().join(','))`], consumer);
      expect(required).toBe(imported);
      expect(imported.trim().split(',')).toEqual(expect.arrayContaining([...names]));
    }
  });

  it('type-checks a service against the published declarations with --strict, exactOptionalPropertyTypes and skipLibCheck off', () => {
    expect(existsSync(join(consumer, 'node_modules/@types/better-sqlite3'))).toBe(false);
    expect(existsSync(join(consumer, 'node_modules/@types/pg'))).toBe(false);
    writeFileSync(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          skipLibCheck: false,
          noEmit: true,
          types: ['node'],
        },
        include: ['service.ts', 'api.ts'],
      }),
    );
    writeFileSync(
      join(consumer, 'service.ts'),
      `import { createAsyncFirst, type Handlers, PermanentJobError, runProcess, SqliteDriver } from 'asyncfirst';
import { createClient } from 'asyncfirst/client';
import { createTestApp, runHandler } from 'asyncfirst/testing';
import type { operations, paths } from './api.js';

const handlers: Handlers<operations> = {
  async createReport({ body }, { signal, progress, log, enqueue, job }) {
    if (body.rows > 1_000_000) throw new PermanentJobError('too many rows');
    await progress(50, 'half way');
    log.info({ aborted: signal.aborted }, 'building');
    if (body.index && job) enqueue('indexReport', { body: { report: job.id, title: body.title, sha256: '' } }, { key: 'index' });
    return { title: body.title, format: body.format ?? 'csv', rowCount: body.rows, bytes: 0, sha256: '' };
  },
  estimateReport({ query }) {
    return { rows: query.rows, format: query.format ?? 'csv', estimatedBytes: query.rows * 10 };
  },
  indexReport({ body }) {
    return { report: body.report, sha256: body.sha256, terms: [] };
  },
};
export const options = { contract: 'openapi.yaml', handlers, config: { databaseUrl: 'jobs.db', port: 3000 } };
export async function start(): Promise<string> {
  const app = await createAsyncFirst(options);
  await app.enqueue('createReport', { body: { title: 'nightly', rows: 10 } }, { principal: 'ops', key: 'nightly-1' });
  // @ts-expect-error estimateReport is synchronous: app.enqueue takes asynchronous operations only
  await app.enqueue('estimateReport', { query: { rows: 1 } });
  // @ts-expect-error rows is an integer
  await app.enqueue('createReport', { body: { title: 'nightly', rows: 'ten' } });
  return app.listen();
}
export const worker = () => runProcess(options, 'worker');
export const client = createClient<paths>({ baseUrl: 'http://localhost:3000' });
export const driverClass: typeof SqliteDriver = SqliteDriver;
export async function testIt(): Promise<unknown> {
  const service = await createTestApp(options);
  const accepted = await service.submit('POST', '/reports', { title: 'Q3', rows: 1 });
  await service.runUntilIdle({ timeoutMs: 1000 });
  const job = await service.job(accepted.jobId ?? '');
  await service.close();
  const run = await runHandler(options, 'createReport', { body: { title: 'Q3', rows: 1 } });
  return [job.status, run.result, run.progress.length];
}
`,
    );
    copyFileSync(join(repo, 'generated/api.ts'), join(consumer, 'api.ts'));
    const tsc = join(consumer, 'node_modules/typescript/bin/tsc');
    let output = '';
    try {
      output = run('node', [tsc, '-p', '.'], consumer);
    } catch (error) {
      output = String((error as { stdout?: string }).stdout ?? error);
    }
    expect(output).toBe('');
  });
});

describe('a new service from the packed package', () => {
  it('npx asyncfirst init scaffolds it, its npm test passes, and npm start serves a job under plain node until SIGTERM stops it gracefully', async () => {
    const init = run('npx', ['--no-install', 'asyncfirst', 'init', 'my-service'], consumer);
    expect(init).toContain('created my-service');
    const service = join(consumer, 'my-service');
    // Until asyncfirst is on the registry the scaffold gets the tarball; the native addon already
    // built for this repository is reused instead of being compiled again (same version, same Node).
    run('npm', ['install', '--prefer-offline', '--ignore-scripts', tarball], service);
    const addon = 'node_modules/better-sqlite3';
    const installed = (JSON.parse(readFileSync(join(service, addon, 'package.json'), 'utf8')) as { version: string }).version;
    if (installed === repoVersion('better-sqlite3')) cpSync(join(repo, addon, 'build'), join(service, addon, 'build'), { recursive: true });
    else run('npm', ['rebuild', 'better-sqlite3'], service);

    const tested = run('npm', ['test'], service);
    expect(tested).toMatch(/# pass 3\n# fail 0/);

    // `npm start`, as the scaffold's README says; in its own process group, so that SIGTERM reaches
    // npm, its shell and the service as a terminal's Ctrl-C or a container stop would.
    const server = spawn('npm', ['start'], {
      cwd: service,
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: join(service, 'data/jobs.db') },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    try {
      const address = await new Promise<string>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`the service did not start: ${output}`)), 30_000);
        const read = (chunk: Buffer) => {
          output += chunk.toString();
          const match = /"address":"([^"]+)"/.exec(output);
          if (match) {
            clearTimeout(timer);
            done(match[1]!);
          }
        };
        server.stdout.on('data', read);
        server.stderr.on('data', read);
        server.on('exit', (code) => fail(new Error(`the service exited with ${code}: ${output}`)));
      });
      const accepted = await fetch(`${address}/greetings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'e2e-1' },
        body: JSON.stringify({ name: 'Ada' }),
      });
      expect(accepted.status).toBe(202);
      const { job_id: id } = (await accepted.json()) as { job_id: string };
      let job: { status: string; result?: unknown } = { status: 'queued' };
      for (let tries = 0; tries < 100 && (job.status === 'queued' || job.status === 'running'); tries++) {
        await new Promise((done) => setTimeout(done, 100));
        job = (await (await fetch(`${address}/jobs/${id}`)).json()) as typeof job;
      }
      expect(job).toMatchObject({ status: 'succeeded', result: { text: 'Hello, Ada!' } });
      const preview = await fetch(`${address}/greetings/preview?name=Ada`);
      expect(preview.status).toBe(200);
      expect(await preview.json()).toEqual({ text: 'Hello, Ada!' });
    } finally {
      // 'close': npm has exited and so has the service, which holds the same pipes.
      const exited = new Promise<{ code: number | null; signal: string | null }>((done) => server.on('close', (code, signal) => done({ code, signal })));
      process.kill(-server.pid!, 'SIGTERM');
      // npm ends as its script did, or by the signal it passed on (npm re-raises it on itself).
      expect([
        { code: 0, signal: null },
        { code: null, signal: 'SIGTERM' },
      ]).toContainEqual(await exited);
      // The service itself stopped gracefully.
      expect(output).toContain('"msg":"stopped"');
    }
  }, 240_000);
});
