// Fastify + BullMQ: each accepted request is queue.add()ed to Redis.
import { Queue } from 'bullmq';
import { announce, rss, serveParent } from '../lib/child-side.js';
import { redisConnection } from '../lib/redis.js';
import { BULLMQ_QUEUE } from '../lib/shared.js';
import { buildPeerServer } from './peer-server.js';

const connection = await redisConnection();
const queue = new Queue(BULLMQ_QUEUE, { connection });
await queue.obliterate({ force: true });
const server = buildPeerServer(async (job) => {
  const added = await queue.add('createReport', job);
  return added.id ?? '';
});
const url = await server.listen({ port: 0, host: '127.0.0.1' });
serveParent({ rss }, async () => {
  await server.close();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  await connection.quit().catch(() => connection.disconnect());
});
announce({ url });
