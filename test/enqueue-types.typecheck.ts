/*
 * Compile-time proof that app.enqueue is typed from the contract, as the handlers are, with no
 * generics at the call site: `npx tsc -p .` (npm run typecheck) fails if any line marked
 * @ts-expect-error stops being an error. Never executed.
 */
import { type AsyncFirstApp, type AsyncFirstBackground, createAsyncFirst, createAsyncFirstWorker } from '../src/app.js';
import { reportHandlers } from '../src/demo/service.js';
import type { Handlers } from '../src/handlers.js';
import { createTestApp } from '../src/testing/index.js';

export async function demoContract(): Promise<void> {
  const app = await createAsyncFirst({ contract: 'openapi.yaml', handlers: reportHandlers });

  await app.enqueue('createReport', { body: { title: 'nightly', rows: 10 } });
  await app.enqueue('createReport', { body: { title: 'nightly', rows: 10, format: 'json' } }, { principal: 'alice', key: 'nightly-1' });
  const { jobId, replayed }: { jobId: string; replayed: boolean } = await app.enqueue('createReport', { body: { title: 't', rows: 1 } });
  void [jobId, replayed];

  // @ts-expect-error estimateReport is synchronous: only asynchronous operations are enqueued
  await app.enqueue('estimateReport', { query: { rows: 1 } });
  // @ts-expect-error the contract has no such operation
  await app.enqueue('deleteEverything', {});
  // @ts-expect-error getJob is one of asyncfirst's own endpoints, not an operation of the contract
  await app.enqueue('getJob', { params: { id: 'x' } });
  // @ts-expect-error rows is an integer, not a string
  await app.enqueue('createReport', { body: { title: 'nightly', rows: 'ten' } });
  // @ts-expect-error title is required
  await app.enqueue('createReport', { body: { rows: 10 } });
  // @ts-expect-error format is csv or json
  await app.enqueue('createReport', { body: { title: 'nightly', rows: 10, format: 'xml' } });
  // @ts-expect-error the body is required
  await app.enqueue('createReport', {});
  // @ts-expect-error the input is required when the body is
  await app.enqueue('createReport');
  // @ts-expect-error a principal is a string
  await app.enqueue('createReport', { body: { title: 'nightly', rows: 10 } }, { principal: 42 });

  // The worker-only process and the test kit's app have the same typed enqueue.
  const worker = await createAsyncFirstWorker({ contract: 'openapi.yaml', handlers: reportHandlers });
  await worker.enqueue('createReport', { body: { title: 'w', rows: 1 } });
  // @ts-expect-error rows is an integer
  await worker.enqueue('createReport', { body: { title: 'w', rows: '1' } });
  const service = await createTestApp({ contract: 'openapi.yaml', handlers: reportHandlers });
  // @ts-expect-error estimateReport is synchronous
  await service.app.enqueue('estimateReport', { query: { rows: 1 } });

  // A typed app is still an AsyncFirstApp (and an AsyncFirstBackground) where one is expected.
  const untyped: AsyncFirstApp = app;
  const background: AsyncFirstBackground = worker;
  await untyped.enqueue('anything', { body: {} });
  void background;
}

/** A contract with path and query parameters, as openapi-typescript writes it. */
interface ArchiveOperations {
  archiveFolder: {
    parameters: { query: { depth: number; dryRun?: boolean }; header?: never; path: { folderId: string }; cookie?: never };
    requestBody?: { content: { 'application/json': { note?: string } } };
    responses: {
      200: { headers: { [name: string]: unknown }; content: { 'application/json': { files: number } } };
      202: { headers: { [name: string]: unknown }; content: { 'application/json': { job_id: string } } };
    };
  };
  purgeTrash: {
    parameters: { query?: { olderThanDays?: number }; header?: never; path?: never; cookie?: never };
    requestBody?: never;
    responses: { 202: { headers: { [name: string]: unknown }; content: { 'application/json': { job_id: string } } } };
  };
  folderSize: {
    parameters: { query?: never; header?: never; path: { folderId: string }; cookie?: never };
    requestBody?: never;
    responses: { 200: { headers: { [name: string]: unknown }; content: { 'application/json': { bytes: number } } } };
  };
}

export async function parametersAndOptionalParts(): Promise<void> {
  const handlers: Handlers<ArchiveOperations> = {
    archiveFolder: ({ params, query }) => ({ files: params.folderId.length + query.depth }),
    purgeTrash: () => undefined,
    folderSize: () => ({ bytes: 0 }),
  };
  const app = await createAsyncFirst({ contract: 'archive.yaml', handlers });

  await app.enqueue('archiveFolder', { params: { folderId: 'f1' }, query: { depth: 2 } });
  await app.enqueue('archiveFolder', { params: { folderId: 'f1' }, query: { depth: 2, dryRun: true }, body: { note: 'weekly' } });
  // Nothing is required: no input at all.
  await app.enqueue('purgeTrash');
  await app.enqueue('purgeTrash', { query: { olderThanDays: 30 } }, { key: 'purge-2026-12' });

  // @ts-expect-error folderId (a path parameter) is required
  await app.enqueue('archiveFolder', { params: {}, query: { depth: 2 } });
  // @ts-expect-error depth (a required query parameter) is missing
  await app.enqueue('archiveFolder', { params: { folderId: 'f1' } });
  // @ts-expect-error depth is a number
  await app.enqueue('archiveFolder', { params: { folderId: 'f1' }, query: { depth: 'deep' } });
  // @ts-expect-error purgeTrash has no path parameters
  await app.enqueue('purgeTrash', { params: { folderId: 'f1' } });
  // @ts-expect-error folderSize answers 200 at once: it is synchronous
  await app.enqueue('folderSize', { params: { folderId: 'f1' } });
}
