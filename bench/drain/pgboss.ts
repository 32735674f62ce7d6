// Drain: N jobs already in a pg-boss 10 queue (boss.insert), no-op handlers, `workers` boss.work()
// registrations fetching `batch` jobs each (v10 has no teamSize: concurrency is workers x batchSize); one process.
import { announceDrain, announceError, argNumber, exitWithParent } from '../lib/child-side.js';
import { countJobs, dropQueue, freshQueue, startBoss } from '../lib/pgboss.js';
import { PGBOSS_QUEUE, REPORT_BODY } from '../lib/shared.js';

exitWithParent();
const jobs = argNumber('jobs', 1000);
const workers = argNumber('workers', 4);
const batchSize = argNumber('batch', 100);
const timeoutMs = argNumber('timeout', 120) * 1000;
const name = `${PGBOSS_QUEUE}-drain`;

try {
  const boss = await startBoss(workers + 4);
  await freshQueue(boss, name);
  const fillStart = performance.now();
  for (let first = 0; first < jobs; first += 1000) {
    const count = Math.min(1000, jobs - first);
    await boss.insert(Array.from({ length: count }, (_, i) => ({ name, data: { principal: 'bench', key: `drain-${first + i}`, body: REPORT_BODY } })));
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;

  let handled = 0;
  let allHandled: () => void = () => {};
  const everyHandlerRan = new Promise<void>((resolve) => {
    allHandled = resolve;
  });
  const start = performance.now();
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < workers; i++) {
    await boss.work(name, { batchSize, pollingIntervalSeconds: 0.5 }, async (batch) => {
      handled += batch.length;
      if (handled >= jobs) allHandled();
    });
  }
  await Promise.race([everyHandlerRan, new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
  // pg-boss completes a batch after its handler resolves, without waiting: poll until all are completed.
  let drained = await countJobs(boss, name, 'completed');
  while (drained < jobs && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    drained = await countJobs(boss, name, 'completed');
  }
  const seconds = (performance.now() - start) / 1000;
  await boss.offWork(name);
  await new Promise((resolve) => setTimeout(resolve, 100));
  await dropQueue(boss, name).catch(() => {});
  await boss.stop({ graceful: false, wait: true });
  announceDrain({
    system: 'pgboss',
    config: `${workers} workers x batchSize ${batchSize}`,
    concurrency: workers * batchSize,
    jobs,
    drained,
    seconds,
    fillSeconds,
  });
} catch (error) {
  announceError(error);
} finally {
  process.exit(0);
}
