// Fastify + pg-boss 10: each accepted request is send()ed to PostgreSQL.
import { announce, rss, serveParent } from '../lib/child-side.js';
import { dropQueue, freshQueue, startBoss } from '../lib/pgboss.js';
import { PGBOSS_QUEUE } from '../lib/shared.js';
import { buildPeerServer } from './peer-server.js';

const boss = await startBoss(Number(process.env.BENCH_PGBOSS_POOL ?? 10)); // pg-boss's default pool size is 10
await freshQueue(boss, PGBOSS_QUEUE);
const server = buildPeerServer(async (job) => (await boss.send(PGBOSS_QUEUE, job)) ?? '');
const url = await server.listen({ port: 0, host: '127.0.0.1' });
serveParent({ rss }, async () => {
  await server.close();
  await dropQueue(boss, PGBOSS_QUEUE).catch(() => {});
  await boss.stop({ graceful: false, wait: true });
});
announce({ url });
