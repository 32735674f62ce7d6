import type { AsyncFirstApp } from './app.js';
import { ConfigError } from './config.js';
import { ContractError } from './contract/load.js';

/**
 * Runs a service as a process: `serve` (HTTP, and the worker unless WORKER_CONCURRENCY=0) or
 * `worker` (the worker alone, against the same database). SIGTERM and SIGINT stop it gracefully.
 */
export async function runProcess(create: () => Promise<AsyncFirstApp>, mode: string = process.argv[2] ?? 'serve'): Promise<void> {
  if (mode !== 'serve' && mode !== 'worker') {
    console.error(`unknown command "${mode}": use serve or worker`);
    process.exit(2);
  }
  let app: AsyncFirstApp;
  try {
    app = await create();
  } catch (error) {
    if (error instanceof ContractError || error instanceof ConfigError) {
      console.error(`asyncfirst cannot start: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const log = app.server.log;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: app.config.shutdownGraceMs }, 'shutting down');
    // A backstop: whatever happens, the process ends shortly after the grace period.
    setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, app.config.shutdownGraceMs + 5000).unref();
    app.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  if (mode === 'worker') {
    if (!app.worker) {
      console.error('WORKER_CONCURRENCY is 0: a worker process needs at least 1');
      process.exit(2);
    }
    app.startBackground();
    log.info({ concurrency: app.config.workerConcurrency, database: app.config.databaseUrl }, 'worker started');
  } else {
    const address = await app.listen();
    log.info({ address, worker: app.config.workerConcurrency, database: app.config.databaseUrl }, 'asyncfirst demo listening');
  }
}
