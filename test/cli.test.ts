import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAsyncFirst } from '../src/app.js';
import { demoOptions } from '../src/demo/service.js';
import { freshSchema, queryPostgres, TEST_DATABASE_URL } from './postgres-support.js';

/* The asyncfirst command, run as a user runs it: its output and its exit code (0 done, 1 failed, 2 usage). */

const repo = resolve(import.meta.dirname, '..');
// The command as compiled (plain node starts it in a fraction of tsx's time), built once for this
// file under node_modules/.cache, where its dependencies resolve from this repository.
const build = join(repo, 'node_modules/.cache/asyncfirst-cli-test');
const main = join(build, 'dist/cli/main.js');
// tsx by its file: `--import tsx` would be resolved from the working folder, outside this repository.
const tsx = pathToFileURL(join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
let work: string;

function asyncfirst(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const result = spawnSync(process.execPath, [main, ...args], {
    cwd: options.cwd ?? work,
    encoding: 'utf8',
    env: { ...process.env, DATABASE_URL: '', LOG_LEVEL: 'silent', ...options.env },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The command under a pseudo-terminal (util-linux script), as a person at a terminal runs it: everything it wrote there. */
function asyncfirstOnTerminal(args: string[], options: { env?: Record<string, string> } = {}) {
  const quote = (value: string) => `'${value.replaceAll("'", "'\\''")}'`;
  const result = spawnSync('script', ['-qec', [process.execPath, main, ...args].map(quote).join(' '), '/dev/null'], {
    cwd: work,
    encoding: 'utf8',
    env: { ...process.env, DATABASE_URL: '', LOG_LEVEL: 'silent', ...options.env },
  });
  if (result.error) throw new Error(`util-linux script is needed to run the command on a pseudo-terminal: ${result.error.message}`);
  return { status: result.status, output: result.stdout };
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'asyncfirst-cli-'));
  execFileSync(process.execPath, ['--import', tsx, join(repo, 'scripts/build.ts'), '--out', join(build, 'dist')], { cwd: repo, stdio: 'ignore' });
  copyFileSync(join(repo, 'package.json'), join(build, 'package.json'));
}, 120_000);
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(build, { recursive: true, force: true });
});

describe('usage', () => {
  it('--help lists every command and exits 0; each command has its own --help', () => {
    const help = asyncfirst(['--help']);
    expect(help.status).toBe(0);
    for (const command of [
      'init <dir>',
      'generate',
      'check',
      'serve <module>',
      'worker <module>',
      'migrate',
      'backup [options] <file>',
      'restore [options] <file>',
      'jobs',
      'schedules',
    ]) {
      expect(help.stdout).toContain(command);
    }
    const backupHelp = asyncfirst(['backup', '--help']);
    expect(backupHelp.status).toBe(0);
    expect(backupHelp.stdout).toContain('Usage: asyncfirst backup [options] <file>');
    expect(backupHelp.stdout).toContain('--database <url>');
  });

  it('every command and subcommand has --help (exit 0) and refuses an unknown option with exit 2', () => {
    const commands = [
      'init',
      'generate',
      'check',
      'serve',
      'worker',
      'migrate',
      'backup',
      'restore',
      'jobs',
      'jobs list',
      'jobs show',
      'jobs retry',
      'jobs cancel',
      'schedules',
    ];
    for (const command of commands) {
      const words = command.split(' ');
      const help = asyncfirst([...words, '--help']);
      expect({ command, status: help.status }).toEqual({ command, status: 0 });
      expect(help.stdout).toMatch(new RegExp(`^Usage: asyncfirst ${command} `));
      expect(help.stdout).toContain('-h, --help');
      const wrong = asyncfirst([...words, '--no-such-option']);
      expect({ command, status: wrong.status }).toEqual({ command, status: 2 });
      expect(wrong.stderr).toContain("unknown option '--no-such-option'");
      expect(wrong.stderr).toContain('(run with --help for usage)');
    }
    // And each has its row in the README's reference.
    const reference = readFileSync(join(repo, 'README.md'), 'utf8').split('\n## The asyncfirst command\n')[1]?.split('\n## ')[0] ?? '';
    expect(commands.filter((command) => command !== 'jobs' && !reference.includes(`| \`${command}`))).toEqual([]);
    // A command's required argument missing is a usage error too.
    for (const command of ['init', 'serve', 'worker', 'backup', 'restore', 'jobs show', 'jobs retry', 'jobs cancel']) {
      const missing = asyncfirst(command.split(' '));
      expect({ command, status: missing.status }).toEqual({ command, status: 2 });
      expect(missing.stderr).toMatch(/missing required argument '(dir|module|file|id)'/);
    }
    // No command at all: the overview, as a usage error.
    const bare = asyncfirst([]);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain('Usage: asyncfirst [options] [command]');
  });

  it('an unknown command, an unknown option or a missing argument exits 2 with the reason', () => {
    const unknown = asyncfirst(['frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const option = asyncfirst(['check', '--frob']);
    expect(option.status).toBe(2);
    expect(option.stderr).toContain("unknown option '--frob'");
    const missing = asyncfirst(['backup']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'file'");
  });
});

describe('generate', () => {
  it('writes the served document and its types, --check passes until the contract changes, then exits 1 naming the stale file', () => {
    copyFileSync(join(repo, 'openapi.yaml'), join(work, 'openapi.yaml'));
    const written = asyncfirst(['generate', '--out', 'gen']);
    expect(written.status).toBe(0);
    expect(written.stdout).toContain(`wrote ${join('gen', 'openapi.json')}`);
    expect(readFileSync(join(work, 'gen/api.ts'), 'utf8')).toMatch(/^\/\/ Generated by `asyncfirst generate` from openapi\.yaml/);
    expect((JSON.parse(readFileSync(join(work, 'gen/openapi.json'), 'utf8')) as { paths: object }).paths).toHaveProperty(['/jobs/{id}']);
    expect(asyncfirst(['generate', '--out', 'gen', '--check'])).toMatchObject({ status: 0 });
    writeFileSync(join(work, 'changed.yaml'), readFileSync(join(work, 'openapi.yaml'), 'utf8').replace('title: asyncfirst demo', 'title: another'));
    const stale = asyncfirst(['generate', '--contract', 'changed.yaml', '--out', 'gen', '--check']);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain('stale: gen/openapi.json, gen/api.ts');
  });

  it('a missing contract exits 1 naming it', () => {
    const missing = asyncfirst(['generate', '--contract', 'nowhere.yaml']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('cannot read the contract nowhere.yaml');
  });
});

describe('check', () => {
  it("passes the demo's contract and the document it serves with warnings only", () => {
    const contract = asyncfirst(['check', '--contract', join(repo, 'openapi.yaml')]);
    expect(contract.status).toBe(0);
    expect(contract.stdout).toMatch(/openapi\.yaml: 0 errors, \d+ warnings/);
    expect(contract.stdout).toMatch(/openapi\.yaml:\d+:\d+ warn operation-4xx-response: /);
    const served = asyncfirst(['check', '--served', '--contract', join(repo, 'openapi.yaml')]);
    expect(served.status).toBe(0);
    expect(served.stdout).toMatch(/0 errors/);
  });

  it('a broken contract exits 1 with what is wrong and where', () => {
    writeFileSync(join(work, 'broken.yaml'), 'openapi: 3.1.0\ninfo: {title: x}\npaths: {}\n');
    const broken = asyncfirst(['check', '--contract', 'broken.yaml']);
    expect(broken.status).toBe(1);
    expect(broken.stdout).toContain(
      "broken.yaml error asyncfirst: broken.yaml is not a valid OpenAPI 3.1.0 document:\n  at /info: must have required property 'version'",
    );
    expect(broken.stderr).toContain('broken.yaml: 1 error, 0 warnings');
  });

  it("a contract breaking the linter's recommended rules exits 1 with each problem at its line and column", () => {
    writeFileSync(
      join(work, 'unlinted.yaml'),
      'openapi: 3.1.0\ninfo: {title: x, version: "1"}\npaths:\n  /a:\n    get:\n      operationId: a\n      responses:\n        "200": {description: ok}\n',
    );
    const linted = asyncfirst(['check', '--contract', 'unlinted.yaml']);
    expect(linted.status).toBe(1);
    expect(linted.stdout).toContain('unlinted.yaml:5:5 error operation-summary: Operation object should contain `summary` field.');
    expect(linted.stdout).toContain('unlinted.yaml:5:5 error security-defined: ');
    expect(linted.stdout).toContain('unlinted.yaml:2:1 warn info-license: ');
    expect(linted.stderr).toMatch(/unlinted\.yaml: 2 errors, \d+ warnings/);
  });

  it('a missing contract exits 1', () => {
    const missing = asyncfirst(['check', '--contract', 'nowhere.yaml']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('cannot read the contract nowhere.yaml');
  });
});

describe('migrate, backup and restore (SQLite)', () => {
  const database = () => join(work, 'data/jobs.db');

  function insertJob(file: string, id: string) {
    const db = new Database(file);
    db.prepare(
      `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at) VALUES (?, 'alice', 'createReport', '{}', 'queued', 3, 0, 0, 0)`,
    ).run(id);
    db.close();
  }
  const jobIds = (file: string) => {
    const db = new Database(file, { readonly: true });
    const ids = (db.prepare('SELECT id FROM jobs ORDER BY id').all() as { id: string }[]).map((row) => row.id);
    db.close();
    return ids;
  };

  it('migrate creates the schema and prints its version; a second run finds it current', () => {
    const first = asyncfirst(['migrate'], { env: { DATABASE_URL: database() } });
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`^${database()}: schema version (\\d+)\\n$`));
    const version = Number(/schema version (\d+)/.exec(first.stdout)?.[1]);
    expect(version).toBeGreaterThan(0);
    const db = new Database(database(), { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(version);
    db.close();
    expect(asyncfirst(['migrate', '--database', database()]).stdout).toBe(first.stdout);
  });

  it('backup writes a checked copy and never overwrites a file', () => {
    insertJob(database(), 'job-1');
    const backup = asyncfirst(['backup', 'copy.db'], { env: { DATABASE_URL: database() } });
    expect(backup.status).toBe(0);
    expect(backup.stdout).toMatch(/^wrote copy\.db: integrity ok, schema version \d+, 1 jobs\n$/);
    expect(jobIds(join(work, 'copy.db'))).toEqual(['job-1']);
    insertJob(database(), 'job-2');
    const again = asyncfirst(['backup', 'copy.db', '--database', database()]);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('copy.db exists; asyncfirst backup never overwrites a file');
    expect(jobIds(join(work, 'copy.db'))).toEqual(['job-1']);
    expect(readdirSync(work).filter((file) => file.includes('partial'))).toEqual([]);
  });

  it('backup of a database that does not exist exits 1', () => {
    const missing = asyncfirst(['backup', 'other.db', '--database', join(work, 'none/jobs.db')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('there is no database at');
    expect(existsSync(join(work, 'other.db'))).toBe(false);
  });

  it('restore refuses a corrupt file and a file that is not an asyncfirst database, leaving the live one alone', () => {
    writeFileSync(join(work, 'corrupt.db'), `SQLite format 3\0${'x'.repeat(4000)}`);
    const corrupt = asyncfirst(['restore', 'corrupt.db', '--database', database()]);
    expect(corrupt.status).toBe(1);
    expect(corrupt.stderr).toMatch(/corrupt\.db (is not a readable asyncfirst database|fails PRAGMA integrity_check|cannot be opened)/);
    const other = new Database(join(work, 'other-app.db'));
    other.exec('CREATE TABLE t (a)');
    other.close();
    const foreign = asyncfirst(['restore', 'other-app.db', '--database', database()]);
    expect(foreign.status).toBe(1);
    expect(foreign.stderr).toContain('is not an asyncfirst database (schema version 0)');
    const missing = asyncfirst(['restore', 'nothing.db', '--database', database()]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('nothing.db does not exist');
    expect(jobIds(database())).toEqual(['job-1', 'job-2']);
  });

  it('restore refuses while a server holds the database, and swaps the copy in once it has stopped, keeping a safety copy', async () => {
    const server = await startDemo(database());
    try {
      const refused = asyncfirst(['restore', 'copy.db', '--database', database()]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain('a process holds');
      expect(refused.stderr).toContain('stop every asyncfirst process using it');
    } finally {
      await stop(server);
    }
    expect(jobIds(database())).toEqual(['job-1', 'job-2']);
    const restored = asyncfirst(['restore', 'copy.db', '--database', database()]);
    expect(restored.status).toBe(0);
    expect(restored.stdout).toMatch(
      /^restored .*jobs\.db from copy\.db \(schema version \d+, 1 jobs\)\nthe database it replaced is kept as .*jobs\.db\.before-restore-/,
    );
    expect(jobIds(database())).toEqual(['job-1']);
    const safety = readdirSync(join(work, 'data')).filter((file) => file.startsWith('jobs.db.before-restore-'));
    expect(safety).toHaveLength(1);
    expect(jobIds(join(work, 'data', safety[0]!))).toEqual(['job-1', 'job-2']);
    expect(existsSync(`${database()}-wal`)).toBe(false);
    // The restored file opens and migrates as a live database again.
    expect(asyncfirst(['migrate', '--database', database()]).status).toBe(0);
  });

  it('on PostgreSQL, backup and restore say to use pg_dump and pg_restore', () => {
    for (const command of ['backup', 'restore']) {
      const result = asyncfirst([command, 'x.dump', '--database', 'postgres://localhost/test']);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain('pg_dump');
      expect(result.stderr).toContain('pg_restore');
    }
  });
});

describe('progress on a terminal', () => {
  /** A database of about 10 MB: 20,000 jobs, enough for the backup to copy it in many steps. */
  function largeDatabase(file: string): void {
    expect(asyncfirst(['migrate', '--database', file]).status).toBe(0);
    const db = new Database(file);
    const insert = db.prepare(
      `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at) VALUES (?, 'alice', 'createReport', ?, 'queued', 3, 0, 0, 0)`,
    );
    db.transaction(() => {
      for (let index = 0; index < 20_000; index++) insert.run(`job-${index}`, JSON.stringify({ body: { title: 'x'.repeat(300), rows: index } }));
      // The count the driver would have kept beside them (job-counter.ts).
      db.prepare(`INSERT INTO job_counts (operation, status, count) VALUES ('createReport', 'queued', 20000)`).run();
    })();
    db.close();
  }

  it('migrate shows each migration as it is applied on a terminal, and only its result when piped', () => {
    const onTerminal = asyncfirstOnTerminal(['migrate', '--database', join(work, 'progress/terminal.db')]);
    expect(onTerminal.status).toBe(0);
    const version = Number(/schema version (\d+)/.exec(onTerminal.output)?.[1]);
    expect(version).toBeGreaterThan(1);
    for (let step = 1; step <= version; step++) {
      expect(onTerminal.output).toContain(`applying migration ${step} of ${version}…`);
      expect(onTerminal.output).toMatch(new RegExp(`applied migration ${step} of ${version} in \\d+ ms`));
    }
    // A database already current applies nothing.
    const current = asyncfirstOnTerminal(['migrate', '--database', join(work, 'progress/terminal.db')]);
    expect(current.output).not.toContain('migration');
    expect(current.output).toContain(`schema version ${version}`);

    const piped = asyncfirst(['migrate', '--database', join(work, 'progress/piped.db')]);
    expect(piped.status).toBe(0);
    expect(piped.stdout).toBe(`${join(work, 'progress/piped.db')}: schema version ${version}\n`);
    expect(piped.stderr).toBe('');
  });

  it('migrate on PostgreSQL shows each migration with its file name on a terminal', async () => {
    const { schema, drop } = freshSchema('af_cli_progress');
    try {
      const env = { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema };
      const onTerminal = asyncfirstOnTerminal(['migrate'], { env });
      expect(onTerminal.status).toBe(0);
      const version = Number(/schema version (\d+)/.exec(onTerminal.output)?.[1]);
      expect(version).toBeGreaterThan(1);
      expect(onTerminal.output).toContain(`applying migration 1 of ${version} (0001_jobs.sql)…`);
      expect(onTerminal.output).toMatch(new RegExp(`applied migration ${version} of ${version} \\(\\d{4}_[\\w-]+\\.sql\\) in \\d+ ms`));
      const rows = await queryPostgres<{ version: number }>(schema, 'SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((row) => row.version)).toEqual(Array.from({ length: version }, (_, index) => index + 1));
    } finally {
      await drop();
    }
  });

  it('backup of a large file shows the pages copied as it goes, then the check, on a terminal; nothing of it when piped', () => {
    const database = join(work, 'progress/large.db');
    largeDatabase(database);
    const onTerminal = asyncfirstOnTerminal(['backup', 'large-terminal.db', '--database', database]);
    expect(onTerminal.status).toBe(0);
    const percents = [...onTerminal.output.matchAll(/copying [^:]+: (\d+)% \((\d+) of (\d+) pages\)/g)].map((match) => Number(match[1]));
    // Many steps, in order, ending at 100% with every page copied.
    expect(new Set(percents).size).toBeGreaterThan(10);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(percents.at(-1)).toBe(100);
    expect(onTerminal.output).toMatch(/copying [^:]+: 100% \((\d+) of \1 pages\)/);
    expect(onTerminal.output).toContain('checking large-terminal.db (PRAGMA integrity_check)…');
    expect(onTerminal.output).toMatch(/wrote large-terminal\.db: integrity ok, schema version \d+, 20000 jobs/);

    const piped = asyncfirst(['backup', 'large-piped.db', '--database', database]);
    expect(piped.status).toBe(0);
    expect(piped.stdout).toMatch(/^wrote large-piped\.db: integrity ok, schema version \d+, 20000 jobs\n$/);
    expect(piped.stderr).toBe('');
  });

  it('restore shows its long steps on a terminal: the check of the copy, then the safety copy; none when piped', () => {
    const database = join(work, 'progress/restored.db');
    expect(asyncfirst(['migrate', '--database', database]).status).toBe(0);
    expect(asyncfirst(['backup', 'restore-me.db', '--database', database]).status).toBe(0);
    const dryRun = asyncfirstOnTerminal(['restore', 'restore-me.db', '--dry-run', '--database', database]);
    expect(dryRun.status).toBe(0);
    expect(dryRun.output).toContain('checking restore-me.db (PRAGMA integrity_check)…');
    const onTerminal = asyncfirstOnTerminal(['restore', 'restore-me.db', '--database', database]);
    expect(onTerminal.status).toBe(0);
    expect(onTerminal.output).toContain('checking restore-me.db (PRAGMA integrity_check)…');
    expect(onTerminal.output).toMatch(/keeping the live database as .*restored\.db\.before-restore-.*…/);
    expect(onTerminal.output).toMatch(/restored .*restored\.db from restore-me\.db/);
    const piped = asyncfirst(['restore', 'restore-me.db', '--database', database]);
    expect(piped.status).toBe(0);
    expect(piped.stdout).toMatch(/^restored .*restored\.db from restore-me\.db \(schema version \d+, 0 jobs\)\nthe database it replaced is kept as /);
    expect(piped.stderr).toBe('');
  });

  it('backup copies one snapshot while another connection keeps writing: the jobs as they were when it began, never restarted', async () => {
    const { backupDatabase } = await import('../src/cli/database.js');
    const database = join(work, 'progress/busy.db');
    largeDatabase(database);
    const writer = new Database(database);
    writer.pragma('journal_mode = WAL');
    const insert = writer.prepare(
      `INSERT INTO jobs (id, principal, operation, input, status, max_attempts, run_at, created_at, updated_at) VALUES (?, 'bob', 'createReport', '{}', 'queued', 3, 0, 0, 0)`,
    );
    const count = writer.prepare(`UPDATE job_counts SET count = count + 1 WHERE operation = 'createReport' AND status = 'queued'`);
    // Each job with its count in one transaction, as the driver writes them.
    const writeOne = writer.transaction((id: string) => {
      insert.run(id);
      count.run();
    });
    let written = 0;
    const writing = setInterval(() => writeOne(`late-${written++}`), 1);
    const copied: number[] = [];
    try {
      const report = await backupDatabase({ kind: 'sqlite', path: database }, join(work, 'progress/busy-copy.db'), {
        copied: (pages) => copied.push(pages),
        checking: () => {},
      });
      expect(report.jobs).toBe(20_000);
    } finally {
      clearInterval(writing);
      writer.close();
    }
    expect(written).toBeGreaterThan(5);
    // A restart would start the count of copied pages again from the first page.
    expect(copied).toEqual([...copied].sort((a, b) => a - b));
    const copy = new Database(join(work, 'progress/busy-copy.db'), { readonly: true });
    expect(copy.prepare(`SELECT count(*) AS count FROM jobs WHERE principal = 'bob'`).get()).toEqual({ count: 0 });
    // The counts agree with the rows: one consistent moment of the database.
    expect(copy.prepare('SELECT sum(count) AS count FROM job_counts').get()).toEqual({ count: 20_000 });
    copy.close();
  });
});

describe('jobs', () => {
  it('list, show, cancel and retry jobs in the database, with --json, and the errors of each', async () => {
    const databaseUrl = join(work, 'jobs-cli/jobs.db');
    const app = await createAsyncFirst(demoOptions({ apiKeys: 'alice:key-a', config: { databaseUrl, logLevel: 'silent' } }));
    const first = await app.enqueue('createReport', { body: { title: 'a', rows: 1 } }, { principal: 'alice' });
    const second = await app.enqueue('createReport', { body: { title: 'b', rows: 2 } }, { principal: 'bob' });
    await app.close();
    const env = { DATABASE_URL: databaseUrl };

    const list = asyncfirst(['jobs', 'list'], { env });
    expect(list.status).toBe(0);
    expect(list.stdout.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(new RegExp(`^${second.jobId}  queued\\s+createReport  bob  0/\\d+  \\d{4}-`)),
      expect.stringMatching(new RegExp(`^${first.jobId}  queued\\s+createReport  alice  0/\\d+  `)),
    ]);
    const json = JSON.parse(asyncfirst(['jobs', 'list', '--json', '--principal', 'alice'], { env }).stdout) as { jobs: { id: string }[] };
    expect(json.jobs.map((job) => job.id)).toEqual([first.jobId]);
    expect(asyncfirst(['jobs', 'list', '--status', 'succeeded'], { env }).stdout).toBe('no jobs\n');
    const byOperation = JSON.parse(asyncfirst(['jobs', 'list', '--json', '--operation', 'createReport', '--status', 'queued'], { env }).stdout) as {
      jobs: { id: string }[];
    };
    expect(byOperation.jobs.map((job) => job.id)).toEqual([second.jobId, first.jobId]);
    expect(asyncfirst(['jobs', 'list', '--operation', 'estimateReport'], { env }).stdout).toBe('no jobs\n');
    const badStatus = asyncfirst(['jobs', 'list', '--status', 'done'], { env });
    expect(badStatus.status).toBe(2);
    expect(badStatus.stderr).toContain('--status done: use one of queued, running, succeeded, failed, canceled');

    const shown = JSON.parse(asyncfirst(['jobs', 'show', first.jobId, '--json'], { env }).stdout) as Record<string, unknown>;
    expect(shown).toMatchObject({ id: first.jobId, principal: 'alice', operation: 'createReport', status: 'queued', attempts: 0 });
    const missing = asyncfirst(['jobs', 'show', '01J00000000000000000000000'], { env });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('there is no job 01J00000000000000000000000');

    const notRetryable = asyncfirst(['jobs', 'retry', first.jobId], { env });
    expect(notRetryable.status).toBe(1);
    expect(notRetryable.stderr).toContain(`job ${first.jobId} is queued: only a failed or canceled job can be retried`);
    expect(asyncfirst(['jobs', 'cancel', first.jobId], { env })).toMatchObject({ status: 0, stdout: `job ${first.jobId} is canceled\n` });
    const again = asyncfirst(['jobs', 'cancel', first.jobId], { env });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`job ${first.jobId} has already ended (canceled)`);
    expect(asyncfirst(['jobs', 'retry', first.jobId], { env })).toMatchObject({ status: 0, stdout: `job ${first.jobId} is queued again\n` });
    expect(JSON.parse(asyncfirst(['jobs', 'show', first.jobId, '--json'], { env }).stdout)).toMatchObject({ status: 'queued', attempts: 0 });
  });
});

describe('init, serve and worker', () => {
  it('init scaffolds a service whose contract passes check and whose generated files are current; a non-empty folder is refused', () => {
    const created = asyncfirst(['init', 'my-service']);
    expect(created.status).toBe(0);
    expect(created.stdout).toContain('created my-service: package.json, openapi.yaml, service.js, main.js, test/service.test.js, README.md, .gitignore');
    const dir = join(work, 'my-service');
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      type: string;
      scripts: Record<string, string>;
      dependencies: Record<string, string>;
    };
    expect(manifest.type).toBe('module');
    expect(Object.keys(manifest.scripts)).toEqual(expect.arrayContaining(['start', 'worker', 'generate', 'test']));
    expect(manifest.dependencies.asyncfirst).toMatch(/^\^\d+\.\d+\.\d+/);
    expect(readFileSync(join(dir, 'test/service.test.js'), 'utf8')).toContain("from 'asyncfirst/testing'");
    expect(asyncfirst(['check'], { cwd: dir }).status).toBe(0);
    expect(asyncfirst(['generate', '--check'], { cwd: dir }).status).toBe(0);
    const again = asyncfirst(['init', 'my-service']);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('my-service is not empty');
  });

  it('serve and worker refuse a module that is missing or exports no options', () => {
    const missing = asyncfirst(['serve', 'nowhere.js']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('cannot find the service module nowhere.js');
    writeFileSync(join(work, 'empty.mjs'), 'export const unrelated = 1;\n');
    const empty = asyncfirst(['worker', 'empty.mjs']);
    expect(empty.status).toBe(1);
    expect(empty.stderr).toContain('empty.mjs exports no asyncfirst options');
  });

  it('serve runs a service module until SIGTERM stops it gracefully', async () => {
    writeFileSync(
      join(work, 'service.ts'),
      `import { demoOptions } from ${JSON.stringify(join(repo, 'src/demo/service.ts'))};\nexport default () => demoOptions({ apiKeys: 'alice:key-a' });\n`,
    );
    const child = spawn(process.execPath, ['--import', tsx, main, 'serve', 'service.ts'], {
      cwd: work,
      env: { ...process.env, DATABASE_URL: join(work, 'served/jobs.db'), PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = await waitForOutput(child, /"address":"[^"]+"/);
    const address = /"address":"([^"]+)"/.exec(output)?.[1];
    const health = await fetch(`${address}/openapi.json`);
    expect(health.status).toBe(200);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((done) => child.on('exit', done));
    expect(code).toBe(0);
  });

  it('worker runs the jobs in the database with no HTTP server until SIGINT stops it gracefully; WORKER_CONCURRENCY=0 exits 2', async () => {
    writeFileSync(
      join(work, 'worker-service.ts'),
      `import { demoOptions } from ${JSON.stringify(join(repo, 'src/demo/service.ts'))};\nexport const options = demoOptions({ apiKeys: 'alice:key-a' });\n`,
    );
    const databaseUrl = join(work, 'worked/jobs.db');
    const app = await createAsyncFirst(demoOptions({ apiKeys: 'alice:key-a', config: { databaseUrl, logLevel: 'silent', workerConcurrency: 0 } }));
    const { jobId } = await app.enqueue('createReport', { body: { title: 'by the worker', rows: 3 } }, { principal: 'alice' });
    await app.close();

    const child = spawn(process.execPath, ['--import', tsx, main, 'worker', 'worker-service.ts'], {
      cwd: work,
      env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'info', WORKER_POLL_MS: '50' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = await waitForOutput(child, new RegExp(`"jobId":"${jobId}"[^\\n]*"msg":"job succeeded"`));
    expect(output).toContain('"msg":"worker started"');
    expect(output).not.toContain('listening');
    // SIGINT (Ctrl-C at a terminal) stops it as gracefully as SIGTERM stops serve above.
    child.kill('SIGINT');
    expect(await new Promise<number | null>((done) => child.on('exit', done))).toBe(0);
    const db = new Database(databaseUrl, { readonly: true });
    expect(db.prepare('SELECT status, result FROM jobs WHERE id = ?').get(jobId)).toEqual({
      status: 'succeeded',
      result: expect.stringContaining('"title":"by the worker"'),
    });
    db.close();

    const refused = spawnSync(process.execPath, ['--import', tsx, main, 'worker', 'worker-service.ts'], {
      cwd: work,
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent', WORKER_CONCURRENCY: '0' },
    });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('WORKER_CONCURRENCY is 0: a worker process needs at least 1');
  });
});

async function startDemo(databasePath: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', tsx, join(repo, 'src/demo/main.ts'), 'serve'], {
    env: { ...process.env, DATABASE_URL: databasePath, PORT: '0', API_KEYS: 'alice:key-a', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForOutput(child, /listening/);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((done) => child.on('exit', done));
  child.kill('SIGTERM');
  await exited;
}

function waitForOutput(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((done, fail) => {
    let output = '';
    const timer = setTimeout(() => fail(new Error(`no ${pattern} in 20 s; output: ${output}`)), 20_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      if (pattern.test(output)) {
        clearTimeout(timer);
        done(output);
      }
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.on('exit', (code) => fail(new Error(`exited with ${code} before ${pattern}; output: ${output}`)));
  });
}

describe('schedules', () => {
  const nightly = {
    name: 'nightly',
    operationId: 'createReport',
    cron: '0 0 3 * * *',
    timezone: 'Europe/Paris',
    backfill: 'PT1H',
    input: { title: 'n', rows: 1 },
  };

  /** Starts the demo with these schedules (its worker declares them), then stops it. */
  async function declare(config: { databaseUrl: string; databaseSchema?: string }, schedules: (typeof nightly)[]) {
    const app = await createAsyncFirst({ ...demoOptions({ apiKeys: 'alice:key-a', config: { ...config, logLevel: 'silent' } }), schedules });
    app.startBackground();
    const names = schedules.map((schedule) => schedule.name);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const listed = await app.store.listSchedules();
      if (
        names.every((name) => listed.some((row) => row.name === name && row.retiredAt === undefined)) &&
        (names.length > 0 || listed.every((row) => row.retiredAt))
      )
        break;
      if (Date.now() > deadline) throw new Error(`the schedules were not declared: ${JSON.stringify(listed)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await app.close();
  }

  for (const driver of ['SQLite', 'PostgreSQL'] as const) {
    it(`${driver}: lists each schedule with its cron, zone, last tick and next runs (--json, --next), and a schedule no process declares any more as retired`, async () => {
      const { schema, drop } = freshSchema('af_cli_sched');
      const config = driver === 'SQLite' ? { databaseUrl: join(work, 'schedules-cli/jobs.db') } : { databaseUrl: TEST_DATABASE_URL, databaseSchema: schema };
      const env: Record<string, string> =
        driver === 'SQLite' ? { DATABASE_URL: config.databaseUrl } : { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema };
      try {
        expect(asyncfirst(['schedules'], { env })).toMatchObject({ status: 0, stdout: 'no schedules\n' });
        await declare(config, [nightly]);
        const line = asyncfirst(['schedules'], { env });
        expect(line.status).toBe(0);
        // 03:00 in Paris is 01:00 or 02:00 UTC, by the season.
        expect(line.stdout).toMatch(
          /^nightly {2}createReport {2}"0 0 3 \* \* \*" Europe\/Paris {2}last tick \d{4}-\S+Z {2}next \d{4}-\d\d-\d\dT0[12]:00:00\.000Z\n$/,
        );
        const json = JSON.parse(asyncfirst(['schedules', '--json', '--next', '3'], { env }).stdout) as { schedules: Array<Record<string, unknown>> };
        expect(json.schedules).toHaveLength(1);
        const [view] = json.schedules as [Record<string, unknown>];
        expect(view).toMatchObject({ name: 'nightly', operation: 'createReport', cron: '0 0 3 * * *', timezone: 'Europe/Paris', backfillSeconds: 3600 });
        const runs = (view.nextRuns as string[]).map((run) => Date.parse(run));
        expect(runs).toHaveLength(3);
        expect(runs[1]! - runs[0]!).toBeGreaterThanOrEqual(23 * 3600_000);
        expect(runs[0]!).toBeGreaterThan(Date.now());
        expect(view.retiredAt).toBeUndefined();

        // Started again without it: the row stays, marked retired, and nobody ticks it.
        await declare(config, []);
        const retired = JSON.parse(asyncfirst(['schedules', '--json'], { env }).stdout) as { schedules: Array<Record<string, unknown>> };
        expect(retired.schedules[0]).toMatchObject({ name: 'nightly', nextRuns: [], retiredAt: expect.stringMatching(/^\d{4}-/) });
        expect(asyncfirst(['schedules'], { env }).stdout).toMatch(/ retired \S+ \(no process declares it\)\n$/);

        const usage = asyncfirst(['schedules', '--next', '0'], { env });
        expect(usage.status).toBe(2);
        expect(usage.stderr).toContain('--next 0: use 1 to 100');
      } finally {
        await drop();
      }
    }, 30_000);
  }
});
