import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The PostgreSQL the tests use (.ci/run makes sure it answers). Each test file makes its own schema and drops it. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A new, empty schema name for one test; `drop` removes it with everything in it. */
export function freshSchema(prefix = 'af_test'): { schema: string; drop: () => Promise<void> } {
  const schema = `${prefix}_${randomBytes(5).toString('hex')}`;
  return {
    schema,
    async drop() {
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** Runs one query on its own connection (for tests that read or prepare rows directly). */
export async function queryPostgres<Row extends pg.QueryResultRow>(
  schema: string,
  text: string,
  values: unknown[] = [],
  connectionString = TEST_DATABASE_URL,
): Promise<Row[]> {
  const client = new pg.Client({ connectionString, options: `-c search_path=${schema}` });
  await client.connect();
  try {
    return (await client.query<Row>(text, values)).rows;
  } finally {
    await client.end();
  }
}
