import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createAsyncFirst } from '../src/app.js';
import { readContractFile } from '../src/contract/load.js';
import { JOB_STATES } from '../src/core/job-states.js';
import { demoSecurity, parseApiKeys, reportHandlers } from '../src/demo/service.js';
import { API_KEYS, startDemo, tempDir } from './helpers.js';

async function until(condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Operation {
  operationId?: string;
  parameters?: Array<{ $ref?: string; name?: string }>;
  responses: Record<
    string,
    {
      $ref?: string;
      headers?: Record<string, unknown>;
      content?: Record<string, { schema?: { $ref?: string; allOf?: Array<{ $ref?: string; properties?: unknown }> } }>;
    }
  >;
}
interface ServedDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: {
    parameters: Record<string, { name: string; in: string; required?: boolean }>;
    schemas: Record<string, { properties?: Record<string, { $ref?: string }>; enum?: string[] }>;
    responses: Record<string, unknown>;
  };
}

describe('the served OpenAPI document', () => {
  let demo: Awaited<ReturnType<typeof startDemo>>;
  let served: ServedDocument;
  beforeAll(async () => {
    demo = await startDemo();
    const response = await demo.app.server.inject({ method: 'GET', url: '/openapi.json' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    served = response.json();
  });
  afterAll(() => demo.close());

  it('adds GET and DELETE /jobs/{id} (getJob, cancelJob)', () => {
    const jobs = served.paths['/jobs/{id}'];
    expect(jobs?.get?.operationId).toBe('getJob');
    expect(jobs?.delete?.operationId).toBe('cancelJob');
    expect(Object.keys(jobs?.get?.responses ?? {})).toEqual(expect.arrayContaining(['200', '401', '404', '503']));
    expect(Object.keys(jobs?.delete?.responses ?? {})).toEqual(expect.arrayContaining(['200', '202', '404', '409']));
    expect(jobs?.get?.responses['200']?.content?.['application/json']?.schema?.$ref).toBe('#/components/schemas/Job');
  });

  it('gives createReport the Idempotency-Key header parameter by reference', () => {
    const createReport = served.paths['/reports']?.post;
    expect(createReport?.operationId).toBe('createReport');
    expect(createReport?.parameters).toContainEqual({ $ref: '#/components/parameters/IdempotencyKey' });
    expect(served.components.parameters.IdempotencyKey).toMatchObject({ name: 'Idempotency-Key', in: 'header', required: true });
  });

  it('describes the 202 with Location, X-Job-ID, Retry-After and Idempotent-Replayed headers and the JobAccepted body', () => {
    const accepted = served.paths['/reports']?.post?.responses['202'];
    expect(Object.keys(accepted?.headers ?? {}).sort()).toEqual(['Idempotent-Replayed', 'Location', 'Retry-After', 'X-Job-ID']);
    const schema = accepted?.content?.['application/json']?.schema;
    expect(schema?.allOf?.[0]?.$ref).toBe('#/components/schemas/JobAccepted');
    // The operation's id as an enum, so a generated client can type the job's result.
    expect(schema?.allOf?.[1]?.properties).toEqual({ operation: { type: 'string', enum: ['createReport'] } });
  });

  it('lists 400, 401, 422 and 503 (and 413, 415) among createReport’s responses, each resolving to a component', () => {
    const responses = served.paths['/reports']?.post?.responses ?? {};
    for (const status of ['400', '401', '413', '415', '422', '503']) {
      const ref = responses[status]?.$ref;
      expect(ref, `response ${status}`).toMatch(/^#\/components\/responses\//);
      const name = (ref as string).slice('#/components/responses/'.length);
      expect(served.components.responses[name], `component for ${status}`).toBeDefined();
    }
    // The synchronous operation does not promise what only asynchronous ones do.
    const estimate = served.paths['/reports/estimate']?.get?.responses ?? {};
    expect(estimate['422']).toBeUndefined();
    expect(estimate['202']).toBeUndefined();
  });

  it('defines the Job schema whose status enum is exactly JOB_STATES', () => {
    const statusRef = served.components.schemas.Job?.properties?.status?.$ref;
    expect(statusRef).toBe('#/components/schemas/JobStatus');
    expect(served.components.schemas.JobStatus?.enum).toEqual([...JOB_STATES]);
  });

  it('is a valid OpenAPI document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(served) as unknown as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(served.openapi).toBe('3.1.0');
  });

  it('serves the same document as YAML at /openapi.yaml', async () => {
    const response = await demo.app.server.inject({ method: 'GET', url: '/openapi.yaml' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/yaml/);
    expect(parseYaml(response.body)).toEqual(served);
  });

  it('serves what app.servedDocument holds', () => {
    expect(served).toEqual(demo.app.servedDocument);
  });

  it('matches generated/openapi.json (generated/ is not stale)', () => {
    const generated: unknown = JSON.parse(readFileSync(new URL('../generated/openapi.json', import.meta.url), 'utf8'));
    expect(generated).toEqual(demo.app.servedDocument);
  });

  it('serves Swagger UI at /docs', async () => {
    let url = '/docs';
    let response = await demo.app.server.inject({ method: 'GET', url });
    for (let hops = 0; hops < 3 && response.statusCode >= 300 && response.statusCode < 400; hops++) {
      url = new URL(String(response.headers.location), `http://localhost${url}`).pathname;
      response = await demo.app.server.inject({ method: 'GET', url });
    }
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/html/);
    expect(response.body).toMatch(/swagger/i);
  });

  it('answers /healthz with 200', async () => {
    const response = await demo.app.server.inject({ method: 'GET', url: '/healthz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });
});

describe('the served document of a contract with schedules', () => {
  it('leaves out the document-level x-asyncfirst-schedules (their crons and inputs), in JSON and YAML, and keeps each operation’s x-asyncfirst', async () => {
    const contract = await readContractFile(new URL('../openapi.yaml', import.meta.url).pathname);
    contract['x-asyncfirst-schedules'] = [
      { name: 'nightly-report', operationId: 'createReport', cron: '0 0 3 * * *', timezone: 'Europe/Paris', input: { title: 'internal-ledger-7431', rows: 3 } },
    ];
    const policy = { maxAttempts: 4, retention: { jobs: 86_400 } };
    (contract.paths?.['/reports']?.post as Record<string, unknown>)['x-asyncfirst'] = policy;
    const tmp = tempDir();
    const app = await createAsyncFirst({
      contract,
      handlers: reportHandlers,
      security: demoSecurity(parseApiKeys(API_KEYS)),
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent' },
    });
    try {
      app.startBackground();
      // The schedule is in force (the service reads the contract it was given) ...
      await until(async () => (await app.store.listSchedules()).some((schedule) => schedule.name === 'nightly-report'));
      for (const url of ['/openapi.json', '/openapi.yaml']) {
        const response = await app.server.inject({ method: 'GET', url });
        expect(response.statusCode).toBe(200);
        // ... but no client of the API is told of it: neither the extension nor its input appears.
        expect(response.body).not.toContain('x-asyncfirst-schedules');
        expect(response.body).not.toContain('internal-ledger-7431');
        expect(response.body).not.toContain('nightly-report');
        const served = (url.endsWith('.json') ? response.json() : parseYaml(response.body)) as ServedDocument;
        expect(served.paths['/reports']?.post).toHaveProperty('x-asyncfirst', policy);
      }
      expect(app.servedDocument).not.toHaveProperty('x-asyncfirst-schedules');
    } finally {
      await app.close();
      tmp.cleanup();
    }
  });
});
