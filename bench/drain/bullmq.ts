// Drain: N jobs already in a BullMQ queue (Queue.addBulk), a no-op processor, one Worker; one process.
import { Queue, Worker } from 'bullmq';
import { announceDrain, announceError, argNumber, exitWithParent } from '../lib/child-side.js';
import { redisConnection } from '../lib/redis.js';
import { BULLMQ_QUEUE, REPORT_BODY } from '../lib/shared.js';

exitWithParent();
const jobs = argNumber('jobs', 1000);
const concurrency = argNumber('concurrency', 8);
const timeoutMs = argNumber('timeout', 120) * 1000;
const name = `${BULLMQ_QUEUE}-drain`;

try {
  const queueConnection = await redisConnection();
  const workerConnection = await redisConnection();
  const queue = new Queue(name, { connection: queueConnection });
  await queue.obliterate({ force: true });
  const fillStart = performance.now();
  for (let first = 0; first < jobs; first += 1000) {
    const count = Math.min(1000, jobs - first);
    await queue.addBulk(
      Array.from({ length: count }, (_, i) => ({ name: 'createReport', data: { principal: 'bench', key: `drain-${first + i}`, body: REPORT_BODY } })),
    );
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;

  let completed = 0;
  let finish: () => void = () => {};
  const allCompleted = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const start = performance.now();
  const worker = new Worker(name, async () => {}, { connection: workerConnection, concurrency });
  worker.on('completed', () => {
    if (++completed === jobs) finish();
  });
  await Promise.race([allCompleted, new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
  const seconds = (performance.now() - start) / 1000;
  await worker.close();
  const counts = await queue.getJobCounts('completed');
  await queue.obliterate({ force: true });
  await queue.close();
  await queueConnection.quit();
  await workerConnection.quit().catch(() => {});
  const drained = Math.min(completed, counts.completed ?? 0);
  announceDrain({
    system: 'bullmq',
    config: `concurrency ${concurrency}`,
    concurrency,
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
