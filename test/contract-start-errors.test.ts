import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterEach, describe, expect, it } from 'vitest';
import { type AsyncFirstApp, type AsyncFirstOptions, createAsyncFirst } from '../src/app.js';
import { ContractError, type OpenApiDocument } from '../src/contract/load.js';
import type { SecurityHandler } from '../src/http/security.js';
import { tempDir } from './helpers.js';

type HandlerMap = Record<string, (...args: never[]) => unknown>;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tmp() {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  return dir;
}

/** createAsyncFirst on a temp database; any app that does start is closed after the test. */
async function start(contract: string | OpenApiDocument, handlers: HandlerMap, security?: Record<string, SecurityHandler>): Promise<AsyncFirstApp> {
  const { dbPath } = tmp();
  const options: AsyncFirstOptions<HandlerMap> = { contract, handlers, config: { databaseUrl: dbPath, logLevel: 'silent', workerConcurrency: 0 } };
  if (security) options.security = security;
  const app = await createAsyncFirst(options);
  cleanups.push(() => app.close());
  return app;
}

/** The ContractError createAsyncFirst rejects with (fails the test if it resolves or rejects with anything else). */
async function startError(contract: string | OpenApiDocument, handlers: HandlerMap, security?: Record<string, SecurityHandler>): Promise<ContractError> {
  const error = await start(contract, handlers, security).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ContractError);
  return error as ContractError;
}

const info = { title: 'test', version: '1.0.0' };
const ok = { '200': { description: 'ok', content: { 'application/json': { schema: { type: 'object' } } } } };

function doc(paths: Record<string, Record<string, unknown>>, extra: Record<string, unknown> = {}): OpenApiDocument {
  return { openapi: '3.1.0', info, paths, ...extra };
}

describe('createAsyncFirst refuses a contract it cannot serve, naming the place', () => {
  it('rejects a YAML syntax error in the contract file with the file path and the line', async () => {
    const { dir } = tmp();
    const path = join(dir, 'broken.yaml');
    writeFileSync(path, 'openapi: 3.1.0\ninfo:\n  title: t\n  version: "1"\npaths:\n  /x:\n    get: [unclosed\n');
    const error = await startError(path, {});
    expect(error.message).toContain(path);
    expect(error.message).toMatch(/line \d+/);
  });

  it('rejects a document that is not valid OpenAPI, naming the JSON path of the violation', async () => {
    const error = await startError(doc({ '/x': { get: { operationId: 'getX', responses: 5 } } }), { getX: () => ({}) });
    expect(error.message).toContain('not a valid OpenAPI 3.1.0 document');
    expect(error.message).toContain('/paths/~1x/get/responses');
  });

  it('rejects a $ref that does not resolve, naming the ref', async () => {
    const contract = doc({
      '/x': {
        post: {
          operationId: 'postX',
          requestBody: { content: { 'application/json': { schema: { $ref: '#/components/schemas/Missing' } } } },
          responses: ok,
        },
      },
    });
    const error = await startError(contract, { postX: () => ({}) });
    expect(error.message).toContain('#/components/schemas/Missing');
  });

  it('rejects an operation without an operationId, naming paths["/x"].post', async () => {
    const error = await startError(doc({ '/x': { post: { responses: ok } } }), {});
    expect(error.message).toContain('paths["/x"].post');
    expect(error.message).toContain('no operationId');
  });

  it('rejects a duplicate operationId, naming it and both places', async () => {
    const contract = doc({ '/a': { get: { operationId: 'same', responses: ok } }, '/b': { get: { operationId: 'same', responses: ok } } });
    const error = await startError(contract, { same: () => ({}) });
    expect(error.message).toContain('"same"');
    expect(error.message).toContain('paths["/a"].get');
    expect(error.message).toContain('paths["/b"].get');
  });

  it('rejects an operation with no registered handler, naming the operationId', async () => {
    const contract = doc({ '/a': { get: { operationId: 'getA', responses: ok } }, '/b': { get: { operationId: 'getB', responses: ok } } });
    const error = await startError(contract, { getA: () => ({}) });
    expect(error.message).toContain('"getB"');
    expect(error.message).toContain('has no handler');
  });

  it('rejects a handler for an operation the contract does not have, naming the handler', async () => {
    const contract = doc({ '/a': { get: { operationId: 'getA', responses: ok } } });
    const error = await startError(contract, { getA: () => ({}), getGhost: () => ({}) });
    expect(error.message).toContain('"getGhost"');
    expect(error.message).toContain('no operation with that operationId');
  });

  it('rejects a security scheme that the contract uses but no security handler serves, naming the scheme', async () => {
    const contract = doc(
      { '/a': { get: { operationId: 'getA', responses: ok } } },
      { security: [{ TokenAuth: [] }], components: { securitySchemes: { TokenAuth: { type: 'http', scheme: 'bearer' } } } },
    );
    const error = await startError(contract, { getA: () => ({}) });
    expect(error.message).toContain('"TokenAuth"');
    expect(error.message).toContain('no security handler');
  });
});

describe('an OpenAPI 3.0.3 contract', () => {
  const contract30: OpenApiDocument = {
    openapi: '3.0.3',
    info,
    paths: {
      '/notes': {
        post: {
          operationId: 'saveNote',
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['note'],
                  properties: { note: { type: 'string', nullable: true, maxLength: 5 } },
                },
              },
            },
          },
          responses: {
            '200': {
              description: 'echo',
              content: { 'application/json': { schema: { type: 'object', properties: { note: { type: 'string', nullable: true } } } } },
            },
          },
        },
      },
    },
  };

  it('is accepted and served, and `nullable: true` admits null but no other type', async () => {
    const app = await start(contract30, { saveNote: ({ body }: { body: { note: string | null } }) => ({ note: body.note }) });
    const post = (payload: string) => app.server.inject({ method: 'POST', url: '/notes', headers: { 'content-type': 'application/json' }, payload });

    const withNull = await post('{"note":null}');
    expect(withNull.statusCode).toBe(200);
    expect(withNull.json()).toEqual({ note: null });

    const withString = await post('{"note":"hi"}');
    expect(withString.statusCode).toBe(200);
    expect(withString.json()).toEqual({ note: 'hi' });

    const withNumber = await post('{"note":5}');
    expect(withNumber.statusCode).toBe(400);
    expect(withNumber.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(withNumber.json().errors).toContainEqual(expect.objectContaining({ in: 'body', pointer: '/note' }));

    const served = await app.server.inject({ method: 'GET', url: '/openapi.json' });
    expect(served.statusCode).toBe(200);
    const document = served.json();
    expect(document.openapi).toBe('3.0.3');
    expect(document.paths['/notes'].post.operationId).toBe('saveNote');
    const result = await new Validator().validate(document);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
  });
});
