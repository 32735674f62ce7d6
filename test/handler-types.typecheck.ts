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
};

// @ts-expect-error createReport has no handler: a missing handler is a compile error
export const missing: Handlers<operations> = { estimateReport: () => estimate };

export const wrongResult: Handlers<operations> = {
  // @ts-expect-error the result must be the operation's 200 schema (rowCount is a number)
  createReport: () => ({ ...report, rowCount: 'one' }),
  estimateReport: () => estimate,
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
};

// The helper types resolve to the contract's schemas.
export const body: OperationBody<operations['createReport']> = { title: 'x', rows: 2, format: 'json' };
export const result: OperationResult<operations['estimateReport']> = estimate;
