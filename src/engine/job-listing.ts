import { ProblemError } from '../core/problems.js';
import type { JobListing, ListedJob } from '../store/driver.js';
import type { JobPage, JobQuery } from '../store/store.js';

/** Jobs per page when a listing names no limit, and the most it may ask for. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

/*
 * A cursor is the position of a page's last job (the database's insertion sequence), in base64url:
 * opaque to callers, so the way a position is kept can change without breaking their links.
 */
const CURSOR_TEXT = /^p([1-9][0-9]{0,15})$/;

function cursorOf(position: number): string {
  return Buffer.from(`p${position}`, 'latin1').toString('base64url');
}

/** The position a cursor encodes; a cursor no page gave out is ProblemError cursor-invalid. */
function positionOf(cursor: string): number {
  const match = CURSOR_TEXT.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  const position = Number(match?.[1]);
  // Node decodes base64url leniently (it skips stray characters): only the exact encoding is one of ours.
  if (!match || !Number.isSafeInteger(position) || cursorOf(position) !== cursor) {
    throw new ProblemError('cursorInvalid', 'The cursor is not one a page of this listing gave out; start again without it.');
  }
  return position;
}

/** What the driver is asked for: one job more than the page holds, to tell whether another page follows. */
export function listingOf(query: JobQuery): JobListing {
  const requested = query.limit ?? DEFAULT_PAGE_SIZE;
  const limit = Number.isFinite(requested) ? Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(requested))) : DEFAULT_PAGE_SIZE;
  return {
    ...(query.principal === undefined ? {} : { principal: query.principal }),
    ...(query.statuses === undefined ? {} : { statuses: query.statuses }),
    ...(query.operation === undefined ? {} : { operation: query.operation }),
    ...(query.createdAfter === undefined ? {} : { createdAfter: query.createdAfter }),
    ...(query.createdBefore === undefined ? {} : { createdBefore: query.createdBefore }),
    ...(query.cursor === undefined ? {} : { beforePosition: positionOf(query.cursor) }),
    limit: limit + 1,
    withInput: query.withInput === true,
  };
}

/** The page of what the driver listed for `listing`: the cursor names the last job shown when more follow. */
export function pageOf(listing: JobListing, listed: ListedJob[]): JobPage {
  const shown = listed.slice(0, listing.limit - 1);
  const last = shown[shown.length - 1];
  return { jobs: shown.map((entry) => entry.job), ...(listed.length > shown.length && last ? { nextCursor: cursorOf(last.position) } : {}) };
}
