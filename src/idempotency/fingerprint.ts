import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every depth, so that two bodies that differ only in key
 * order have the same text. Arrays keep their order; undefined members are dropped as
 * JSON.stringify drops them.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`;
  const members: string[] = [];
  for (const key of Object.keys(value).sort()) {
    const member = (value as Record<string, unknown>)[key];
    if (member !== undefined) members.push(`${JSON.stringify(key)}:${canonicalJson(member)}`);
  }
  return `{${members.join(',')}}`;
}

/** What an asynchronous operation was asked to do: the job's stored input. */
export interface JobInput {
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  body: unknown;
  /** The Callback-URL, when the submission asked for a webhook: another callback is another request. */
  callback?: string;
}

/**
 * The request fingerprint: SHA-256 (hex) of the operationId and the canonical JSON of the
 * path parameters, query, body and Callback-URL (absent when not sent). Returns the canonical input text too, which is what gets
 * stored, so the request is serialized once.
 */
export function fingerprintRequest(operationId: string, input: JobInput): { fingerprint: string; canonicalInput: string } {
  const canonicalInput = canonicalJson({ body: input.body ?? null, params: input.params, query: input.query, callback: input.callback });
  const fingerprint = createHash('sha256').update(operationId).update('\n').update(canonicalInput).digest('hex');
  return { fingerprint, canonicalInput };
}
