import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

/** The repository root (bench/lib/ is two levels down). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The demo contract the asyncfirst targets serve. */
export const CONTRACT_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));

/** The one principal of every benchmark request: API_KEYS='bench:bench-key'. */
export const BENCH_PRINCIPAL = 'bench';
export const BENCH_API_KEY = 'bench-key';
export const BENCH_API_KEYS = `${BENCH_PRINCIPAL}:${BENCH_API_KEY}`;

/** The request body of every POST /reports. */
export const REPORT_BODY = { title: 'Quarterly report', rows: 1000, format: 'csv' } as const;
export const REPORT_BODY_JSON = JSON.stringify(REPORT_BODY);

/** A valid result of createReport for REPORT_BODY (what the no-op handlers return). */
export function noopReport(body: { title: string; rows: number }): { title: string; format: 'csv'; rowCount: number; bytes: number; sha256: string } {
  return { title: body.title, format: 'csv', rowCount: body.rows, bytes: 0, sha256: '0'.repeat(64) };
}

/**
 * The handler a drain runs: `noop` returns a valid Report at once (synchronous); `report` is the
 * demo's own createReport (async: builds and hashes the report, here of one row); `sleep5` awaits
 * a 5 ms timer first, like a handler that waits on the network.
 */
export type DrainHandler = 'noop' | 'report' | 'sleep5';
export const DRAIN_HANDLERS: readonly DrainHandler[] = ['noop', 'report', 'sleep5'];

/** The stored input of a drain's jobs: one row for the demo's real handler, so the job stays short. */
export function drainBody(handler: DrainHandler): { title: string; rows: number; format: 'csv' } {
  return handler === 'report' ? { title: REPORT_BODY.title, rows: 1, format: 'csv' } : REPORT_BODY;
}

/** A handler that waits 5 ms (a timer, as for a network call), then returns a valid Report. */
export async function sleepingReport(body: { title: string; rows: number }): Promise<ReturnType<typeof noopReport>> {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return noopReport(body);
}

/** Where the peers' backing services are; environment variables override. */
export const REDIS_HOST = process.env.BENCH_REDIS_HOST ?? '127.0.0.1';
export const REDIS_PORT = Number(process.env.BENCH_REDIS_PORT ?? 6379);
export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const PG_HOST = new URL(PG_URL).hostname;
export const PG_PORT = Number(new URL(PG_URL).port || 5432);

/** Queue names the peers use; each run removes what an earlier run left. */
export const BULLMQ_QUEUE = 'asyncfirst-bench-reports';
export const PGBOSS_QUEUE = 'asyncfirst-bench-reports';

type Schema = Record<string, unknown>;

/** The ReportRequest schema from openapi.yaml with its local $refs inlined (the peers validate with it). */
export function reportRequestSchema(): Schema {
  const document = parseYaml(readFileSync(CONTRACT_PATH, 'utf8')) as { components: { schemas: Record<string, Schema> } };
  const schemas = document.components.schemas;
  const inline = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(inline);
    if (value === null || typeof value !== 'object') return value;
    const ref = (value as { $ref?: unknown }).$ref;
    if (typeof ref === 'string') {
      const name = ref.replace('#/components/schemas/', '');
      const target = schemas[name];
      if (!target) throw new Error(`openapi.yaml: cannot resolve ${ref}`);
      return inline(target);
    }
    return Object.fromEntries(Object.entries(value).map(([key, member]) => [key, inline(member)]));
  };
  const schema = schemas.ReportRequest;
  if (!schema) throw new Error('openapi.yaml has no ReportRequest schema');
  return inline(schema) as Schema;
}

/** The 202 body the peers answer with (asyncfirst's JobAccepted shape). */
export const ACCEPTED_SCHEMA: Schema = {
  type: 'object',
  required: ['status', 'job_id', 'location'],
  properties: { status: { type: 'string' }, job_id: { type: 'string' }, location: { type: 'string' } },
};
