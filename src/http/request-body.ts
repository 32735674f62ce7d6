import type { FastifyBodyParser, FastifyRequest } from 'fastify';
import { ProblemError } from '../core/problems.js';

type ParseDone = (error: Error | null, body?: unknown) => void;
type ParseText = (request: FastifyRequest, text: string, done: ParseDone) => void;

// fatal: a byte sequence that is not UTF-8 throws instead of becoming U+FFFD, so two different
// broken bodies cannot decode to one text (and one fingerprint). The BOM is left for the JSON parser,
// which skips it as it always has.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The JSON body parser (application/json and every application/…+json): the bytes must be UTF-8,
 * then Fastify's own JSON parsing with its prototype-poisoning checks, then the nesting limit.
 */
export function jsonBodyParser(parseText: FastifyBodyParser<string>, maxDepth: number): FastifyBodyParser<Buffer> {
  // Fastify's default JSON parser is the callback form of FastifyBodyParser.
  const parse = parseText as ParseText;
  // Every level of nesting takes an opening and a closing bracket, so a shorter body cannot be too deep.
  const shortestTooDeep = 2 * (maxDepth + 1);
  return (request, body, done) => {
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      done(new ProblemError('malformedBody', 'The body is not valid UTF-8.'), undefined);
      return;
    }
    parse(request, text, (error, value) => {
      if (error) done(error, undefined);
      else if (body.length >= shortestTooDeep && nestsDeeperThan(value, maxDepth)) done(tooDeep(maxDepth), undefined);
      else if (MAYBE_OUT_OF_RANGE.test(text)) {
        // JSON.parse makes Infinity of a number past the range of a double; stored, it would become null.
        const pointer = nonFiniteNumberAt(value);
        done(pointer === undefined ? null : outOfRange(pointer), pointer === undefined ? value : undefined);
      } else done(null, value);
    });
  };
}

/** True when arrays and objects nest more than maxDepth levels in a parsed JSON value (the value itself is level 1). */
function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  // Iterative: the values this guards against are the ones deep enough to overflow a recursive walk.
  const containers: object[] = [value];
  const depths: number[] = [1];
  for (let container = containers.pop(); container !== undefined; container = containers.pop()) {
    const depth = depths.pop() as number;
    if (depth > maxDepth) return true;
    if (Array.isArray(container)) {
      for (const member of container) {
        if (member !== null && typeof member === 'object') {
          containers.push(member);
          depths.push(depth + 1);
        }
      }
      continue;
    }
    // for…in rather than Object.values: no array allocated per object.
    for (const key in container) {
      const member = (container as Record<string, unknown>)[key];
      if (member !== null && typeof member === 'object') {
        containers.push(member);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}

/** A number written with a 3-digit exponent or 309 digits may be past the range of a double; anything else is not. */
const MAYBE_OUT_OF_RANGE = /[eE]\+?\d{3}|\d{309}/;

/** The JSON Pointer of the first number in the value that is not finite (it overflowed a double), if any. */
function nonFiniteNumberAt(value: unknown): string | undefined {
  const pending: Array<{ value: unknown; pointer: string }> = [{ value, pointer: '' }];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const current = item.value;
    if (typeof current === 'number' && !Number.isFinite(current)) return item.pointer;
    if (current === null || typeof current !== 'object') continue;
    for (const key in current) {
      pending.push({ value: (current as Record<string, unknown>)[key], pointer: `${item.pointer}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}` });
    }
  }
  return undefined;
}

function outOfRange(pointer: string): ProblemError {
  const message = 'is a number too large for a double-precision float (it would be stored as Infinity, then null)';
  return new ProblemError('validationFailed', `The body at ${pointer || '/'} ${message}.`, { extra: { errors: [{ in: 'body', pointer, message }] } });
}

function tooDeep(maxDepth: number): ProblemError {
  const message = `nests arrays and objects deeper than ${maxDepth} levels (BODY_MAX_DEPTH)`;
  return new ProblemError('validationFailed', `The body ${message}.`, { extra: { errors: [{ in: 'body', pointer: '', message }] } });
}

// One parameter of a media type: a name, then a quoted string (which may hold ";") or a plain token.
const MEDIA_TYPE_PARAMETER = /;\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;

/** The charset a Content-Type header declares when it is not UTF-8 (lower-cased, unquoted); undefined when it declares UTF-8 or none. */
export function nonUtf8Charset(contentType: string | undefined): string | undefined {
  if (contentType === undefined || !contentType.includes(';')) return undefined;
  for (const [, name, value] of contentType.matchAll(MEDIA_TYPE_PARAMETER)) {
    if (name?.toLowerCase() !== 'charset' || value === undefined) continue;
    const quoted = value.length >= 2 && value.startsWith('"') && value.endsWith('"');
    const charset = (quoted ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value).trim().toLowerCase();
    if (charset !== 'utf-8') return charset;
  }
  return undefined;
}
