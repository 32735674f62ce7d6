// Drain: N jobs already in a BullMQ queue (Queue.addBulk), one Worker; one process.
// --handler=noop|report|sleep5: the processor does what asyncfirst's handler of that kind does (lib/shared.ts).
import { Queue, Worker } from 'bullmq';
import { buildReport } from '../../src/demo/report.js';
import { announceDrain, announceError, argNumber, argValue, exitWithParent } from '../lib/child-side.js';
import { redisConnection } from '../lib/redis.js';
import { BULLMQ_QUEUE, type DrainHandler, drainBody, noopReport, sleepingReport } from '../lib/shared.js';

exitWithParent();
const jobs = argNumber('jobs', 1000);
const concurrency = argNumber('concurrency', 8);
const timeoutMs = argNumber('timeout', 120) * 1000;
const name = `${BULLMQ_QUEUE}-drain`;
const handlerKind = argValue('handler', 'noop') as DrainHandler;
const body = drainBody(handlerKind);
/** BullMQ hands a processor no abort signal of its own: one that never fires stands in for asyncfirst's. */
const neverAborted = new AbortController().signal;
type Body = ReturnType<typeof drainBody>;
const processor =
  handlerKind === 'report'
    ? (job: { data: { body: Body } }) => buildReport(job.data.body, neverAborted)
    : handlerKind === 'sleep5'
      ? (job: { data: { body: Body } }) => sleepingReport(job.data.body)
      : async (job: { data: { body: Body } }) => noopReport(job.data.body);

try {
  const queueConnection = await redisConnection();
  const workerConnection = await redisConnection();
  const queue = new Queue(name, { connection: queueConnection });
  await queue.obliterate({ force: true });
  const fillStart = performance.now();
  for (let first = 0; first < jobs; first += 1000) {
    const count = Math.min(1000, jobs - first);
    await queue.addBulk(Array.from({ length: count }, (_, i) => ({ name: 'createReport', data: { principal: 'bench', key: `drain-${first + i}`, body } })));
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;

  let completed = 0;
  let finish: () => void = () => {};
  const allCompleted = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const start = performance.now();
  const worker = new Worker(name, processor, { connection: workerConnection, concurrency });
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
