import { JOB_LISTING_PARAMETERS } from '../contract/jobs-paths.js';
import type { JobState } from '../core/job-states.js';
import { jobBody } from '../engine/job-view.js';
import type { JobPage, JobQuery, JobRecord } from '../store/store.js';

/** GET /jobs's query string (also the dashboard's listing), as the served document declares it. */
export interface ListingQuery {
  status?: JobState[];
  operation?: string;
  createdAfter?: string;
  createdBefore?: string;
  cursor?: string;
  limit?: number;
}

/** The schema a listing's query string is validated with (unknown parameters are left alone: an API key may travel there). */
export const LISTING_QUERY_SCHEMA = {
  type: 'object',
  properties: Object.fromEntries(JOB_LISTING_PARAMETERS.map((parameter) => [parameter.name, parameter.schema])),
};

/** The engine's query for a listing's query string; `principal` undefined: every principal's jobs (an operator's). */
export function jobQueryOf(query: ListingQuery, principal: string | undefined): JobQuery {
  const { status, operation, createdAfter, createdBefore, cursor, limit } = query;
  return {
    ...(principal === undefined ? {} : { principal }),
    ...(status === undefined ? {} : { statuses: status }),
    ...(operation === undefined ? {} : { operation }),
    ...(createdAfter === undefined ? {} : { createdAfter: Date.parse(createdAfter) }),
    ...(createdBefore === undefined ? {} : { createdBefore: Date.parse(createdBefore) }),
    ...(cursor === undefined ? {} : { cursor }),
    ...(limit === undefined ? {} : { limit }),
  };
}

/** A job as an operator's listing shows it: with whose it is. */
export function withPrincipal(job: JobRecord): string {
  return `{"principal":${JSON.stringify(job.principal)},${jobBody(job).slice(1)}`;
}

/** A page of jobs as JSON (JobPage), each rendered by `render`. */
export function jobPageBody(page: JobPage, render: (job: JobRecord) => string): string {
  const next = page.nextCursor === undefined ? '' : `,"nextCursor":${JSON.stringify(page.nextCursor)}`;
  return `{"jobs":[${page.jobs.map(render).join(',')}]${next}}`;
}
