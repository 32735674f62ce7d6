/**
 * The one definition of a job's life cycle. The SQLite CHECK constraint, the TypeScript
 * types and the served OpenAPI document are all derived from this list.
 *
 *   queued ──claim──▶ running ──▶ succeeded
 *     ▲                 │  ├────▶ failed      (attempts used up, or a permanent error)
 *     └──retry/release──┘  └────▶ canceled    (DELETE /jobs/{id})
 *   queued ──cancel──▶ canceled
 */
export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;

export type JobState = (typeof JOB_STATES)[number];

/** States a job never leaves. */
export const FINISHED_STATES: readonly JobState[] = ['succeeded', 'failed', 'canceled'];

/** True when the job has reached a state it never leaves. */
export function isFinished(state: JobState): boolean {
  return FINISHED_STATES.includes(state);
}
