import { decodeTime } from 'ulid';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsyncFirstConfig } from '../src/config.js';
import { fingerprintRequest } from '../src/idempotency/fingerprint.js';
import type { IdempotencyRecord, JobRecord, Store } from '../src/store/store.js';
import { ALICE, allJobs, BOB, readStoreOn, startDemo, submitReport } from './helpers.js';

/** 26 characters of Crockford base32 (no I, L, O, U); the first is at most 7 (48-bit time). */
const ULID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;
const PROBLEM_JSON = /^application\/problem\+json/;

/**
 * What the SQLite file holds, read by a job engine of its own (a second process: only committed
 * rows count): every job, oldest first, with its input; and the idempotency records of the keys
 * named (alice's, or [principal, key]), which must be every record the file holds.
 */
async function readRows(dbPath: string, named: Array<string | [string, string]>): Promise<{ jobs: JobRecord[]; keys: IdempotencyRecord[] }> {
  return readStoreOn(dbPath, async (store: Store) => {
    const keys: IdempotencyRecord[] = [];
    for (const name of named) {
      const [principal, key] = typeof name === 'string' ? ['alice', name] : name;
      const record = await store.getIdempotencyRecord(principal, 'createReport', key);
      if (record) keys.push(record);
    }
    expect(await store.countIdempotencyRecords(), 'idempotency records other than those of the keys named').toBe(keys.length);
    return { jobs: await allJobs(store, { withInput: true }), keys };
  });
}

describe('idempotent acceptance of an asynchronous operation', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  // No worker: jobs stay queued, so the rows read back are exactly what the acceptance wrote.
  const open = async (config: Partial<AsyncFirstConfig> = {}) => {
    demo = await startDemo({ workerConcurrency: 0, ...config });
    return demo;
  };
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
  });

  it('answers the first submission 202 with Location, X-Job-ID, Retry-After and an accepted body', async () => {
    const { app } = await open();
    const response = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'first-1' });

    expect(response.statusCode).toBe(202);
    const body = response.json<{ status: string; job_id: string; operation: string; location: string }>();
    expect(Object.keys(body).sort()).toEqual(['job_id', 'location', 'operation', 'status']);
    expect(body.operation).toBe('createReport');
    expect(body.status).toBe('accepted');
    expect(body.job_id).toMatch(ULID);
    expect(body.location).toBe(`/jobs/${body.job_id}`);
    expect(response.headers.location).toBe(`/jobs/${body.job_id}`);
    expect(response.headers['x-job-id']).toBe(body.job_id);
    expect(response.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['idempotent-replayed']).toBeUndefined();

    // The Location answers: the job is there for its principal.
    const job = await app.server.inject({ method: 'GET', url: body.location, headers: ALICE });
    expect(job.statusCode).toBe(200);
    expect(job.json()).toMatchObject({ id: body.job_id, operation: 'createReport', status: 'queued' });
  });

  it('has committed the job row and the idempotency record to the SQLite file when the 202 arrives', async () => {
    const { app, dbPath } = await open();
    const response = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'durable-1' });
    expect(response.statusCode).toBe(202);
    const jobId = response.json<{ job_id: string }>().job_id;

    const { jobs, keys } = await readRows(dbPath, ['durable-1']);
    expect(jobs).toHaveLength(1);
    const [job] = jobs as [JobRecord];
    expect(job).toMatchObject({ id: jobId, principal: 'alice', operation: 'createReport', status: 'queued', attempts: 0 });
    // The stored input is the validated request (the contract's default format applied).
    const input = { body: { title: 'Q3', rows: 5, format: 'csv' }, params: {}, query: {} };
    expect(JSON.parse(job.input as string)).toEqual(input);

    expect(keys).toHaveLength(1);
    const [key] = keys as [IdempotencyRecord];
    expect(key).toMatchObject({ principal: 'alice', operation: 'createReport', key: 'durable-1', jobId });
    expect(key.fingerprint).toBe(fingerprintRequest('createReport', input).fingerprint);
    expect(key.createdAt).toBe(job.createdAt);
    expect(key.expiresAt - key.createdAt).toBe(app.config.idempotencyRetentionMs);
  });

  it('replays the same key and body (keys in another order, quoted header form) with the same job and no second row', async () => {
    const { app, dbPath } = await open();
    const first = await submitReport(app, { title: 'Q3', rows: 5, format: 'json' }, { 'idempotency-key': 'replay-1' });
    expect(first.statusCode).toBe(202);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const jobId = first.json<{ job_id: string }>().job_id;

    // Same members, other order, sent as raw text so the order reaches the server as written.
    const reordered = await app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'application/json', ...ALICE, 'idempotency-key': '"replay-1"' },
      payload: '{"format":"json","rows":5,"title":"Q3"}',
    });
    const plain = await submitReport(app, { rows: 5, format: 'json', title: 'Q3' }, { 'idempotency-key': 'replay-1' });

    for (const replay of [reordered, plain]) {
      expect(replay.statusCode).toBe(202);
      expect(replay.body).toBe(first.body);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.headers.location).toBe(`/jobs/${jobId}`);
      expect(replay.headers['x-job-id']).toBe(jobId);
      expect(replay.headers['retry-after']).toBe(first.headers['retry-after']);
    }

    const { jobs, keys } = await readRows(dbPath, ['replay-1']);
    expect(jobs.map((job) => job.id)).toEqual([jobId]);
    expect(keys).toHaveLength(1);
    expect(keys[0]?.jobId).toBe(jobId);
  });

  it('answers the same key with a different body 422 problem+json and leaves the stored record unchanged', async () => {
    const { app, dbPath } = await open();
    const first = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'mismatch-1' });
    expect(first.statusCode).toBe(202);
    const jobId = first.json<{ job_id: string }>().job_id;
    const before = await readRows(dbPath, ['mismatch-1']);

    for (const other of [
      { title: 'Q3', rows: 6 },
      { title: 'Q4', rows: 5 },
      { title: 'Q3', rows: 5, format: 'json' },
    ]) {
      const reused = await submitReport(app, other, { 'idempotency-key': 'mismatch-1' });
      expect(reused.statusCode).toBe(422);
      expect(reused.headers['content-type']).toMatch(PROBLEM_JSON);
      expect(reused.headers['idempotent-replayed']).toBeUndefined();
      expect(reused.headers.location).toBeUndefined();
      expect(reused.json()).toMatchObject({ type: 'urn:asyncfirst:problem:idempotency-key-reused', status: 422 });
    }

    const after = await readRows(dbPath, ['mismatch-1']);
    expect(after.keys).toEqual(before.keys);
    expect(after.keys[0]).toMatchObject({ key: 'mismatch-1', jobId, fingerprint: before.keys[0]?.fingerprint });
    expect(after.jobs).toEqual(before.jobs);

    // The key still belongs to the first request.
    const again = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'mismatch-1' });
    expect(again.statusCode).toBe(202);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json<{ job_id: string }>().job_id).toBe(jobId);
  });

  it("scopes keys per principal: bob's submission with alice's key gets its own job", async () => {
    const { app, dbPath } = await open();
    const alice = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'shared-1' });
    const bob = await submitReport(app, { title: 'Q3', rows: 5 }, { ...BOB, 'idempotency-key': 'shared-1' });
    expect(alice.statusCode).toBe(202);
    expect(bob.statusCode).toBe(202);
    expect(bob.headers['idempotent-replayed']).toBeUndefined();
    const aliceJob = alice.json<{ job_id: string }>().job_id;
    const bobJob = bob.json<{ job_id: string }>().job_id;
    expect(bobJob).not.toBe(aliceJob);

    // Bob's job is bob's: alice cannot see it.
    expect((await app.server.inject({ method: 'GET', url: `/jobs/${bobJob}`, headers: BOB })).statusCode).toBe(200);
    expect((await app.server.inject({ method: 'GET', url: `/jobs/${bobJob}`, headers: ALICE })).statusCode).toBe(404);

    // Bob's different body under the same key is not a mismatch with alice's record.
    const bobOther = await submitReport(app, { title: 'other', rows: 1 }, { ...BOB, 'idempotency-key': 'shared-2' });
    const aliceOther = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'shared-2' });
    expect(bobOther.statusCode).toBe(202);
    expect(aliceOther.statusCode).toBe(202);

    const { jobs, keys } = await readRows(dbPath, [
      ['alice', 'shared-1'],
      ['alice', 'shared-2'],
      ['bob', 'shared-1'],
      ['bob', 'shared-2'],
    ]);
    expect(jobs).toHaveLength(4);
    expect(jobs.find((job) => job.id === aliceJob)?.principal).toBe('alice');
    expect(jobs.find((job) => job.id === bobJob)?.principal).toBe('bob');
    expect(keys.map((key) => [key.principal, key.key])).toEqual([
      ['alice', 'shared-1'],
      ['alice', 'shared-2'],
      ['bob', 'shared-1'],
      ['bob', 'shared-2'],
    ]);
  });

  it('does not use up the key on a request that fails validation (400)', async () => {
    const { app, dbPath } = await open();
    const invalid = await submitReport(app, { title: '', rows: 0 }, { 'idempotency-key': 'after-400' });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.headers['content-type']).toMatch(PROBLEM_JSON);
    expect(invalid.json()).toMatchObject({ type: 'urn:asyncfirst:problem:validation-failed' });
    expect(await readRows(dbPath, ['after-400'])).toEqual({ jobs: [], keys: [] });

    const valid = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'after-400' });
    expect(valid.statusCode).toBe(202);
    expect(valid.headers['idempotent-replayed']).toBeUndefined();
    const { jobs, keys } = await readRows(dbPath, ['after-400']);
    expect(jobs.map((job) => job.id)).toEqual([valid.json<{ job_id: string }>().job_id]);
    expect(keys.map((key) => key.key)).toEqual(['after-400']);
  });

  it('does not use up the key on a request that fails authentication (401)', async () => {
    const { app, dbPath } = await open();
    const wrongKey = await submitReport(app, { title: 'Q3', rows: 5 }, { 'x-api-key': 'not-a-key', 'idempotency-key': 'after-401' });
    expect(wrongKey.statusCode).toBe(401);
    expect(wrongKey.headers['content-type']).toMatch(PROBLEM_JSON);
    expect(wrongKey.json()).toMatchObject({ type: 'urn:asyncfirst:problem:unauthorized' });
    const noCredential = await app.server.inject({
      method: 'POST',
      url: '/reports',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'after-401' },
      payload: JSON.stringify({ title: 'Q3', rows: 5 }),
    });
    expect(noCredential.statusCode).toBe(401);
    expect(await readRows(dbPath, ['after-401'])).toEqual({ jobs: [], keys: [] });

    const valid = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'after-401' });
    expect(valid.statusCode).toBe(202);
    expect(valid.headers['idempotent-replayed']).toBeUndefined();
    expect((await readRows(dbPath, ['after-401'])).jobs.map((job) => job.id)).toEqual([valid.json<{ job_id: string }>().job_id]);
  });

  it('binds a key only for idempotencyRetentionMs: after expiry the same key and body create a new job', async () => {
    const { app, dbPath } = await open({ idempotencyRetentionMs: 50 });
    const first = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'expiring-1' });
    expect(first.statusCode).toBe(202);
    const firstJob = first.json<{ job_id: string }>().job_id;
    const [record] = (await readRows(dbPath, ['expiring-1'])).keys;
    expect(record?.expiresAt).toBe((record?.createdAt ?? 0) + 50);

    // Wait (by the stored expiry, not a guess) until the record has expired.
    const expiresAt = record?.expiresAt ?? 0;
    while (Date.now() <= expiresAt) await new Promise((resolve) => setTimeout(resolve, 10));

    const second = await submitReport(app, { title: 'Q3', rows: 5 }, { 'idempotency-key': 'expiring-1' });
    expect(second.statusCode).toBe(202);
    expect(second.headers['idempotent-replayed']).toBeUndefined();
    const secondJob = second.json<{ job_id: string }>().job_id;
    expect(secondJob).not.toBe(firstJob);

    const { jobs, keys } = await readRows(dbPath, ['expiring-1']);
    expect(jobs.map((job) => job.id)).toEqual([firstJob, secondJob]);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ key: 'expiring-1', jobId: secondJob, fingerprint: record?.fingerprint });
    expect(keys[0]?.expiresAt).toBeGreaterThan(expiresAt);
  });

  it('gives jobs ULID ids (26 Crockford base32 characters) that sort by their creation millisecond and carry the creation time', async () => {
    const { app, dbPath } = await open();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await submitReport(app, { title: `t${i}`, rows: 1 }, { 'idempotency-key': `sequential-${i}` });
      expect(response.statusCode).toBe(202);
      ids.push(response.json<{ job_id: string }>().job_id);
    }
    // Accepted in the same event-loop turn, so several land in one millisecond and one transaction.
    const concurrent = await Promise.all(
      Array.from({ length: 20 }, (_, i) => submitReport(app, { title: `c${i}`, rows: 1 }, { 'idempotency-key': `concurrent-${i}` })),
    );
    for (const response of concurrent) expect(response.statusCode).toBe(202);

    for (const id of ids) expect(id).toMatch(ULID);
    expect(new Set(ids).size).toBe(ids.length);

    const jobs = await readStoreOn(dbPath, (store) => allJobs(store));
    expect(jobs).toHaveLength(30);
    expect(jobs.slice(0, 10).map((job) => job.id)).toEqual(ids);
    // In insertion order (seq), the ids' times never go back; within one millisecond their order is random.
    const times = jobs.map((job) => decodeTime(job.id));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    for (const job of jobs) {
      expect(job.id).toMatch(ULID);
      expect(decodeTime(job.id)).toBe(job.createdAt);
    }
  });
});
