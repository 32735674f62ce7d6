import type { operations } from '../../generated/api.js';
import { type AsyncFirstApp, type AsyncFirstOptions, createAsyncFirst } from '../app.js';
import type { AsyncFirstConfig } from '../config.js';
import type { Notifier } from '../delivery/notifiers.js';
import type { Handlers } from '../handlers.js';
import type { SecurityHandler } from '../http/security.js';
import { buildReport, estimateBytes, indexTerms } from './report.js';

/** The key accepted when API_KEYS is unset (development only; a warning is logged). */
export const DEVELOPMENT_API_KEY = 'dev-key';
export const DEVELOPMENT_PRINCIPAL = 'developer';

/** The demo's handlers, typed from generated/: a missing or mistyped handler is a compile error. */
export const reportHandlers: Handlers<operations> = {
  async createReport({ body }, { signal, progress, enqueue, job }) {
    const report = await buildReport(body, signal, progress);
    // The event-driven side effect: stored with this report's success, in the same transaction, or not at all.
    if (body.index === true && job) enqueue('indexReport', { body: { report: job.id, title: report.title, sha256: report.sha256 } }, { key: 'index' });
    return report;
  },
  indexReport({ body }) {
    return { report: body.report, sha256: body.sha256, terms: indexTerms(body.title) };
  },
  estimateReport({ query }) {
    const format = query.format ?? 'csv';
    return { rows: query.rows, format, estimatedBytes: estimateBytes(query.rows, format) };
  },
};

/** Parses API_KEYS ("alice:key-a,bob:key-b") into key → principal. */
export function parseApiKeys(value: string | undefined): Map<string, string> | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const keys = new Map<string, string>();
  for (const entry of value.split(',')) {
    const [principal, key, ...rest] = entry.trim().split(':');
    if (!principal || !key || rest.length > 0) throw new Error(`API_KEYS entry "${entry}" must be principal:key`);
    keys.set(key, principal);
  }
  return keys;
}

/** The demo's security handlers: the X-API-Key header or a bearer token, both looked up in API_KEYS. */
export function demoSecurity(apiKeys: Map<string, string> | undefined, warn: (message: string) => void = console.warn): Record<string, SecurityHandler> {
  let keys = apiKeys;
  if (!keys) {
    keys = new Map([[DEVELOPMENT_API_KEY, DEVELOPMENT_PRINCIPAL]]);
    warn(`API_KEYS is not set: accepting the development key "${DEVELOPMENT_API_KEY}" (principal "${DEVELOPMENT_PRINCIPAL}"). Set API_KEYS in production.`);
  }
  const lookup: SecurityHandler = (credential) => keys.get(credential);
  return { ApiKeyAuth: lookup, BearerAuth: lookup };
}

/** The demo's notifier: one log line per finished report job (the dispatcher's logger, component "notifications"). */
export const reportLogNotifier: Notifier = async (notification, { log }) => {
  const { job } = notification;
  log.info(
    { notifier: notification.notifier, jobId: job.id, principal: notification.principal, status: job.status, attempts: job.attempts, error: job.error?.title },
    `report job ${job.id} ${job.status}`,
  );
};

type DemoOptions = {
  contract?: string;
  config?: Partial<AsyncFirstConfig>;
  apiKeys?: string;
  /** Tell the report-log notifier of every report job's ending (npm start does; the tests and the benchmark leave it out). */
  logReports?: boolean;
} & Pick<AsyncFirstOptions<typeof reportHandlers>, 'store' | 'operations'>;

/** The demo service's options: its contract, handlers and security. */
export function demoOptions(options: DemoOptions = {}): AsyncFirstOptions<typeof reportHandlers> {
  return {
    contract: options.contract ?? new URL('../../openapi.yaml', import.meta.url).pathname,
    handlers: reportHandlers,
    security: demoSecurity(parseApiKeys(options.apiKeys ?? process.env.API_KEYS)),
    config: options.config,
    store: options.store,
    ...(options.logReports
      ? {
          notifiers: { 'report-log': reportLogNotifier },
          operations: { ...options.operations, createReport: { notify: ['report-log'], ...options.operations?.createReport } },
        }
      : { operations: options.operations }),
  };
}

/** The demo service, as `npm start` runs it. */
export function createDemo(options: DemoOptions = {}): Promise<AsyncFirstApp> {
  return createAsyncFirst(demoOptions(options));
}
