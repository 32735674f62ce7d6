import { afterEach, describe, expect, it } from 'vitest';
import { createDemo } from '../src/demo/service.js';
import type { Store } from '../src/store/store.js';
import { ALICE, API_KEYS, allJobs, startDemo, submitReport } from './helpers.js';

const CONCURRENT = 50;

interface Answer {
  status: number;
  replayed: string | null;
  location: string | null;
  jobIdHeader: string | null;
  body: string;
}

/** What the store holds: every job with its input (oldest first), how many idempotency records, and the job alice's `key` binds. */
async function readStored(store: Store, key: string) {
  return {
    jobs: (await allJobs(store, { withInput: true })).map((job) => ({ id: job.id, input: job.input as string })),
    records: await store.countIdempotencyRecords(),
    jobOfKey: (await store.getIdempotencyRecord('alice', 'createReport', key))?.jobId,
  };
}

/** POST /reports over the socket; every call is its own request, all started before any answer is read. */
async function post(base: string, key: string, body: unknown): Promise<Answer> {
  const response = await fetch(`${base}/reports`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...ALICE },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed'),
    location: response.headers.get('location'),
    jobIdHeader: response.headers.get('x-job-id'),
    body: await response.text(),
  };
}

describe('concurrent submissions with one Idempotency-Key', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
  });

  /** Listens on a free port; counts how many acceptances are in the store at once, to show the race was real. */
  const listen = async () => {
    demo = await startDemo({ port: 0, workerConcurrency: 0 });
    const { store } = demo.app;
    const accept = store.acceptJob.bind(store);
    const overlap = { now: 0, max: 0 };
    store.acceptJob = async (request) => {
      overlap.max = Math.max(overlap.max, ++overlap.now);
      try {
        return await accept(request);
      } finally {
        overlap.now--;
      }
    };
    const base = await demo.app.listen();
    // Open the client's connections first: requests on fresh connections trickle in one per event-loop
    // turn, while requests on open ones are written together and reach the server in the same turn.
    await Promise.all(Array.from({ length: CONCURRENT }, () => fetch(`${base}/healthz`).then((response) => response.text())));
    return { base, store, overlap };
  };

  it(`creates exactly one job for ${CONCURRENT} racing identical submissions, and every answer is 202 with its id`, async () => {
    const { base, store, overlap } = await listen();
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, () => post(base, 'race-1', { title: 'race', rows: 3 })));
    expect(overlap.max).toBeGreaterThan(1);

    for (const answer of answers) expect(answer.status).toBe(202);
    const jobIds = new Set(answers.map((answer) => (JSON.parse(answer.body) as { job_id: string }).job_id));
    expect(jobIds.size).toBe(1);
    const [jobId] = [...jobIds] as [string];
    for (const answer of answers) {
      expect(JSON.parse(answer.body)).toEqual({ status: 'accepted', job_id: jobId, operation: 'createReport', location: `/jobs/${jobId}` });
      expect(answer.location).toBe(`/jobs/${jobId}`);
      expect(answer.jobIdHeader).toBe(jobId);
    }
    // One connection runs the acceptances one after another (several inside one group-commit
    // transaction, where each sees the ones before it), so exactly one of them created the job.
    expect(answers.filter((answer) => answer.replayed === null)).toHaveLength(1);
    expect(answers.filter((answer) => answer.replayed === 'true')).toHaveLength(CONCURRENT - 1);

    const { jobs, records, jobOfKey } = await readStored(store, 'race-1');
    expect(jobs.map((job) => job.id)).toEqual([jobId]);
    expect({ records, jobOfKey }).toEqual({ records: 1, jobOfKey: jobId });
  });

  it(`creates exactly one job when ${CONCURRENT} submissions race with one key and different bodies; the others get 422`, async () => {
    const { base, store, overlap } = await listen();
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => post(base, 'race-2', { title: `body-${i}`, rows: 3 })));
    expect(overlap.max).toBeGreaterThan(1);

    const winners = answers.flatMap((answer, index) => (answer.status === 202 ? [index] : []));
    expect(winners).toHaveLength(1);
    const winner = winners[0] as number;
    const winning = answers[winner] as Answer;
    expect(winning.replayed).toBeNull();
    const jobId = (JSON.parse(winning.body) as { job_id: string }).job_id;

    for (const [index, answer] of answers.entries()) {
      if (index === winner) continue;
      expect(answer.status).toBe(422);
      expect(answer.replayed).toBeNull();
      expect(answer.location).toBeNull();
      expect((JSON.parse(answer.body) as { type: string }).type).toBe('urn:asyncfirst:problem:idempotency-key-reused');
    }

    const { jobs, records, jobOfKey } = await readStored(store, 'race-2');
    expect(jobs.map((job) => job.id)).toEqual([jobId]);
    // The stored job is the winner's request, and the key points at it.
    expect((JSON.parse((jobs[0] as { input: string }).input) as { body: { title: string } }).body.title).toBe(`body-${winner}`);
    expect({ records, jobOfKey }).toEqual({ records: 1, jobOfKey: jobId });
  });

  it('answers each racing submission 202 exactly when its body is the one stored, 422 otherwise', async () => {
    const { base, store, overlap } = await listen();
    const variants = [
      { title: 'A', rows: 1 },
      { title: 'B', rows: 1 },
      { title: 'A', rows: 2 },
    ];
    const answers = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => post(base, 'race-3', variants[i % variants.length])));
    expect(overlap.max).toBeGreaterThan(1);

    const { jobs, records, jobOfKey } = await readStored(store, 'race-3');
    expect(jobs).toHaveLength(1);
    const stored = jobs[0] as { id: string; input: string };
    expect({ records, jobOfKey }).toEqual({ records: 1, jobOfKey: stored.id });
    const storedBody = (JSON.parse(stored.input) as { body: { title: string; rows: number } }).body;

    let created = 0;
    for (const [index, answer] of answers.entries()) {
      const variant = variants[index % variants.length] as { title: string; rows: number };
      if (variant.title === storedBody.title && variant.rows === storedBody.rows) {
        expect(answer.status).toBe(202);
        expect((JSON.parse(answer.body) as { job_id: string }).job_id).toBe(stored.id);
        if (answer.replayed === null) created++;
      } else {
        expect(answer.status).toBe(422);
      }
    }
    expect(created).toBe(1);
  });

  it('creates one job when two services on the same database file race with one key', async () => {
    demo = await startDemo({ workerConcurrency: 0 });
    const other = await createDemo({ apiKeys: API_KEYS, config: { databaseUrl: demo.dbPath, logLevel: 'silent', workerConcurrency: 0 } });
    try {
      const first = demo.app;
      const answers = await Promise.all(
        Array.from({ length: CONCURRENT }, (_, i) => submitReport(i % 2 === 0 ? first : other, { title: 'shared', rows: 2 }, { 'idempotency-key': 'race-4' })),
      );
      for (const answer of answers) expect(answer.statusCode).toBe(202);
      const jobIds = new Set(answers.map((answer) => answer.json<{ job_id: string }>().job_id));
      expect(jobIds.size).toBe(1);
      expect(answers.filter((answer) => answer.headers['idempotent-replayed'] === undefined)).toHaveLength(1);
      const { jobs, records, jobOfKey } = await readStored(first.store, 'race-4');
      expect(jobs.map((job) => job.id)).toEqual([...jobIds]);
      expect({ records, jobOfKey }).toEqual({ records: 1, jobOfKey: [...jobIds][0] });
    } finally {
      await other.close();
    }
  });
});
