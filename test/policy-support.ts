import type { OpenApiDocument } from '../src/contract/load.js';
import { appDatabases } from './driver-support.js';

/*
 * Support for the tests of operation policies (x-asyncfirst) and later work (Not-Before): a small
 * contract with one asynchronous operation, runTask (POST /tasks, no security: every job is
 * anonymous's), and the two databases an app is run on.
 */

/** The contract, with `policy` as runTask's x-asyncfirst extension when given. */
export function taskContract(policy?: unknown, extra: Record<string, unknown> = {}): OpenApiDocument {
  return {
    openapi: '3.1.0',
    info: { title: 'tasks', version: '1.0.0' },
    paths: {
      '/tasks': {
        post: {
          operationId: 'runTask',
          ...(policy === undefined ? {} : { 'x-asyncfirst': policy }),
          ...extra,
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } } },
          },
          responses: {
            '202': { description: 'Accepted' },
            '200': {
              description: 'Done',
              content: { 'application/json': { schema: { type: 'object', properties: { name: { type: 'string' }, attempt: { type: 'integer' } } } } },
            },
          },
        },
      },
      '/tasks/preview': {
        get: { operationId: 'previewTask', responses: { '200': { description: 'ok', content: { 'application/json': { schema: { type: 'object' } } } } } },
      },
    },
  };
}

/** SQLite (a temporary file) and PostgreSQL (a fresh schema): each `make` gives an app's database settings and how to remove it. */
export const DATABASES = appDatabases('af_policies');

/** An IMF-fixdate (RFC 9110 HTTP date) of a time: what Date#toUTCString writes. */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}
