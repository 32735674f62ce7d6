#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { CliError } from './errors.js';

/*
 * The asyncfirst command. Exit codes: 0 done, 1 failed (the message says why), 2 usage (a wrong
 * command, option or argument). Each command imports what it needs when it runs: the linter, the
 * type generator and the server take a second to load, and --help should not wait for them.
 */

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('asyncfirst')
  .description('Contract-first asynchronous HTTP APIs: scaffold, generate, check, serve and operate an asyncfirst service.')
  .version(version)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

const contractOption = () => new Option('--contract <file>', 'the OpenAPI contract').default('openapi.yaml');
const databaseOption = () => new Option('--database <url>', 'the database (default: DATABASE_URL, else ./data/asyncfirst.db)');

program
  .command('init')
  .description('scaffold a new service in <dir>: contract, typed handlers, a test with asyncfirst/testing, scripts')
  .argument('<dir>', 'a new or empty folder')
  .action(async (dir: string) => {
    const { scaffold } = await import('./scaffold.js');
    const files = await scaffold(dir, version);
    console.log(`created ${dir}: ${files.join(', ')}`);
    console.log(`next: cd ${dir} && npm install && npm test && npm start`);
  });

program
  .command('generate')
  .description('write the served document (openapi.json) and its TypeScript types (api.ts) for the contract')
  .addOption(contractOption())
  .option('--out <dir>', 'where to write them', 'generated')
  .option('--check', 'write nothing; exit 1 if the files are stale')
  .action(async (options: { contract: string; out: string; check?: boolean }) => {
    const { generate } = await import('./generate.js');
    const { changed } = await generate({ contract: options.contract, out: options.out, check: options.check === true });
    if (options.check) {
      if (changed.length > 0) throw new CliError(`stale: ${changed.join(', ')}; run asyncfirst generate`);
      console.log(`${options.out} is up to date with ${options.contract}`);
    } else {
      console.log(changed.length > 0 ? changed.map((path) => `wrote ${path}`).join('\n') : `${options.out} is up to date with ${options.contract}`);
    }
  });

program
  .command('check')
  .description("validate the contract as asyncfirst serves it and lint it with Redocly's recommended rules")
  .addOption(contractOption())
  .option('--served', 'lint the document as served at /openapi.json (asyncfirst endpoints merged in) instead of the file')
  .action(async (options: { contract: string; served?: boolean }) => {
    const { checkContract } = await import('./check.js');
    const problems = await checkContract(options.contract, { served: options.served === true });
    for (const problem of problems) console.log(`${problem.place} ${problem.severity} ${problem.rule}: ${problem.message}`);
    const errors = problems.filter((problem) => problem.severity === 'error').length;
    const warnings = problems.length - errors;
    const summary = `${options.contract}: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`;
    if (errors > 0) throw new CliError(summary);
    console.log(summary);
  });

for (const mode of ['serve', 'worker'] as const) {
  program
    .command(mode)
    .description(
      mode === 'serve'
        ? 'run the service module: HTTP and the worker (unless WORKER_CONCURRENCY=0); SIGTERM/SIGINT stop it gracefully'
        : 'run the worker of the service module alone, with no HTTP server; SIGTERM/SIGINT stop it gracefully',
    )
    .argument('<module>', 'a module exporting its asyncfirst options (export const options = { contract, handlers })')
    .action(async (module: string) => {
      const [{ runProcess }, { loadServiceModule }] = await Promise.all([import('../cli.js'), import('./service-module.js')]);
      await runProcess(await loadServiceModule(module), mode);
    });
}

program
  .command('migrate')
  .description('apply the schema migrations to the database and print its schema version')
  .addOption(databaseOption())
  .action(async (options: { database?: string }) => {
    const [{ databaseTarget, migrateDatabase, withoutPassword }, { terminalProgress }] = await Promise.all([import('./database.js'), import('./progress.js')]);
    const { target, config } = databaseTarget(options.database);
    const line = terminalProgress();
    const schemaVersion = await migrateDatabase(
      target,
      config,
      line &&
        ((step) => {
          const text = `migration ${step.version} of ${step.of}${step.name ? ` (${step.name})` : ''}`;
          if (step.ms === undefined) line.update(`applying ${text}…`);
          else line.done(`applied ${text} in ${Math.round(step.ms)} ms`);
        }),
    );
    console.log(`${target.kind === 'sqlite' ? target.path : withoutPassword(target.url)}: schema version ${schemaVersion}`);
  });

program
  .command('backup')
  .description('write an online, consistent copy of the SQLite database to <file> (never overwrites), checked with integrity_check')
  .argument('<file>', 'the copy to write (must not exist)')
  .addOption(databaseOption())
  .action(async (file: string, options: { database?: string }) => {
    const [{ backupDatabase, databaseTarget }, { terminalProgress }] = await Promise.all([import('./database.js'), import('./progress.js')]);
    const { target } = databaseTarget(options.database);
    const line = terminalProgress();
    const report = await backupDatabase(
      target,
      file,
      line && {
        copied(pages, totalPages) {
          const percent = totalPages === 0 ? 100 : Math.floor((pages / totalPages) * 100);
          const text = `copying ${target.kind === 'sqlite' ? target.path : ''}: ${percent}% (${pages} of ${totalPages} pages)`;
          if (pages === totalPages) line.done(text);
          else line.update(text);
        },
        checking: () => line.done(`checking ${file} (PRAGMA integrity_check)…`),
      },
    );
    console.log(`wrote ${report.file}: integrity ok, schema version ${report.schemaVersion}, ${report.jobs} jobs`);
  });

program
  .command('restore')
  .description('swap a checked copy in for the SQLite database, keeping a safety copy; refused while a process holds the database')
  .argument('<file>', 'a copy made by asyncfirst backup')
  .addOption(databaseOption())
  .option('--dry-run', 'only check the copy')
  .action(async (file: string, options: { database?: string; dryRun?: boolean }) => {
    const [{ checkCopy, databaseTarget, restoreDatabase }, { terminalProgress }] = await Promise.all([import('./database.js'), import('./progress.js')]);
    const { target } = databaseTarget(options.database);
    const line = terminalProgress();
    if (options.dryRun) {
      line?.done(`checking ${file} (PRAGMA integrity_check)…`);
      const report = checkCopy(file);
      console.log(`${file}: integrity ok, schema version ${report.schemaVersion}, ${report.jobs} jobs`);
      return;
    }
    const report = restoreDatabase(target, file, new Date(), line && ((step) => line.done(step)));
    if (target.kind === 'sqlite') console.log(`restored ${target.path} from ${file} (schema version ${report.schemaVersion}, ${report.jobs} jobs)`);
    if (report.safetyCopy) console.log(`the database it replaced is kept as ${report.safetyCopy}`);
  });

const jobs = program.command('jobs').description("operate on jobs in the database (every principal's, as an operator): list, show, retry, cancel");
const jsonOption = () => new Option('--json', 'print JSON instead of lines');
const collect = (value: string, previous: string[] = []) => [...previous, value];

jobs
  .command('list')
  .description('list jobs newest first')
  .option('--status <status>', 'only jobs in this state (repeatable): queued, running, succeeded, failed, canceled', collect)
  .option('--operation <operationId>', 'only jobs of this operation')
  .option('--principal <principal>', "only this principal's jobs")
  .option('--limit <n>', 'jobs per page, 1 to 200', '50')
  .option('--cursor <cursor>', 'the next page: the cursor the previous page printed')
  .addOption(databaseOption())
  .addOption(jsonOption())
  .action(async (options: { status?: string[]; operation?: string; principal?: string; limit: string; cursor?: string; database?: string; json?: boolean }) => {
    const { jobLine, jobView, listJobs } = await import('./jobs.js');
    const page = await listJobs(options);
    if (options.json) {
      console.log(JSON.stringify({ jobs: page.jobs.map(jobView), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) }, null, 2));
      return;
    }
    for (const job of page.jobs) console.log(jobLine(job));
    if (page.jobs.length === 0) console.log('no jobs');
    if (page.nextCursor) console.log(`more: --cursor ${page.nextCursor}`);
  });

jobs
  .command('show')
  .description('show one job: its state, attempts, progress, result or error')
  .argument('<id>', 'the job id')
  .addOption(databaseOption())
  .addOption(jsonOption())
  .action(async (id: string, options: { database?: string; json?: boolean }) => {
    const { jobView, showJob } = await import('./jobs.js');
    const view = jobView(await showJob(id, options.database));
    console.log(
      options.json
        ? JSON.stringify(view, null, 2)
        : Object.entries(view)
            .map(([name, value]) => `${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
            .join('\n'),
    );
  });

jobs
  .command('retry')
  .description('queue a failed or canceled job again as new (the same id, a fresh attempt budget)')
  .argument('<id>', 'the job id')
  .addOption(databaseOption())
  .addOption(jsonOption())
  .action(async (id: string, options: { database?: string; json?: boolean }) => {
    const { jobView, retryJob } = await import('./jobs.js');
    const job = await retryJob(id, options.database);
    console.log(options.json ? JSON.stringify(jobView(job), null, 2) : `job ${id} is queued again`);
  });

jobs
  .command('cancel')
  .description('cancel a queued job, or abort a running one at its next lease renewal')
  .argument('<id>', 'the job id')
  .addOption(databaseOption())
  .addOption(jsonOption())
  .action(async (id: string, options: { database?: string; json?: boolean }) => {
    const { cancelJob, jobView } = await import('./jobs.js');
    const outcome = await cancelJob(id, options.database);
    if (options.json) console.log(JSON.stringify(jobView(outcome.job), null, 2));
    else console.log(outcome.kind === 'canceled' ? `job ${id} is canceled` : `job ${id} is running: its handler is aborted at its next lease renewal`);
  });

program
  .command('schedules')
  .description('list the recurring schedules the database records: operation, cron, last tick and next runs')
  .option('--next <n>', 'next runs to show per schedule, 1 to 100', '1')
  .addOption(databaseOption())
  .addOption(jsonOption())
  .action(async (options: { next: string; database?: string; json?: boolean }) => {
    const runs = Number(options.next);
    if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new CliError(`--next ${options.next}: use 1 to 100`, 2);
    const { listSchedules, scheduleLine } = await import('./schedules.js');
    const { scheduleView } = await import('../contract/schedule-view.js');
    const views = (await listSchedules(options.database)).map((schedule) => scheduleView(schedule, Date.now(), runs));
    if (options.json) console.log(JSON.stringify({ schedules: views }, null, 2));
    else console.log(views.length === 0 ? 'no schedules' : views.map(scheduleLine).join('\n'));
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version end with exit code 0; usage errors were printed by commander.
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  // ContractError and ConfigError by name: their modules are loaded only by the commands that need them.
  if (error instanceof CliError || (error instanceof Error && (error.name === 'ContractError' || error.name === 'ConfigError'))) {
    console.error(`asyncfirst: ${error.message}`);
    process.exit(error instanceof CliError ? error.exitCode : 1);
  }
  throw error;
}
