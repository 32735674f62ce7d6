import { describe, expect, it } from 'vitest';
import type { OpenApiDocument } from '../src/contract/load.js';
import { createTestApp, runHandler } from '../src/testing/index.js';

/*
 * A result is written from its operation's 200 schema, as Fastify's response serialization does: a
 * property the schema does not declare (it has no additionalProperties: false, so the result
 * matches) is dropped, never sent nor stored — the handler's internals do not leak.
 */

const account = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string' }, tags: { type: 'array', items: { type: 'object', properties: { label: { type: 'string' } } } } },
};
const contract = {
  openapi: '3.1.0',
  info: { title: 'accounts', version: '1' },
  paths: {
    '/account': {
      get: { operationId: 'readAccount', responses: { 200: { description: 'the account', content: { 'application/json': { schema: account } } } } },
      post: {
        operationId: 'exportAccount',
        responses: {
          200: { description: 'the export', content: { 'application/json': { schema: account } } },
          202: { description: 'accepted' },
        },
      },
    },
    '/profile': {
      get: {
        operationId: 'readProfile',
        responses: {
          200: {
            description: 'a free-form object beside a declared one',
            content: {
              'application/json': {
                schema: { type: 'object', properties: { metadata: { type: 'object' }, anything: {}, list: { type: 'array' } } },
              },
            },
          },
        },
      },
    },
    '/settings': {
      get: {
        operationId: 'readSettings',
        responses: {
          200: { description: 'any keys', content: { 'application/json': { schema: { type: 'object', additionalProperties: { type: 'string' } } } } },
        },
      },
    },
  },
} as unknown as OpenApiDocument;

const withSecrets = { name: 'ada', passwordHash: 'secret-hash', tags: [{ label: 'vip', internalScore: 99 }] };
const options = {
  contract,
  handlers: {
    readAccount: () => withSecrets,
    exportAccount: () => withSecrets,
    readSettings: () => ({ theme: 'dark', locale: 'en' }),
    readProfile: () => ({ metadata: { team: 'core', nested: { level: 2 } }, anything: { x: [1] }, list: [{ a: 1 }], hidden: true }),
  },
};

describe('a result with properties its schema does not declare', () => {
  it('is answered by a synchronous operation without them, at every depth', async () => {
    const service = await createTestApp(options);
    try {
      const answer = await service.request({ method: 'GET', url: '/account' });
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(answer.body).toEqual({ name: 'ada', tags: [{ label: 'vip' }] });
      // A schema that allows other properties keeps them, and so does a free-form one (`type: object` alone).
      const settings = await service.request({ method: 'GET', url: '/settings' });
      expect(settings.status).toBe(200);
      expect(settings.body).toEqual({ theme: 'dark', locale: 'en' });
      const profile = await service.request({ method: 'GET', url: '/profile' });
      expect(profile.status).toBe(200);
      expect(profile.body).toEqual({ metadata: { team: 'core', nested: { level: 2 } }, anything: { x: [1] }, list: [{ a: 1 }] });
    } finally {
      await service.close();
    }
  });

  it('is stored and served as a job result without them: GET /jobs/{id}, its /result and the stored row', async () => {
    const service = await createTestApp(options);
    try {
      const accepted = await service.submit('POST', '/account');
      expect(accepted.status).toBe(202);
      await service.runUntilIdle();
      const job = await service.job(accepted.jobId!);
      expect(job).toMatchObject({ status: 'succeeded', result: { name: 'ada', tags: [{ label: 'vip' }] } });
      expect(JSON.stringify(job)).not.toContain('secret-hash');
      expect(JSON.stringify(job)).not.toContain('internalScore');
      const result = await service.request({ method: 'GET', url: `/jobs/${accepted.jobId}/result` });
      expect(result.status).toBe(200);
      expect(result.body).toEqual({ name: 'ada', tags: [{ label: 'vip' }] });
      const row = await service.app.store.getJob('anonymous', accepted.jobId!);
      expect(JSON.parse(row?.result ?? 'null')).toEqual({ name: 'ada', tags: [{ label: 'vip' }] });
    } finally {
      await service.close();
    }
  });

  it('is given by runHandler as a client would receive it', async () => {
    const run = await runHandler(options, 'readAccount', {});
    expect(run.result).toEqual({ name: 'ada', tags: [{ label: 'vip' }] });
  });
});
