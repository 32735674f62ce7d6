import PgBoss from 'pg-boss';
import { PG_URL } from './shared.js';

/** A started pg-boss (v10) without maintenance or cron, so only the benchmark's own work runs. */
export async function startBoss(poolSize: number): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: PG_URL, supervise: false, schedule: false, max: poolSize });
  boss.on('error', (error) => console.error(`pg-boss: ${error.message}`));
  await boss.start();
  return boss;
}

/** Removes a queue and every job in it (pg-boss 10's deleteQueue refuses while jobs reference it). */
export async function dropQueue(boss: PgBoss, name: string): Promise<void> {
  const db = boss.getDb();
  const exists = await boss.getQueue(name);
  if (!exists) return;
  await db.executeSql('DELETE FROM pgboss.job WHERE name = $1', [name]);
  await boss.deleteQueue(name);
}

/** A fresh, empty queue. */
export async function freshQueue(boss: PgBoss, name: string): Promise<void> {
  await dropQueue(boss, name);
  await boss.createQueue(name);
}

/** Jobs of a queue in one state. */
export async function countJobs(boss: PgBoss, name: string, state: string): Promise<number> {
  const { rows } = await boss.getDb().executeSql('SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = $2', [name, state]);
  return (rows[0] as { n: number } | undefined)?.n ?? 0;
}
