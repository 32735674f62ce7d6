/*
 * The typed client against a running asyncfirst demo:
 *
 *   npm start                                   # in another terminal
 *   node --import tsx examples/client.ts        # BASE_URL (default http://127.0.0.1:3000), API_KEY (default dev-key)
 *
 * It submits a report (the client adds an Idempotency-Key and retries safely on 503 and network
 * errors), waits for the job with long-polling, and prints the typed result.
 */
import type { paths } from '../generated/api.js';
import { createClient, JobFailedError } from '../src/client/index.js';

const baseUrl = process.env.BASE_URL ?? 'http://127.0.0.1:3000';
const apiKey = process.env.API_KEY ?? 'dev-key';

const api = createClient<paths>({ baseUrl, headers: { 'X-API-Key': apiKey } });

const { data, error, response } = await api.POST('/reports', { body: { title: 'Example report', rows: 20_000, format: 'csv' } });
if (!data) {
  console.error(`the submission was refused with ${response.status}:`, error);
  process.exit(1);
}

// Without `Prefer: wait` the answer is 202 with a job reference; with it, a job that finished in
// time is answered with its result (200). waitFor takes either and resolves with the Report.
if ('job_id' in data) console.log(`accepted job ${data.job_id} (${data.location ?? `/jobs/${data.job_id}`}); waiting for it…`);

try {
  const report = await api.waitFor(data, { timeout: 60_000 });
  console.log(`report "${report.title}": ${report.rowCount} rows, ${report.bytes} bytes, sha256 ${report.sha256}`);
  console.log(JSON.stringify(report, null, 2));
} catch (failure) {
  if (failure instanceof JobFailedError) {
    console.error(`job ${failure.status}:`, failure.problem);
    process.exit(1);
  }
  throw failure;
}
