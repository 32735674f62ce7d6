import { type AsyncFirstBackground, type AsyncFirstOptions, createAsyncFirst, createAsyncFirstWorker } from './app.js';
import { ConfigError } from './config.js';
import { ContractError } from './contract/load.js';
import { withoutPassword } from './core/database-url.js';

/**
 * Runs a service as a process: `serve` (HTTP, and the worker unless WORKER_CONCURRENCY=0) or
 * `worker` (the worker alone, against the same database, with no HTTP server). SIGTERM and SIGINT
 * stop it gracefully. `options` are the service's (or a function that makes them).
 */
export async function runProcess<HandlerMap extends object>(
  options: AsyncFirstOptions<HandlerMap> | (() => AsyncFirstOptions<HandlerMap> | Promise<AsyncFirstOptions<HandlerMap>>),
  mode: string = process.argv[2] ?? 'serve',
): Promise<void> {
  if (mode !== 'serve' && mode !== 'worker') {
    console.error(`unknown command "${mode}": use serve or worker`);
    process.exit(2);
  }
  let service: AsyncFirstBackground;
  let listen: (() => Promise<string>) | undefined;
  // The listening line names the service by its contract's title.
  let title = 'asyncfirst service';
  try {
    const resolved = typeof options === 'function' ? await options() : options;
    if (mode === 'worker') {
      service = await createAsyncFirstWorker(resolved);
    } else {
      const app = await createAsyncFirst(resolved);
      service = app;
      listen = () => app.listen();
      const info = app.servedDocument.info as { title?: unknown } | undefined;
      if (typeof info?.title === 'string' && info.title.trim() !== '') title = info.title;
    }
  } catch (error) {
    if (error instanceof ContractError || error instanceof ConfigError) {
      console.error(`asyncfirst cannot start: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const { log, config } = service;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down');
    // A backstop: whatever happens, the process ends shortly after the grace period.
    setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownGraceMs + 5000).unref();
    service.close().then(
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

  if (!listen) {
    if (!service.worker) {
      console.error('WORKER_CONCURRENCY is 0: a worker process needs at least 1');
      process.exit(2);
    }
    service.startBackground();
    log.info({ concurrency: config.workerConcurrency, database: withoutPassword(config.databaseUrl), pid: process.pid }, 'worker started');
  } else {
    const address = await listen();
    log.info({ address, worker: config.workerConcurrency, database: withoutPassword(config.databaseUrl) }, `${title} listening`);
  }
}
