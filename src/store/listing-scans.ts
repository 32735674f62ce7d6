import { JOB_STATES, type JobState } from '../core/job-states.js';
import type { JobListing, ListedJob } from './driver.js';

/**
 * One index range a listing reads newest first: every job (the primary key), the jobs in one
 * state, one principal's jobs, or one principal's jobs in one state. Which index serves each is
 * the driver's choice (its statements say).
 */
export type ListingScan =
  | { scope: 'every' }
  | { scope: 'inState'; status: JobState }
  | { scope: 'own'; principal: string }
  | { scope: 'ownInState'; principal: string; status: JobState };

/**
 * The scans that serve a listing, so that no listing walks past rows it filters out by state or
 * principal. A principal's listing of every state reads one range per state where the driver's
 * index of a principal's jobs is by state (`byState`: PostgreSQL), else that index alone (SQLite).
 */
export function listingScans(listing: JobListing, principalIndex: { byState: boolean }): ListingScan[] {
  const { principal, statuses } = listing;
  if (principal === undefined && statuses === undefined) return [{ scope: 'every' }];
  if (principal !== undefined && statuses === undefined && !principalIndex.byState) return [{ scope: 'own', principal }];
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
