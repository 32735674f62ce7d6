import pg from 'pg';
import { benchSchemaName, dropSchema } from './postgres.js';
import { PG_URL } from './shared.js';
import { median } from './stats.js';

/*
 * What PostgreSQL itself allows for the shapes of write asyncfirst's driver sends, without
 * asyncfirst: 50 callers on a pool of 10 connections (the driver's default) in a schema of the
 * probe's own, one LISTEN connection on the channel (as every asyncfirst process holds), each
 * shape for a few seconds, the shapes taking turns:
 *   insert               one INSERT, its own transaction
 *   insert + notify      the same with pg_notify in the statement (acceptJob's shape)
 *   transaction          BEGIN, UPDATE … RETURNING, INSERT, COMMIT (a change: claim, finish, …)
 *   transaction + notify the same with pg_notify in the INSERT (finishJob's shape)
 * NOTIFY takes a lock that serializes the commits of every notifying transaction in the
 * database until each one's commit record is flushed, so the "+ notify" shapes show what that
 * costs on this machine's disk.
 */

export type CommitShape = 'insert' | 'insert + notify' | 'transaction' | 'transaction + notify';

export const COMMIT_SHAPES: CommitShape[] = ['insert', 'insert + notify', 'transaction', 'transaction + notify'];

export interface CommitProbe {
  connections: number;
  callers: number;
  seconds: number;
  rounds: number;
  /** Commits per second, median over the rounds, and each round's. */
  rates: Record<CommitShape, { median: number; runs: number[] }>;
}

export async function probeCommits(options: { seconds: number; rounds: number; connections?: number; callers?: number }): Promise<CommitProbe> {
  const connections = options.connections ?? 10;
  const callers = options.callers ?? 50;
  const schema = benchSchemaName('probe');
  const channel = `${schema}_changes`;
  const setup = new pg.Client({ connectionString: PG_URL });
  await setup.connect();
  const listener = new pg.Client({ connectionString: PG_URL });
  const pool = new pg.Pool({ connectionString: PG_URL, max: connections, options: `-c search_path=${schema}` });
  try {
    await setup.query(`CREATE SCHEMA "${schema}"`);
    await setup.query(`CREATE TABLE "${schema}".items (id bigint PRIMARY KEY, version integer NOT NULL DEFAULT 0, data text NOT NULL)`);
    await setup.query(`CREATE TABLE "${schema}".events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item bigint NOT NULL, data text NOT NULL)`);
    await setup.query(`INSERT INTO "${schema}".items (id, data) SELECT i, 'x' FROM generate_series(1, 10000) AS i`);
    await listener.connect();
    listener.on('notification', () => {});
    await listener.query(`LISTEN "${channel}"`);

    const data = JSON.stringify({ id: '01JX', status: 'succeeded', result: { title: 'Quarterly report', rows: 1000 } });
    const note = JSON.stringify({ p: 'probe', j: ['01JX'] });
    let next = 1;
    const write: Record<CommitShape, () => Promise<unknown>> = {
      insert: () => pool.query({ name: 'probe_insert', text: 'INSERT INTO events (item, data) VALUES ($1, $2)', values: [next++, data] }),
      'insert + notify': () =>
        pool.query({
          name: 'probe_insert_notify',
          text: 'WITH e AS (INSERT INTO events (item, data) VALUES ($1, $2) RETURNING id) SELECT id, pg_notify($3, $4) FROM e',
          values: [next++, data, channel, note],
        }),
      transaction: () => change(false),
      'transaction + notify': () => change(true),
    };
    async function change(notify: boolean): Promise<void> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const item = 1 + (next++ % 10000);
        await client.query({ name: 'probe_update', text: 'UPDATE items SET version = version + 1 WHERE id = $1 RETURNING id, version, data', values: [item] });
        if (notify)
          await client.query({
            name: 'probe_event_notify',
            text: 'WITH e AS (INSERT INTO events (item, data) VALUES ($1, $2) RETURNING id) SELECT id, pg_notify($3, $4) FROM e',
            values: [item, data, channel, note],
          });
        else await client.query({ name: 'probe_event', text: 'INSERT INTO events (item, data) VALUES ($1, $2)', values: [item, data] });
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
    const runs = Object.fromEntries(COMMIT_SHAPES.map((shape) => [shape, [] as number[]])) as Record<CommitShape, number[]>;
    for (let round = 0; round < options.rounds; round++) {
      for (const shape of COMMIT_SHAPES) {
        let count = 0;
        const began = performance.now();
        const end = began + options.seconds * 1000;
        await Promise.all(
          Array.from({ length: callers }, async () => {
            while (performance.now() < end) {
              await write[shape]();
              count++;
            }
          }),
        );
        runs[shape].push(count / ((performance.now() - began) / 1000));
      }
    }
    const rates = Object.fromEntries(COMMIT_SHAPES.map((shape) => [shape, { median: median(runs[shape]), runs: runs[shape] }])) as CommitProbe['rates'];
    return { connections, callers, seconds: options.seconds, rounds: options.rounds, rates };
  } finally {
    await pool.end().catch(() => {});
    await listener.end().catch(() => {});
    await setup.end().catch(() => {});
    await dropSchema(schema);
  }
}
