import { JOB_STATES, type JobState } from '../core/job-states.js';
import type { JobListing, ListedJob } from './driver.js';

/**
 * One index range a listing reads newest first: every job (the primary key), the jobs in one
 * state (jobs_status), or one principal's jobs in one state (jobs_principal_status).
 */
export type ListingScan = { scope: 'every' } | { scope: 'inState'; status: JobState } | { scope: 'ownInState'; principal: string; status: JobState };

/**
 * The scans that serve a listing, so that no listing walks past rows it filters out by state or
 * principal: a principal's listing reads one range per state (all five when no state is asked for).
 */
export function listingScans(listing: JobListing): ListingScan[] {
  const { principal, statuses } = listing;
  if (principal === undefined && statuses === undefined) return [{ scope: 'every' }];
  const states = [...new Set(statuses ?? JOB_STATES)];
  return principal === undefined
    ? states.map((status) => ({ scope: 'inState', status }))
    : states.map((status) => ({ scope: 'ownInState', principal, status }));
}

/** The newest `limit` jobs of the scans' results (each already newest first). */
export function newestFirst(results: ListedJob[][], limit: number): ListedJob[] {
  if (results.length === 1) return results[0] ?? [];
  return results
    .flat()
    .sort((a, b) => b.position - a.position)
    .slice(0, limit);
}
