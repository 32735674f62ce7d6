import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CliError } from './errors.js';
import { generate } from './generate.js';

/*
 * asyncfirst init <dir>: a new service that runs under plain node. The handlers are JavaScript
 * typed by JSDoc from generated/api.ts, so an editor (or tsc --checkJs) checks them against the
 * contract without a compile step.
 */

const contract = (title: string) => `openapi: 3.1.0
info:
  title: ${title}
  version: 0.1.0
  description: |
    POST /greetings is asynchronous: it answers 202 with a job, and the worker writes the greeting.
    GET /greetings/preview is synchronous: it answers at once.
# Open to anyone for now: add components.securitySchemes, list them here and pass their handlers
# (options.security) to require credentials.
security: []
paths:
  /greetings:
    post:
      operationId: createGreeting
      summary: Write a greeting in the background
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/GreetingRequest'
      responses:
        '200':
          description: The greeting (what the job's result holds).
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Greeting'
        '202':
          description: Accepted; the greeting is written in the background.
  /greetings/preview:
    get:
      operationId: previewGreeting
      summary: Preview a greeting at once
      parameters:
        - name: name
          in: query
          required: true
          schema:
            type: string
            minLength: 1
            maxLength: 100
      responses:
        '200':
          description: The greeting.
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Greeting'
components:
  schemas:
    GreetingRequest:
      type: object
      additionalProperties: false
      required: [name]
      properties:
        name:
          type: string
          minLength: 1
          maxLength: 100
    Greeting:
      type: object
      additionalProperties: false
      required: [text]
      properties:
        text:
          type: string
`;

const service = `// The service: its contract and one handler per operationId (typed from generated/api.ts).

/** @type {import('asyncfirst').Handlers<import('./generated/api.js').operations>} */
export const handlers = {
  async createGreeting({ body }, { progress, log }) {
    await progress(50, 'writing');
    log.info({ name: body.name }, 'greeting');
    return { text: \`Hello, \${body.name}!\` };
  },
  previewGreeting({ query }) {
    return { text: \`Hello, \${query.name}!\` };
  },
};

/** The asyncfirst options: \`asyncfirst serve service.js\`, \`node main.js serve\` and the tests use them. */
export const options = {
  contract: new URL('./openapi.yaml', import.meta.url).pathname,
  handlers,
};
`;

const main = `// node main.js serve (HTTP and the worker) or node main.js worker (the worker alone).
import { runProcess } from 'asyncfirst';
import { options } from './service.js';

await runProcess(options);
`;

const test = `import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestApp, runHandler } from 'asyncfirst/testing';
import { options } from '../service.js';

let service;
before(async () => {
  service = await createTestApp(options);
});
after(() => service.close());

test('POST /greetings is accepted as a job whose result is the greeting', async () => {
  const accepted = await service.submit('POST', '/greetings', { name: 'Ada' });
  assert.equal(accepted.status, 202);
  await service.runUntilIdle();
  const job = await service.job(accepted.jobId);
  assert.equal(job.status, 'succeeded');
  assert.deepEqual(job.result, { text: 'Hello, Ada!' });
});

test('GET /greetings/preview answers at once', async () => {
  const preview = await service.request({ method: 'GET', url: '/greetings/preview?name=Ada' });
  assert.equal(preview.status, 200);
  assert.deepEqual(preview.body, { text: 'Hello, Ada!' });
});

test('the handler alone: its result matches the contract and it reports progress', async () => {
  const run = await runHandler(options, 'createGreeting', { body: { name: 'Grace' } });
  assert.deepEqual(run.result, { text: 'Hello, Grace!' });
  assert.deepEqual(run.progress, [{ percent: 50, message: 'writing' }]);
});
`;

const readme = (name: string) => `# ${name}

An asynchronous HTTP API made with [asyncfirst](https://www.npmjs.com/package/asyncfirst): the contract is
\`openapi.yaml\`, the handlers are in \`service.js\`.

\`\`\`sh
npm install
npm test              # the tests (node:test with asyncfirst/testing)
npm start             # serves on PORT (3000) with the worker; jobs are kept in DATABASE_URL (./data/asyncfirst.db)
npm run worker        # a worker alone, against the same database
npm run generate      # after editing openapi.yaml: regenerates generated/ (the served document and its types)
npm run check         # validates and lints openapi.yaml
\`\`\`

Try it:

\`\`\`sh
curl -si -X POST localhost:3000/greetings -H 'content-type: application/json' \\
  -H "Idempotency-Key: $(uuidgen)" -d '{"name":"Ada"}'
curl -s localhost:3000/jobs/<id>
\`\`\`
`;

const gitignore = `node_modules/
data/
*.db
*.db-wal
*.db-shm
`;

/** Writes a new service into dir (which must be empty or absent); returns the files written. */
export async function scaffold(dir: string, asyncfirstVersion: string): Promise<string[]> {
  const root = resolve(dir);
  if (existsSync(root) && readdirSync(root).length > 0) throw new CliError(`${dir} is not empty; asyncfirst init writes into a new or empty folder`);
  const name = basename(root)
    .toLowerCase()
    .replace(/[^a-z0-9-._~]/g, '-');
  const packageJson = {
    name,
    version: '0.1.0',
    private: true,
    type: 'module',
    engines: { node: '>=20.19' },
    scripts: {
      start: 'node main.js serve',
      worker: 'node main.js worker',
      generate: 'asyncfirst generate',
      check: 'asyncfirst check',
      test: 'node --test',
    },
    dependencies: { asyncfirst: `^${asyncfirstVersion}` },
  };
  const files: Record<string, string> = {
    'package.json': `${JSON.stringify(packageJson, null, 2)}\n`,
    'openapi.yaml': contract(name),
    'service.js': service,
    'main.js': main,
    'test/service.test.js': test,
    'README.md': readme(name),
    '.gitignore': gitignore,
  };
  mkdirSync(join(root, 'test'), { recursive: true });
  for (const [file, contents] of Object.entries(files)) writeFileSync(join(root, file), contents);
  await generate({
    contract: join(root, 'openapi.yaml'),
    out: join(root, 'generated'),
    check: false,
    command: 'asyncfirst generate',
    contractName: 'openapi.yaml',
  });
  return [...Object.keys(files), 'generated/openapi.json', 'generated/api.ts'];
}
