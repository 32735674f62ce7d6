import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every depth, so that two bodies that differ only in key
 * order have the same text. Arrays keep their order; undefined members are dropped as
 * JSON.stringify drops them (an undefined array item is null). Iterative, so no depth of
 * nesting can overflow the stack of whoever calls it.
 */
export function canonicalJson(value: unknown): string {
  let text = '';
  const open: OpenContainer[] = [];
  let next: unknown = value;
  for (;;) {
    if (next === null || typeof next !== 'object') text += JSON.stringify(next) ?? 'null';
    else if (Array.isArray(next)) {
      text += '[';
      open.push({ keys: undefined, values: next, written: 0 });
    } else {
      text += '{';
      open.push(openObject(next));
    }
    // Close the containers that are complete, then go on with the next member of the innermost one.
    let container = open[open.length - 1];
    while (container !== undefined && container.written === container.values.length) {
      text += container.keys === undefined ? ']' : '}';
      open.pop();
      container = open[open.length - 1];
    }
    if (container === undefined) return text;
    if (container.written > 0) text += ',';
    if (container.keys !== undefined) text += `${JSON.stringify(container.keys[container.written])}:`;
    next = container.values[container.written++] ?? null;
  }
}

/** An array or object whose members canonicalJson is writing, in order. */
interface OpenContainer {
  /** The object's member names, sorted; undefined for an array. */
  keys: string[] | undefined;
  values: readonly unknown[];
  written: number;
}

function openObject(object: object): OpenContainer {
  const keys: string[] = [];
  const values: unknown[] = [];
  for (const key of Object.keys(object).sort()) {
    const member = (object as Record<string, unknown>)[key];
    if (member !== undefined) {
      keys.push(key);
      values.push(member);
    }
  }
  return { keys, values, written: 0 };
}

/** What an asynchronous operation was asked to do: the job's stored input. */
export interface JobInput {
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  body: unknown;
  /** The Callback-URL, when the submission asked for a webhook: another callback is another request. */
  callback?: string;
  /** The start the submission asked for (Not-Before, enqueue's runAt), as not-before.ts writes it: another start is another request. */
  notBefore?: string;
  /** The schedule and tick (ISO 8601) of a job a schedule submitted: the handler's context.schedule. */
  schedule?: { name: string; tick: string };
}

/**
 * The request fingerprint: SHA-256 (hex) of the operationId and the canonical JSON of the
 * path parameters, query, body, Callback-URL and Not-Before (each of the last two absent when not sent). Returns the canonical input text too, which is what gets
 * stored, so the request is serialized once.
 */
export function fingerprintRequest(operationId: string, input: JobInput): { fingerprint: string; canonicalInput: string } {
  const canonicalInput = canonicalJson({
    body: input.body ?? null,
    params: input.params,
    query: input.query,
    callback: input.callback,
    notBefore: input.notBefore,
    schedule: input.schedule,
  });
  const fingerprint = createHash('sha256').update(operationId).update('\n').update(canonicalInput).digest('hex');
  return { fingerprint, canonicalInput };
}
