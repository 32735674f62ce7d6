import { isFinished } from '../core/job-states.js';
import type { JobRecord, Store } from '../store/store.js';
import type { JobWatch } from './job-watch.js';

/**
 * Waits until one principal's job is finished, `seconds` pass, or `signal` fires, and resolves
 * with the job as it is then (undefined when there is no such job). Completion wakes it through
 * the JobWatch; nothing polls per request.
 */
export async function awaitJob(
  store: Store,
  watch: JobWatch,
  principal: string,
  id: string,
  seconds: number,
  signal?: AbortSignal,
): Promise<JobRecord | undefined> {
  const deadline = Date.now() + seconds * 1000;
  let woken = false;
  let wake: (() => void) | undefined;
  // Watch before the first read, so a change committed in between still wakes us.
  const unwatch = watch.watch(id, () => {
    woken = true;
    wake?.();
  });
  try {
    for (;;) {
      woken = false;
      const job = await store.getJob(principal, id);
      const remaining = deadline - Date.now();
      if (!job || isFinished(job.status) || remaining <= 0 || signal?.aborted || watch.closed) return job;
      if (woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, remaining);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          wake = undefined;
          resolve();
        }
        wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  } finally {
    unwatch();
  }
}
