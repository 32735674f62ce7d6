/**
 * Compile-time proof that handlers are typed from generated/: `npx tsc -p .` (part of CI) fails
 * if any line marked @ts-expect-error stops being an error. Never executed.
 */
import type { operations } from '../generated/api.js';
import type { Handlers, OperationBody, OperationResult } from '../src/handlers.js';

const estimate = { rows: 1, format: 'csv' as const, estimatedBytes: 1 };
const report = { title: 't', format: 'csv' as const, rowCount: 1, bytes: 1, sha256: '0'.repeat(64) };

export const complete: Handlers<operations> = {
  createReport: ({ body }) => ({ ...report, title: body.title, rowCount: body.rows }),
  estimateReport: ({ query }) => ({ ...estimate, rows: query.rows }),
  indexReport: ({ body }) => ({ report: body.report, sha256: body.sha256, terms: [] }),
};

// @ts-expect-error createReport has no handler: a missing handler is a compile error
export const missing: Handlers<operations> = { estimateReport: () => estimate, indexReport: complete.indexReport };

export const wrongResult: Handlers<operations> = {
  // @ts-expect-error the result must be the operation's 200 schema (rowCount is a number)
  createReport: () => ({ ...report, rowCount: 'one' }),
  estimateReport: () => estimate,
  indexReport: complete.indexReport,
};

export const unknownOperation: Handlers<operations> = {
  ...complete,
  // @ts-expect-error a handler for an operation the contract does not have
  deleteEverything: () => undefined,
};

export const bodyFields: Handlers<operations> = {
  createReport: ({ body }) => {
    // @ts-expect-error the body has no such field
    void body.colour;
    return report;
  },
  estimateReport: ({ query }) => {
    // @ts-expect-error rows is a number, not a string
    const rows: string = query.rows;
    void rows;
    return estimate;
  },
  indexReport: complete.indexReport,
};

const sha256 = '0'.repeat(64);

// ctx.enqueue is typed from the contract as app.enqueue is: asynchronous operations, each with its own input.
export const followUps: Handlers<operations> = {
  createReport: ({ body }, { enqueue }) => {
    enqueue('indexReport', { body: { report: 'r', title: body.title, sha256 } });
    enqueue('indexReport', { body: { report: 'r', title: body.title, sha256 } }, { key: 'index', runAt: new Date() });
    enqueue('createReport', { body: { title: 'again', rows: 1 } }, { runAt: Date.now() + 1000 });
    // @ts-expect-error estimateReport is synchronous: only asynchronous operations are follow-ups
    enqueue('estimateReport', { query: { rows: 1 } });
    // @ts-expect-error the contract has no such operation
    enqueue('deleteEverything', {});
    // @ts-expect-error sha256 is required
    enqueue('indexReport', { body: { report: 'r', title: 't' } });
    // @ts-expect-error the input is required when the body is
    enqueue('indexReport');
    // @ts-expect-error a key is a string
    enqueue('indexReport', { body: { report: 'r', title: 't', sha256 } }, { key: 1 });
    // @ts-expect-error ctx.enqueue stores the job later: it returns nothing to wait for
    void (enqueue('indexReport', { body: { report: 'r', title: 't', sha256 } }) as Promise<unknown>);
    return report;
  },
  estimateReport: complete.estimateReport,
  indexReport: complete.indexReport,
};

// The helper types resolve to the contract's schemas.
export const body: OperationBody<operations['createReport']> = { title: 'x', rows: 2, format: 'json' };
export const result: OperationResult<operations['estimateReport']> = estimate;
