import { ProblemError } from '../core/problems.js';

/*
 * Later work: a submission may ask its job to start no earlier than a time — over HTTP with the
 * Not-Before header (delta-seconds or an HTTP date), from code with enqueue's `runAt`. The time is
 * part of the request: it is in the fingerprint, so a retry with the same Idempotency-Key and the
 * same Not-Before replays the job (whose start time stays the first submission's), and one with
 * another Not-Before is another request (422 idempotency-key-reused).
 */

/** When a submission asked its job to start, and how the request said so. */
export interface NotBefore {
  /** Milliseconds since the epoch; never before the submission (a time already past means now). */
  runAt: number;
  /** The request's ask as its fingerprint covers it: `delay:60` (delta-seconds) or `at:<ISO 8601>` (a time). */
  asked: string;
}

/** RFC 9110 §5.6.7 IMF-fixdate, the HTTP date format senders must use: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** RFC 9110 §10.2.3 delta-seconds: a whole number of seconds. */
const DELTA_SECONDS = /^[0-9]+$/;

const FORMS = 'delta-seconds (a whole number of seconds, e.g. 60) or an HTTP date (IMF-fixdate, e.g. Sun, 06 Nov 1994 08:49:37 GMT)';

/** The Not-Before header's lines read as a start time; undefined when none was sent. Throws 400 not-before-invalid. */
export function parseNotBefore(lines: string[] | undefined, now: number, maxSeconds: number): NotBefore | undefined {
  if (lines === undefined) return undefined;
  if (lines.length > 1) throw new ProblemError('notBeforeInvalid', `Not-Before was sent on ${lines.length} header lines; send one, as ${FORMS}.`);
  // Only HTTP's optional whitespace (SP, HTAB) surrounds a field value.
  const value = (lines[0] ?? '').replace(/^[\t ]+|[\t ]+$/g, '');
  if (DELTA_SECONDS.test(value)) {
    const seconds = Number(value);
    if (seconds > maxSeconds) throw tooFarAhead('Not-Before', seconds, maxSeconds);
    return { runAt: now + seconds * 1000, asked: `delay:${seconds}` };
  }
  const at = httpDate(value);
  if (at === undefined) {
    const shown = value.length > 64 ? `${value.slice(0, 64)}…` : value;
    throw new ProblemError('notBeforeInvalid', `Not-Before ${JSON.stringify(shown)} is not ${FORMS}.`);
  }
  return startAt(at, now, maxSeconds, 'Not-Before');
}

/** enqueue's `runAt` (a Date, or milliseconds since the epoch) read as a start time. Throws 400 not-before-invalid. */
export function readRunAt(runAt: Date | number, now: number, maxSeconds: number): NotBefore {
  const at = runAt instanceof Date ? runAt.getTime() : runAt;
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new ProblemError('notBeforeInvalid', 'runAt is not a valid time: give a Date or milliseconds since the epoch.');
  }
  return startAt(Math.round(at), now, maxSeconds, 'runAt');
}

function startAt(at: number, now: number, maxSeconds: number, name: string): NotBefore {
  const seconds = (at - now) / 1000;
  if (seconds > maxSeconds) throw tooFarAhead(name, Math.ceil(seconds), maxSeconds);
  return { runAt: Math.max(now, at), asked: `at:${new Date(at).toISOString()}` };
}

function tooFarAhead(name: string, seconds: number, maxSeconds: number): ProblemError {
  return new ProblemError(
    'notBeforeInvalid',
    `${name} asks for a start ${seconds} s from now; this server accepts at most ${maxSeconds} s ahead (NOT_BEFORE_MAX_SECONDS).`,
  );
}

/** An IMF-fixdate's time, or undefined when the text is not one (a day that does not exist, a wrong weekday). */
function httpDate(text: string): number | undefined {
  const match = IMF_FIXDATE.exec(text);
  if (!match) return undefined;
  const [, weekday, day, month, year, hour, minute, second] = match as unknown as [string, string, string, string, string, string, string, string];
  const at = Date.UTC(Number(year), MONTHS.indexOf(month), Number(day), Number(hour), Number(minute), Number(second));
  const date = new Date(at);
  const exact =
    date.getUTCDate() === Number(day) &&
    date.getUTCHours() === Number(hour) &&
    date.getUTCMinutes() === Number(minute) &&
    date.getUTCSeconds() === Number(second) &&
    WEEKDAYS[date.getUTCDay()] === weekday;
  return exact ? at : undefined;
}
