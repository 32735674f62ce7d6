import { ProblemError } from '../core/problems.js';

const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;
export const MAX_KEY_LENGTH = 255;

/**
 * Reads the Idempotency-Key from the header lines of a request. The quoted Structured Field
 * form ("abc", RFC 8941 sf-string) is the same key as abc. Throws a 400 problem when the key is
 * missing, empty, too long, not printable ASCII, or sent on more than one header line.
 */
export function parseIdempotencyKey(lines: string[] | undefined): string {
  if (!lines || lines.length === 0) {
    throw new ProblemError(
      'idempotencyKeyMissing',
      'This operation is asynchronous: send an Idempotency-Key header (1 to 255 printable ASCII characters) so a retry cannot create a second job.',
    );
  }
  if (lines.length > 1) throw new ProblemError('idempotencyKeyInvalid', 'Idempotency-Key was sent on more than one header line; send exactly one.');
  // Only HTTP's optional whitespace (SP, HTAB) surrounds a field value; String#trim would also drop NBSP and others.
  const raw = (lines[0] ?? '').replace(/^[\t ]+|[\t ]+$/g, '');
  const key = raw.startsWith('"') ? unquote(raw) : raw;
  if (key.length === 0) throw new ProblemError('idempotencyKeyInvalid', 'Idempotency-Key is empty.');
  if (key.length > MAX_KEY_LENGTH)
    throw new ProblemError('idempotencyKeyInvalid', `Idempotency-Key is ${key.length} characters long; the limit is ${MAX_KEY_LENGTH}.`);
  if (!PRINTABLE_ASCII.test(key)) throw new ProblemError('idempotencyKeyInvalid', 'Idempotency-Key must be printable ASCII (0x20 to 0x7E).');
  return key;
}

function unquote(value: string): string {
  let key = '';
  for (let i = 1; i < value.length; i++) {
    const char = value[i];
    if (char === '\\') {
      const next = value[++i];
      if (next !== '"' && next !== '\\') break;
      key += next;
    } else if (char === '"') {
      if (i === value.length - 1) return key;
      break;
    } else {
      key += char;
    }
  }
  throw new ProblemError('idempotencyKeyInvalid', 'Idempotency-Key starts with a quote but is not a valid quoted string (RFC 8941 sf-string).');
}
