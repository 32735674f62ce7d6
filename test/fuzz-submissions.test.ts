/**
 * Fuzzing the demo's operations through app.server.inject. Requests are generated from openapi.yaml
 * (values valid per its schemas, and mutations of them) and by hostile generators: deep nesting, odd
 * numbers, duplicate and prototype keys, long strings, invalid UTF-8, other charsets, odd Content-Types,
 * Idempotency-Keys and Callback-URLs. A small model of the README lists each request's faults; the
 * answer must be a valid 202 (or the synchronous 200) when there are none, and otherwise a 4xx problem
 * naming one of them — never a 5xx, never Fastify's {"error": …}, never a hang. A refused request
 * stores nothing, an accepted one is stored and replays for its key, and the server stays up.
 *
 * Bounded: RUNS runs and BUDGET_MS of wall-clock time per property, shrinking included. A failure
 * shows the shrunk request, what the model expected and what came back, and fast-check's seed:
 * FUZZ_SEED=<seed> replays it; FUZZ_RUNS and FUZZ_BUDGET_MS make a longer local run.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type AsyncFirstApp, createAsyncFirst } from '../src/app.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import type { OpenApiDocument } from '../src/contract/load.js';
import { JOB_ID_PATTERN } from '../src/core/ids.js';
import { JOB_STATES } from '../src/core/job-states.js';
import { countStored, findJob, problemFault, showBytes, startFuzzDemo, tempDir } from './helpers.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? 800);
/** Longer than any answer takes; a request still unanswered after it is a hang. */
const ANSWER_TIMEOUT_MS = 3000;
const BODY_LIMIT = 64 * 1024;
/** The documented nesting limit (BODY_MAX_DEPTH): a JSON body nested deeper is 400 validation-failed. */
const BODY_MAX_DEPTH = DEFAULT_CONFIG.bodyMaxDepth;
const SECRET = `whsec_${Buffer.from('asyncfirst-fuzz-webhook-secret!!').toString('base64')}`;

/**
 * Checks a predicate on generated values, `examples` first (on every run of the suite), at most `runs`
 * times. Runs that would start after BUDGET_MS pass without doing anything, shrinking included; a run
 * that has started is never cut off, so a hang still fails it by ANSWER_TIMEOUT_MS.
 */
async function fuzz<T>(arbitrary: fc.Arbitrary<T>, predicate: (value: T) => Promise<void>, options: { runs?: number; examples?: T[] } = {}): Promise<void> {
  const deadline = Date.now() + BUDGET_MS;
  await fc.assert(
    fc.asyncProperty(arbitrary, async (value) => {
      if (Date.now() <= deadline) await predicate(value);
    }),
    {
      numRuns: options.runs ?? RUNS,
      examples: (options.examples ?? []).map((example) => [example] as [T]),
      includeErrorInReport: true,
      ...(process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {}),
    },
  );
}

/** Gives a generated value the text fast-check prints for it in a counterexample. */
function shown<T extends object>(value: T, show: (value: T) => string): T {
  Object.defineProperty(value, fc.toStringMethod, { value: () => show(value), enumerable: false });
  return value;
}

// ---------------------------------------------------------------------------------------------
// The contract: the schemas and parameters of openapi.yaml, with every $ref resolved.

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean;
  enum?: unknown[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  default?: unknown;
}
interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema: Schema;
}
interface ContractOperation {
  requestBody?: { content: Record<string, { schema: Schema }> };
  parameters?: Parameter[];
}

const contract = parseYaml(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;

function dereference(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(dereference);
  if (node === null || typeof node !== 'object') return node;
  const ref = (node as { $ref?: unknown }).$ref;
  if (typeof ref === 'string') {
    return dereference(
      ref
        .slice(2)
        .split('/')
        .reduce<unknown>((at, token) => (at as Record<string, unknown>)[token], contract),
    );
  }
  return Object.fromEntries(Object.entries(node).map(([name, member]) => [name, dereference(member)]));
}

const paths = dereference(contract.paths) as Record<string, Record<string, ContractOperation>>;
const REPORT_REQUEST = paths['/reports']!.post!.requestBody!.content['application/json']!.schema;
const ESTIMATE_PARAMETERS = paths['/reports/estimate']!.get!.parameters!;
const ROWS = ESTIMATE_PARAMETERS.find((parameter) => parameter.name === 'rows')!;
const FORMAT = ESTIMATE_PARAMETERS.find((parameter) => parameter.name === 'format')!;

/** A second contract, with a free-form object body: any JSON document (within the depth limit) passes its schema and reaches the fingerprint and the store. */
const OPEN_CONTRACT = {
  openapi: '3.1.0',
  info: { title: 'free-form documents', version: '1.0.0' },
  security: [{ ApiKeyAuth: [] }],
  paths: {
    '/documents': {
      post: {
        operationId: 'storeDocument',
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object' } } } },
        responses: { '202': { description: 'Accepted.' } },
      },
    },
  },
  components: { securitySchemes: { ApiKeyAuth: { type: 'apiKey', in: 'header', name: 'X-API-Key' } } },
} as unknown as OpenApiDocument;
const DOCUMENT: Schema = { type: 'object' };

const escapeToken = (token: string) => token.replace(/~/g, '~0').replace(/\//g, '~1');

/** The JSON Pointers at which a parsed value breaks a schema (the subset openapi.yaml uses), as the README's `errors` name them. */
function violations(schema: Schema, value: unknown, pointer = ''): string[] {
  if (schema.enum) return schema.enum.includes(value) ? [] : [pointer];
  switch (schema.type) {
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return [pointer];
      const members = value as Record<string, unknown>;
      const found = (schema.required ?? []).filter((name) => !Object.hasOwn(members, name)).map((name) => `${pointer}/${escapeToken(name)}`);
      for (const [name, member] of Object.entries(members)) {
        const property = schema.properties && Object.hasOwn(schema.properties, name) ? schema.properties[name] : undefined;
        if (property) found.push(...violations(property, member, `${pointer}/${escapeToken(name)}`));
        else if (schema.additionalProperties === false) found.push(`${pointer}/${escapeToken(name)}`);
      }
      return found;
    }
    case 'string': {
      if (typeof value !== 'string') return [pointer];
      const length = [...value].length; // code points, as JSON Schema counts
      return length < (schema.minLength ?? 0) || length > (schema.maxLength ?? Number.POSITIVE_INFINITY) ? [pointer] : [];
    }
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return [pointer];
      return value < (schema.minimum ?? Number.NEGATIVE_INFINITY) || value > (schema.maximum ?? Number.POSITIVE_INFINITY) ? [pointer] : [];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [pointer];
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------
// JSON text: generated values are written out here, so numbers and members can be spelled oddly.

/** JSON written exactly as given (a number spelled 1e309, -0, 1.0 …). */
class RawJson {
  constructor(readonly text: string) {}
}
/** An object written member by member in this order, repeats included. */
class Members {
  constructor(readonly entries: Array<[string, unknown]>) {}
}

function jsonText(value: unknown, gap = ''): string {
  if (value instanceof RawJson) return value.text;
  const entries =
    value instanceof Members ? value.entries : value !== null && typeof value === 'object' && !Array.isArray(value) ? Object.entries(value) : undefined;
  if (entries) return `{${gap}${entries.map(([name, member]) => `${JSON.stringify(name)}${gap}:${gap}${jsonText(member, gap)}`).join(`,${gap}`)}${gap}}`;
  if (Array.isArray(value)) return `[${gap}${value.map((item) => jsonText(item, gap)).join(`,${gap}`)}${gap}]`;
  return JSON.stringify(value) ?? 'null';
}

const GAPS = fc.constantFrom('', ' ', '\n', '\t', '\r\n  ');
const TEXT_UNIT = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom('é', 'ß', 'ж', '中', '😀', '\u0000', '\u001f', '\u2028', '\ufeff', '"', '\\', '\ud800') },
);

/** Values valid per a schema. */
function validValue(schema: Schema): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  switch (schema.type) {
    case 'object': {
      const model = Object.fromEntries(Object.entries(schema.properties ?? {}).map(([name, property]) => [name, validValue(property)]));
      return fc.record<Record<string, unknown>>(model, { requiredKeys: schema.required ?? [] });
    }
    case 'string': {
      const minLength = schema.minLength ?? 0;
      const maxLength = schema.maxLength ?? 40;
      // Mostly short, sometimes at the longest allowed; cross-shrinking makes a long counterexample short.
      return fc.oneof(
        { withCrossShrink: true },
        { weight: 5, arbitrary: fc.string({ unit: TEXT_UNIT, minLength, maxLength: Math.min(maxLength, minLength + 30) }) },
        { weight: 1, arbitrary: fc.string({ unit: TEXT_UNIT, minLength: Math.max(minLength, maxLength - 2), maxLength }) },
      );
    }
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -1e9, max: schema.maximum ?? 1e9 });
    case 'boolean':
      return fc.boolean();
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

interface Mutation {
  value: unknown;
  pointer: string;
  what: string;
}

/** Values that break a schema at one known pointer: a wrong type, a missing or extra member, a value out of range. */
function mutatedValue(schema: Schema, pointer = ''): fc.Arbitrary<Mutation> {
  const at = (values: unknown[], what: string) => fc.constantFrom(...values).map((value) => ({ value, pointer, what }));
  const options: fc.Arbitrary<Mutation>[] = [];
  if (schema.enum) {
    const options = schema.enum.map(String);
    return fc.oneof(
      at([5, true, null, [], {}], 'not a string'),
      fc
        .oneof(fc.string({ maxLength: 8 }), fc.constantFrom(...options.flatMap((option) => [option.toUpperCase(), ` ${option}`, `${option}\u0000`])))
        .filter((text) => !schema.enum!.includes(text))
        .map((value) => ({ value, pointer, what: 'not one of the enum' })),
    );
  }
  switch (schema.type) {
    case 'object': {
      const valid = validValue(schema) as fc.Arbitrary<Record<string, unknown>>;
      const properties = schema.properties ?? {};
      options.push(at([[], 'report', 1, null, true], 'not an object'));
      for (const name of schema.required ?? []) {
        options.push(
          valid.map((value) => {
            const { [name]: _dropped, ...rest } = value;
            return { value: rest, pointer: `${pointer}/${escapeToken(name)}`, what: `without the required ${name}` };
          }),
        );
      }
      if (schema.additionalProperties === false) {
        const extraName = fc.string({ maxLength: 10 }).filter((name) => !Object.hasOwn(properties, name) && name !== '__proto__' && name !== 'constructor');
        options.push(
          fc.tuple(valid, extraName, fc.jsonValue({ maxDepth: 1 })).map(([value, name, extra]) => ({
            value: new Members([...Object.entries(value), [name, extra]]),
            pointer: `${pointer}/${escapeToken(name)}`,
            what: `with the extra member ${JSON.stringify(name)}`,
          })),
        );
      }
      for (const [name, property] of Object.entries(properties)) {
        options.push(
          fc.tuple(valid, mutatedValue(property, `${pointer}/${escapeToken(name)}`)).map(([value, mutation]) => ({
            ...mutation,
            value: { ...value, [name]: mutation.value },
          })),
        );
      }
      break;
    }
    case 'string':
      options.push(at([5, true, null, [], {}], 'not a string'));
      if ((schema.minLength ?? 0) > 0) options.push(fc.string({ maxLength: schema.minLength! - 1 }).map((value) => ({ value, pointer, what: 'too short' })));
      if (schema.maxLength !== undefined) {
        options.push(
          fc
            .string({ unit: TEXT_UNIT, minLength: schema.maxLength + 1, maxLength: schema.maxLength + 40 })
            .map((value) => ({ value, pointer, what: 'too long' })),
        );
      }
      break;
    case 'integer': {
      options.push(at(['5', true, null, [], {}, 1.5, 0.25], 'not an integer'));
      const { minimum, maximum } = schema;
      if (minimum !== undefined) {
        options.push(fc.integer({ min: minimum - 1e9, max: minimum - 1 }).map((value) => ({ value, pointer, what: 'below the minimum' })));
        options.push(at([new RawJson('-1e309'), ...(minimum > 0 ? [new RawJson('-0'), new RawJson('0e5')] : [])], 'below the minimum, spelled oddly'));
      }
      if (maximum !== undefined) {
        options.push(fc.integer({ min: maximum + 1, max: maximum + 1e9 }).map((value) => ({ value, pointer, what: 'above the maximum' })));
        options.push(
          at(
            [new RawJson('1e309'), new RawJson('123456789012345678901234567890'), new RawJson(`${maximum}.5`), new RawJson(`${maximum}0e-0`)],
            'above the maximum, spelled oddly',
          ),
        );
      }
      break;
    }
    case 'boolean':
      options.push(at(['true', 1, 0, null, [], {}], 'not a boolean'));
      break;
  }
  return fc.oneof(...options);
}

// ---------------------------------------------------------------------------------------------
// The model: the faults the README gives a request, each with the answer it gets.

/** An answer the model allows: "<status> <problem slug>". A soft fault may be answered, but need not be. */
interface Fault {
  answer: string;
  why: string;
  soft?: boolean;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function nestingDepth(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const [node, depth] = entry;
    if (node === null || typeof node !== 'object') continue;
    deepest = Math.max(deepest, depth);
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return deepest;
}

function hasNonFiniteNumber(value: unknown): boolean {
  const stack = [value];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    if (typeof node === 'number' && !Number.isFinite(node)) return true;
    if (node !== null && typeof node === 'object') stack.push(...Object.values(node));
  }
  return false;
}

function hasPrototypeKey(value: unknown): boolean {
  const stack = [value];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    if (node === null || typeof node !== 'object') continue;
    if (Object.hasOwn(node, '__proto__')) return true;
    const maker = Object.hasOwn(node, 'constructor') ? (node as { constructor: unknown }).constructor : undefined;
    if (maker !== null && typeof maker === 'object' && Object.hasOwn(maker, 'prototype')) return true;
    stack.push(...Object.values(node));
  }
  return false;
}

/** The body's faults, judged from its bytes as the server receives them. */
function bodyFaults(bytes: Buffer, schema: Schema): Fault[] {
  if (bytes.length > BODY_LIMIT) return [{ answer: '413 payload-too-large', why: `${bytes.length} bytes is more than BODY_LIMIT (${BODY_LIMIT})` }];
  if (bytes.length === 0) {
    return [
      { answer: '400 malformed-body', why: 'the body is empty' },
      { answer: '400 validation-failed', why: 'the body is required' },
    ];
  }
  let text: string;
  try {
    text = STRICT_UTF8.decode(bytes);
  } catch {
    return [{ answer: '400 malformed-body', why: 'the body is not valid UTF-8' }];
  }
  const faults: Fault[] = [];
  if (text.startsWith('\ufeff')) {
    faults.push({ answer: '400 malformed-body', why: 'the body starts with a byte order mark', soft: true });
    text = text.slice(1);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [...faults, { answer: '400 malformed-body', why: 'the body is not JSON' }];
  }
  const depth = nestingDepth(value);
  if (depth > BODY_MAX_DEPTH) faults.push({ answer: '400 validation-failed', why: `the body nests ${depth} deep, past BODY_MAX_DEPTH (${BODY_MAX_DEPTH})` });
  // JSON.parse reads 1e309 as Infinity, which JSON cannot write back: it must not reach the store (as null).
  if (hasNonFiniteNumber(value)) {
    faults.push({ answer: '400 validation-failed', why: 'a number too large for a double (it would be stored as null)' });
    faults.push({ answer: '400 malformed-body', why: 'a number too large for a double (it would be stored as null)' });
  }
  if (hasPrototypeKey(value)) faults.push({ answer: '400 malformed-body', why: 'a __proto__ or constructor.prototype member', soft: true });
  for (const pointer of violations(schema, value)) faults.push({ answer: '400 validation-failed', why: `body ${pointer || '/'} breaks the contract` });
  return faults;
}

const NON_UTF8_CHARSETS = [
  'iso-8859-1',
  'ISO-8859-1',
  'latin1',
  'windows-1252',
  'utf-16',
  'UTF-16LE',
  'utf-16be',
  'utf-32',
  'utf-7',
  'shift_jis',
  'euc-jp',
  'koi8-r',
  'gb2312',
  'big5',
  'cesu-8',
  'ebcdic-cp-us',
  'binary',
];
const UTF8_SPELLINGS = ['utf-8', 'UTF-8', 'Utf-8', 'uTf-8'];

function contentTypeFaults(value: string | undefined): Fault[] {
  if (value === undefined) return [{ answer: '415 unsupported-media-type', why: 'a body without Content-Type' }];
  const [mediaType = '', ...parameters] = value.split(';');
  if (mediaType.trim().toLowerCase() !== 'application/json')
    return [{ answer: '415 unsupported-media-type', why: `${JSON.stringify(value)} is not application/json` }];
  const faults: Fault[] = [];
  for (const parameter of parameters) {
    const eq = parameter.indexOf('=');
    const name = parameter.slice(0, eq < 0 ? undefined : eq).trim();
    const raw = eq < 0 ? '' : parameter.slice(eq + 1).trim();
    if (name.toLowerCase() !== 'charset') {
      if (name === '' || eq < 0) faults.push({ answer: '415 unsupported-media-type', why: `an odd parameter list in ${JSON.stringify(value)}`, soft: true });
      continue;
    }
    if (UTF8_SPELLINGS.some((spelling) => spelling.toLowerCase() === raw.toLowerCase())) continue;
    const strict = NON_UTF8_CHARSETS.some((charset) => charset.toLowerCase() === raw.toLowerCase());
    faults.push({ answer: '415 unsupported-media-type', why: `charset ${raw || '(empty)'} is not utf-8`, ...(strict ? {} : { soft: true }) });
  }
  return faults;
}

/** A key as an RFC 8941 sf-string ("abc", with \\ and \" escapes): the same key as abc. */
const quote = (key: string) => `"${key.replace(/[\\"]/g, (char) => `\\${char}`)}"`;

/** The README's Idempotency-Key rules: 1 to 255 printable ASCII characters, optionally an sf-string, on one header line. */
function keyFaults(lines: string[]): { faults: Fault[]; key?: string } {
  if (lines.length === 0) return { faults: [{ answer: '400 idempotency-key-missing', why: 'no Idempotency-Key' }] };
  const invalid = (why: string) => ({ faults: [{ answer: '400 idempotency-key-invalid', why }] });
  if (lines.length > 1) return invalid('Idempotency-Key on two header lines');
  const value = lines[0]!.replace(/^[\t ]+|[\t ]+$/g, '');
  let key = value;
  if (value.startsWith('"')) {
    const quoted = /^"((?:[^"\\]|\\["\\])*)"$/.exec(value);
    if (!quoted) return invalid('a broken quoted string');
    key = quoted[1]!.replace(/\\(["\\])/g, '$1');
  }
  if (key.length === 0) return invalid('an empty key');
  if (key.length > 255) return invalid(`a key of ${key.length} characters`);
  if (!/^[\x20-\x7e]+$/.test(key)) return invalid('a key that is not printable ASCII');
  return { faults: [], key };
}

type Auth = 'x-api-key' | 'bearer' | 'bearer-lowercase' | 'none' | 'unknown-key' | 'empty-key' | 'basic';
const VALID_AUTH = fc.constantFrom<Auth>('x-api-key', 'bearer', 'bearer-lowercase');
const ANY_AUTH = fc.oneof({ weight: 6, arbitrary: VALID_AUTH }, { weight: 1, arbitrary: fc.constantFrom<Auth>('none', 'unknown-key', 'empty-key', 'basic') });

function authHeaders(auth: Auth, principal: string): Record<string, string> {
  switch (auth) {
    case 'x-api-key':
      return { 'x-api-key': principal };
    case 'bearer':
      return { authorization: `Bearer ${principal}` };
    case 'bearer-lowercase':
      return { authorization: `bearer ${principal}` };
    case 'none':
      return {};
    case 'unknown-key':
      return { 'x-api-key': 'not-a-known-key' };
    case 'empty-key':
      return { 'x-api-key': '' };
    case 'basic':
      return { authorization: `Basic ${Buffer.from(`${principal}:pw`).toString('base64')}` };
  }
}

const authFaults = (auth: Auth): Fault[] =>
  ['x-api-key', 'bearer', 'bearer-lowercase'].includes(auth) ? [] : [{ answer: '401 unauthorized', why: `credential: ${auth}` }];

// ---------------------------------------------------------------------------------------------
// Requests, answers and their judgement.

interface HttpRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  body?: Buffer;
}

function render(request: HttpRequest): string {
  const headers = Object.entries(request.headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((line) => `  ${name}: ${showBytes(line, 300)}`),
  );
  const body = request.body === undefined ? [] : [`  (body, ${request.body.length} bytes) ${showBytes(request.body)}`];
  return [`${request.method} ${showBytes(request.url, 300)}`, ...headers, ...body].join('\n');
}

function renderAnswer(response: LightMyRequestResponse): string {
  return `${response.statusCode} ${response.headers['content-type'] ?? '(no Content-Type)'} ${showBytes(response.body, 400)}`;
}

async function answer(app: AsyncFirstApp, request: HttpRequest): Promise<LightMyRequestResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms to\n${render(request)}`)), ANSWER_TIMEOUT_MS);
  });
  try {
    return await Promise.race([
      app.server.inject({
        method: request.method as 'GET',
        url: request.url,
        headers: request.headers,
        ...(request.body === undefined ? {} : { payload: request.body }),
      }),
      hang,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

type Outcome =
  | { kind: 'accepted'; jobId: string; replayed: boolean }
  | { kind: 'problem'; answer: string; body: Record<string, unknown> }
  | { kind: 'broken'; why: string };

/** What an answer to a submission is: a valid 202, a valid 4xx problem, or neither (and why). */
function outcomeOf(response: LightMyRequestResponse, operation: string): Outcome {
  const { statusCode: status } = response;
  const contentType = response.headers['content-type'] as string | undefined;
  if (status === 202) {
    let body: Record<string, unknown>;
    try {
      body = response.json();
    } catch {
      return { kind: 'broken', why: 'a 202 whose body is not JSON' };
    }
    const jobId = body.job_id;
    if (typeof jobId !== 'string' || !JOB_ID_PATTERN.test(jobId)) return { kind: 'broken', why: `a 202 whose job_id ${JSON.stringify(jobId)} is not a job id` };
    const location = `/jobs/${jobId}`;
    if (body.status !== 'accepted' || body.location !== location || body.operation !== operation)
      return { kind: 'broken', why: 'a 202 body that is not JobAccepted' };
    if (!/^application\/json/.test(contentType ?? '')) return { kind: 'broken', why: `a 202 with Content-Type ${contentType}` };
    if (response.headers.location !== location || response.headers['x-job-id'] !== jobId)
      return { kind: 'broken', why: 'a 202 without Location and X-Job-ID naming the job' };
    const replayed = response.headers['idempotent-replayed'];
    if (replayed !== undefined && replayed !== 'true') return { kind: 'broken', why: `Idempotent-Replayed: ${replayed}` };
    return { kind: 'accepted', jobId, replayed: replayed === 'true' };
  }
  if (status >= 500) return { kind: 'broken', why: `a ${status}` };
  if (/^application\/json/.test(contentType ?? '') && /"error"/.test(response.body))
    return { kind: 'broken', why: `Fastify's default error body (application/json {"error": …}), not problem details` };
  const fault = problemFault(status, contentType, response.body);
  if (fault) return { kind: 'broken', why: fault };
  const body = response.json() as Record<string, unknown>;
  const slug = String(body.type).split(':').pop();
  if (slug === 'validation-failed' && !isViolationList(body.errors))
    return { kind: 'broken', why: 'a validation-failed without an errors list of {in, pointer, message}' };
  return { kind: 'problem', answer: `${status} ${slug}`, body };
}

function isViolationList(errors: unknown): boolean {
  return (
    Array.isArray(errors) &&
    errors.length > 0 &&
    errors.every(
      (error) =>
        ['body', 'query', 'path', 'header'].includes((error as { in?: unknown }).in as string) &&
        typeof (error as { pointer?: unknown }).pointer === 'string' &&
        typeof (error as { message?: unknown }).message === 'string',
    )
  );
}

function expectationText(faults: Fault[]): string {
  const hard = faults.filter((fault) => !fault.soft);
  const lines = faults.map((fault) => `  ${fault.answer}${fault.soft ? ' (allowed)' : ''}: ${fault.why}`);
  return hard.length === 0
    ? ['a 202 (the request has no fault)', ...(lines.length ? ['  or, for what may count as one:', ...lines] : [])].join('\n')
    : ['one of', ...lines].join('\n');
}

/** One fuzz target: a running app (its store shows what was stored) and the operation fuzzed. */
interface Target {
  app: AsyncFirstApp;
  operation: string;
}

let principalNumber = 0;
/** A principal no earlier run used: its Idempotency-Keys are all fresh. */
const nextPrincipal = () => `fuzz-${++principalNumber}`;

/** Collects what went wrong in one run, with the requests and answers, and fails the run with all of it. */
class Findings {
  private readonly lines: string[] = [];
  add(request: HttpRequest, expected: string, response: LightMyRequestResponse | undefined, why: string): void {
    this.lines.push(`${render(request)}\nexpected: ${expected}\ngot: ${response ? renderAnswer(response) : '(no answer)'}\nwhy it fails: ${why}`);
  }
  note(why: string): void {
    this.lines.push(why);
  }
  get empty(): boolean {
    return this.lines.length === 0;
  }
  throwIfAny(): void {
    if (this.lines.length) throw new Error(`\n${this.lines.join('\n\n')}\n`);
  }
}

/**
 * Sends one submission and judges its answer against the model's faults; returns the accepted job
 * id. `replayOf` is the job a replay must name; `reused` says the key was used for another request.
 */
async function submit(
  target: Target,
  request: HttpRequest,
  faults: Fault[],
  findings: Findings,
  expectation: { replayOf?: string; reused?: boolean } = {},
): Promise<string | undefined> {
  const allFaults = expectation.reused ? [...faults, { answer: '422 idempotency-key-reused', why: 'the key was used for a different request' }] : faults;
  const expected = expectation.replayOf && faults.every((fault) => fault.soft) ? `a 202 replaying job ${expectation.replayOf}` : expectationText(allFaults);
  const before = await countStored(target.app.store);
  let response: LightMyRequestResponse;
  try {
    response = await answer(target.app, request);
  } catch (error) {
    findings.add(request, expected, undefined, (error as Error).message.split('\n')[0]!);
    return undefined;
  }
  const after = await countStored(target.app.store);
  const outcome = outcomeOf(response, target.operation);
  const hard = allFaults.filter((fault) => !fault.soft);
  const fail = (why: string) => findings.add(request, expected, response, why);
  if (outcome.kind === 'broken') {
    fail(outcome.why);
    return undefined;
  }
  if (outcome.kind === 'problem') {
    if (!allFaults.some((fault) => fault.answer === outcome.answer)) fail(`${outcome.answer} names none of the request's faults`);
    if (after.jobs !== before.jobs || after.keys !== before.keys)
      fail(`a refused request changed the stored rows: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
    return undefined;
  }
  const stored = await findJob(target.app.store, outcome.jobId);
  if (stored?.operation !== target.operation) fail(`job ${outcome.jobId} is not stored as a ${target.operation} job`);
  const added = outcome.replayed ? 0 : 1;
  if (after.jobs !== before.jobs + added || after.keys !== before.keys + added) {
    fail(`${outcome.replayed ? 'a replay' : 'a new job'} changed the stored rows ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
  }
  if (hard.length > 0) fail(outcome.replayed ? `answered as a replay of job ${outcome.jobId} despite its faults` : 'accepted despite its faults');
  else if (expectation.replayOf !== undefined) {
    if (!outcome.replayed || outcome.jobId !== expectation.replayOf) fail(`expected a replay of job ${expectation.replayOf}`);
  } else if (outcome.replayed) fail('a replay, but this key was never used by this principal');
  return outcome.jobId;
}

const prototypeMembers = Object.getOwnPropertyNames(Object.prototype).sort().join();

/** After each run: the server answers /healthz and nothing has polluted Object.prototype. */
async function expectServerUp(target: Target, findings: Findings): Promise<void> {
  const health = await answer(target.app, { method: 'GET', url: '/healthz', headers: {} }).catch(() => undefined);
  if (health?.statusCode !== 200 || health.body !== '{"status":"ok"}')
    findings.note(`/healthz answered ${health ? renderAnswer(health) : 'nothing'} after the run`);
  if (Object.getOwnPropertyNames(Object.prototype).sort().join() !== prototypeMembers || ({} as Record<string, unknown>).polluted !== undefined) {
    findings.note('Object.prototype was changed by the run');
  }
}

// ---------------------------------------------------------------------------------------------
// Generators of submissions.

interface Submission {
  auth: Auth;
  contentType: string | undefined;
  keyLines: string[];
  callbackLines: string[];
  /** The model's verdict on the Callback-URL lines. */
  callback: 'none' | 'public' | 'refused' | 'either';
  prefer: string | undefined;
  query: string;
  body: Buffer;
  /** How the body was made, for the report. */
  note: string;
  /** Where a mutated body breaks the contract. */
  pointer?: string;
}

function submissionRequest(submission: Submission, principal: string, path = '/reports'): HttpRequest {
  const headers: Record<string, string | string[]> = { ...authHeaders(submission.auth, principal) };
  if (submission.contentType !== undefined) headers['content-type'] = submission.contentType;
  if (submission.keyLines.length) headers['idempotency-key'] = submission.keyLines.length === 1 ? submission.keyLines[0]! : submission.keyLines;
  if (submission.callbackLines.length)
    headers['callback-url'] = submission.callbackLines.length === 1 ? submission.callbackLines[0]! : submission.callbackLines;
  if (submission.prefer !== undefined) headers.prefer = submission.prefer;
  return { method: 'POST', url: `${path}${submission.query}`, headers, body: submission.body };
}

function submissionFaults(submission: Submission, schema: Schema): Fault[] {
  const callback: Fault[] =
    submission.callback === 'refused'
      ? [{ answer: '400 callback-url-refused', why: 'the Callback-URL is not a public http(s) URL' }]
      : submission.callback === 'either'
        ? [{ answer: '400 callback-url-refused', why: 'the Callback-URL may be refused', soft: true }]
        : [];
  return [
    ...authFaults(submission.auth),
    ...contentTypeFaults(submission.contentType),
    ...bodyFaults(submission.body, schema),
    ...keyFaults(submission.keyLines).faults,
    ...callback,
  ];
}

const showSubmission = (submission: Submission) => `${submission.note}\n${render(submissionRequest(submission, 'fuzz-<run>'))}`;

const PRINTABLE = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), minLength: 1, maxLength: 40 });
/** Keys the README accepts: bare, as an sf-string (with escapes), with optional whitespace around. */
const VALID_KEY_LINES = fc.oneof(
  { weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9][\x20-\x7e]{0,38}[A-Za-z0-9]$/).map((key) => [key]) },
  { weight: 1, arbitrary: PRINTABLE.map((key) => [quote(key)]) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(' ', '\t', '  '), fc.stringMatching(/^[!#-~][\x20-\x7e]{0,20}[!-~]$/), fc.constantFrom('', ' ', '\t'))
      .map((parts) => [parts.join('')]),
  },
  { weight: 1, arbitrary: fc.constantFrom<string[]>(['k'.repeat(255)], ['a'], ['~'], ['a b'], ['a"b'], ['a, b'], ['"a, b"']) },
);
const ODD_CHARS = ['\u0000', '\u0001', '\t', '\n', '\r\n', '\u001b', '\u007f', '\u0080', '\u00a0', 'é', 'ж', '🔑', '\ufeff', '\u2028', '\ud800'];
const KEY_LINES = fc.oneof(
  { weight: 3, arbitrary: VALID_KEY_LINES },
  { weight: 1, arbitrary: fc.constant<string[]>([]) },
  { weight: 1, arbitrary: fc.constantFrom<string[]>([''], [' '], ['\t'], ['""'], ['"'], ['"abc'], ['"a"b"'], ['"a\\b"'], ['"abc\\"'], ['"abc"def'], ['" "x']) },
  { weight: 1, arbitrary: fc.integer({ min: 256, max: 600 }).map((length) => ['k'.repeat(length)]) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(PRINTABLE, fc.constantFrom(...ODD_CHARS), fc.nat())
      .map(([key, odd, at]) => [`${key.slice(0, at % (key.length + 1))}${odd}${key.slice(at % (key.length + 1))}`]),
  },
  { weight: 1, arbitrary: fc.tuple(PRINTABLE, fc.oneof(PRINTABLE, fc.constant(''))).map(([first, second]) => [first, second]) },
);

// Callback-URLs: hosts by class, and URLs built from scheme, credentials, host, port and path.
const PRIVATE_IPV4: Array<[number, number, number]> = [
  // [first address, size of the range, …] as numbers: loopback, private, link-local, CGNAT, this-network, multicast, reserved, benchmarking.
  [0x7f000000, 0x1000000, 0],
  [0x0a000000, 0x1000000, 0],
  [0xac100000, 0x100000, 0],
  [0xc0a80000, 0x10000, 0],
  [0xa9fe0000, 0x10000, 0],
  [0x64400000, 0x400000, 0],
  [0x00000000, 0x1000000, 0],
  [0xe0000000, 0x10000000, 0],
  [0xf0000000, 0x10000000, 0],
  [0xc6120000, 0x20000, 0],
  [0xc0000200, 0x100, 0],
];
const PUBLIC_FIRST_OCTETS = [8, 9, 11, 23, 31, 45, 52, 64, 77, 91, 104, 130, 151, 185, 212];

const dotted = (address: number) => [24, 16, 8, 0].map((shift) => (address >>> shift) & 0xff).join('.');
/** An IPv4 address in one of the spellings the WHATWG URL parser reads: dotted, decimal, hex, octal, short. */
function ipv4Spelling(address: number, spelling: number): string {
  const octets = [24, 16, 8, 0].map((shift) => (address >>> shift) & 0xff);
  switch (spelling % 7) {
    case 0:
      return dotted(address);
    case 1:
      return String(address >>> 0);
    case 2:
      return `0x${(address >>> 0).toString(16)}`;
    case 3:
      return octets.map((octet) => `0${octet.toString(8)}`).join('.');
    case 4:
      return octets.map((octet) => `0x${octet.toString(16)}`).join('.');
    case 5:
      return `0X${(address >>> 0).toString(16).toUpperCase()}`;
    default:
      return `${octets[0]}.${(address & 0xffffff) >>> 0}`;
  }
}
const hex16 = (address: number) => `${((address >>> 16) & 0xffff).toString(16)}:${(address & 0xffff).toString(16)}`;
/** IPv6 literals that embed an IPv4 address: mapped, compatible, translated, NAT64, 6to4. */
function embeddingIpv6(address: number, form: number): string {
  switch (form % 7) {
    case 0:
      return `[::ffff:${dotted(address)}]`;
    case 1:
      return `[::ffff:${hex16(address)}]`;
    case 2:
      return `[::${dotted(address)}]`;
    case 3:
      return `[0:0:0:0:0:ffff:${dotted(address)}]`;
    case 4:
      return `[::ffff:0:${dotted(address)}]`;
    case 5:
      return `[64:ff9b::${dotted(address)}]`;
    default:
      return `[2002:${hex16(address)}::1]`;
  }
}

type HostClass = 'public' | 'refused' | 'either';
const REFUSED_NAMES = [
  'localhost',
  'LOCALHOST',
  'localhost.',
  'api.localhost',
  '[::1]',
  '[::]',
  '[0:0:0:0:0:0:0:1]',
  '[fe80::1]',
  '[fc00::1]',
  '[fd12:3456::1]',
  '[ff02::1]',
  '[::127.0.0.2]',
  '[::ffff:127.0.0.1]',
  '[2001:db8::1]',
  '[100::1]',
];
const PUBLIC_NAMES = [
  'example.com',
  'hooks.example.org',
  'EXAMPLE.NET',
  'example.com.',
  'xn--nxasmq6b.example',
  '127.0.0.1.nip.io',
  '[2606:4700:4700::1111]',
  '[2001:4860:4860::8888]',
];
const HOSTS: fc.Arbitrary<{ host: string; verdict: HostClass }> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...REFUSED_NAMES).map((host) => ({ host, verdict: 'refused' as const })) },
  { weight: 2, arbitrary: fc.constantFrom(...PUBLIC_NAMES).map((host) => ({ host, verdict: 'public' as const })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(...PRIVATE_IPV4), fc.nat(), fc.nat())
      .map(([[start, size], offset, spelling]) => ({ host: ipv4Spelling((start + (offset % size)) >>> 0, spelling), verdict: 'refused' as const })),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom(...PRIVATE_IPV4), fc.nat(), fc.nat())
      .map(([[start, size], offset, form]) => ({ host: embeddingIpv6((start + (offset % size)) >>> 0, form), verdict: 'refused' as const })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(...PUBLIC_FIRST_OCTETS), fc.integer({ min: 0, max: 0xffffff }), fc.nat())
      .map(([first, rest, spelling]) => ({ host: ipv4Spelling(((first << 24) | rest) >>> 0, spelling), verdict: 'public' as const })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(...PUBLIC_FIRST_OCTETS), fc.integer({ min: 0, max: 0xffffff }), fc.nat())
      // A public address embedded in IPv6 reaches that public address; refusing it is allowed too.
      .map(([first, rest, form]) => ({ host: embeddingIpv6(((first << 24) | rest) >>> 0, form), verdict: 'either' as const })),
  },
);
const CALLBACK_URL: fc.Arbitrary<{ url: string; verdict: HostClass }> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        scheme: fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom('http', 'https', 'HTTPS', 'HtTp') },
          { weight: 1, arbitrary: fc.constantFrom('ftp', 'file', 'gopher', 'ws', 'wss', 'ldap', 'dict', 'data', 'javascript', 'mailto') },
        ),
        credentials: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('user@', 'user:secret@', '%40:%40@', 'a:@') }),
        host: HOSTS,
        port: fc.constantFrom('', '', ':80', ':443', ':8080', ':65535', ':'),
        path: fc.constantFrom('/', '/hooks/reports', '/a/b?c=d&e=f', '/#fragment', '/%2e%2e/x', '/?url=http://127.0.0.1/', ''),
      })
      .map(({ scheme, credentials, host, port, path }) => {
        const verdict: HostClass = !['http', 'https'].includes(scheme.toLowerCase()) || credentials !== '' ? 'refused' : host.verdict;
        return { url: `${scheme}://${credentials}${host.host}${port}${path}`, verdict };
      }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<{ url: string; verdict: HostClass }>(
      { url: '', verdict: 'refused' },
      { url: '   ', verdict: 'refused' },
      { url: 'example.com/hooks', verdict: 'refused' },
      { url: '//example.com/hooks', verdict: 'refused' },
      { url: '/hooks', verdict: 'refused' },
      { url: 'http://', verdict: 'refused' },
      { url: 'http://[::1', verdict: 'refused' },
      { url: 'http://exa mple.com/', verdict: 'refused' },
      { url: 'http://1.2.3.4.5/', verdict: 'refused' },
      { url: 'http://256.1.1.1/', verdict: 'refused' },
      { url: 'http://example.com:65536/', verdict: 'refused' },
      { url: 'http://example.com:-1/', verdict: 'refused' },
      { url: 'javascript:alert(1)', verdict: 'refused' },
      { url: 'data:text/plain,hi', verdict: 'refused' },
      { url: 'file:///etc/passwd', verdict: 'refused' },
      { url: ' http://example.com/hooks ', verdict: 'public' },
      { url: '\thttps://example.com/hooks', verdict: 'public' },
      { url: 'http:/example.com/hooks', verdict: 'either' },
      { url: 'http:\\\\example.com\\hooks', verdict: 'either' },
      { url: 'http://example.com:0/', verdict: 'either' },
      { url: 'http://:@example.com/', verdict: 'either' },
      { url: 'http://example.com/, http://127.0.0.1/', verdict: 'either' },
      { url: `https://example.com/${'a'.repeat(5000)}`, verdict: 'either' },
    ),
  },
);
const CALLBACK_LINE = CALLBACK_URL.map(({ url, verdict }) => ({ lines: [url], verdict }));
/** Two Callback-URL header lines: refused whatever they say (one webhook per job). */
const TWO_CALLBACK_LINES = fc
  .tuple(CALLBACK_URL, CALLBACK_URL)
  .filter(([first, second]) => first.url.trim() !== '' && second.url.trim() !== '')
  .map(([first, second]) => ({ lines: [first.url, second.url], verdict: 'refused' as const }));
const PUBLIC_CALLBACK_LINES = CALLBACK_URL.filter((callback) => callback.verdict === 'public').map(({ url }) => ({ lines: [url], verdict: 'public' as const }));

const PREFER = fc.constantFrom(
  undefined,
  undefined,
  'respond-async',
  'wait=0',
  'wait=5',
  'wait=5, respond-async',
  'wait=abc',
  'wait=99999999999999999999',
  'handling=lenient',
);
const OK_CONTENT_TYPES = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json;charset=UTF-8',
  'APPLICATION/JSON',
  'Application/Json ; Charset=Utf-8',
);
const POST_QUERY = fc.oneof(
  { weight: 5, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom('?', '?v=1', '?a=1&a=2', '?__proto__=x', '?x=%ff', '?%zz') },
);

/** A valid body (per the contract), written with a random layout and member order. */
const VALID_BODY = fc
  .tuple(validValue(REPORT_REQUEST) as fc.Arbitrary<Record<string, unknown>>, GAPS, fc.boolean())
  .map(([value, gap, reversed]) => ({ value, text: jsonText(new Members(reversed ? Object.entries(value).reverse() : Object.entries(value)), gap) }));

const baseSubmission = {
  auth: VALID_AUTH,
  contentType: OK_CONTENT_TYPES,
  keyLines: VALID_KEY_LINES,
  callback: fc.constant({ lines: [] as string[], verdict: 'none' as const }),
  prefer: PREFER,
  query: fc.constant(''),
};

function submissions(
  parts: Partial<{ [K in keyof typeof baseSubmission]: fc.Arbitrary<unknown> }>,
  body: fc.Arbitrary<{ bytes: Buffer; note: string; pointer?: string }>,
): fc.Arbitrary<Submission> {
  const model = { ...baseSubmission, ...parts } as typeof baseSubmission;
  return fc.record({ ...model, body }).map(({ auth, contentType, keyLines, callback, prefer, query, body }) =>
    shown<Submission>(
      {
        auth,
        contentType,
        keyLines,
        callbackLines: callback.lines,
        callback: callback.verdict,
        prefer,
        query,
        body: body.bytes,
        note: body.note,
        ...(body.pointer === undefined ? {} : { pointer: body.pointer }),
      },
      showSubmission,
    ),
  );
}

const utf8 = (text: string) => Buffer.from(text, 'utf8');
const validBodyBytes = VALID_BODY.map(({ text }) => ({ bytes: utf8(text), note: 'a valid body' }));

/** A fixed submission (valid unless overridden), tried first on every run: the shapes the suite must always cover. */
function example(overrides: Partial<Submission>): Submission {
  const submission: Submission = {
    auth: 'x-api-key',
    contentType: 'application/json',
    keyLines: ['example-1'],
    callbackLines: [],
    callback: 'none',
    prefer: undefined,
    query: '',
    body: utf8('{"title":"Q3","rows":5}'),
    note: 'a fixed example',
    ...overrides,
  };
  return shown(submission, showSubmission);
}
const exampleBody = (text: string | Buffer, note: string) => example({ body: typeof text === 'string' ? utf8(text) : text, note });

function nest(depth: number, shape: string): string {
  if (depth <= 0) return '1';
  if (shape === '[') return `${'['.repeat(depth)}${']'.repeat(depth)}`;
  if (shape === '{') return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  const half = Math.ceil(depth / 2);
  return `${'[{"a":'.repeat(half)}1${'}]'.repeat(half)}`;
}
const NESTING = fc.record({
  depth: fc.oneof(fc.integer({ min: 1, max: BODY_MAX_DEPTH + 4 }), fc.integer({ min: 1, max: 10_000 })),
  shape: fc.constantFrom('[', '{', 'mixed'),
});

const INVALID_UTF8: number[][] = [
  [0x80],
  [0xbf],
  [0xc0, 0xaf],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xc3],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xe9],
];
/** A valid body with an invalid UTF-8 sequence put into its title (or, sometimes, its member name). */
const INVALID_UTF8_BODY = fc
  .tuple(fc.stringMatching(/^[a-z ]{0,12}$/), fc.constantFrom(...INVALID_UTF8), fc.nat(), fc.integer({ min: 1, max: 1_000_000 }), fc.boolean())
  .map(([title, sequence, at, rows, inName]) => {
    const cut = at % (title.length + 1);
    const marked = [utf8(title.slice(0, cut)), Buffer.from(sequence), utf8(title.slice(cut))];
    const bytes = inName
      ? Buffer.concat([utf8(`{"title":${JSON.stringify(title)},"rows":${rows},"`), ...marked, utf8('":1}')])
      : Buffer.concat([utf8('{"title":"'), ...marked, utf8(`","rows":${rows}}`)]);
    const hex = sequence.map((byte) => byte.toString(16)).join(' ');
    return { bytes, note: `the invalid UTF-8 bytes ${hex} in ${inName ? 'a member name' : 'the title'}` };
  });

const NUMBER_SPELLINGS = [
  '1e309',
  '-1e309',
  '-0',
  '0',
  '-0.0',
  '123456789012345678901234567890',
  '1.0',
  '1e0',
  '1E+2',
  '10e-1',
  '0.1e1',
  '1000000',
  '1000000.0',
  '1000001',
  '1000000.0000000001',
  '9007199254740993',
  '1.5',
  '-1',
  '00',
  '01',
  '+1',
  '.5',
  '1.',
  'NaN',
  'Infinity',
  '0x10',
  '1_000',
  '１',
  '"5"',
];

/** Hostile bodies: deep nesting, odd numbers, duplicate and prototype keys, long strings, control characters, BOMs, garbage. */
const HOSTILE_BODY: fc.Arbitrary<{ bytes: Buffer; note: string }> = fc.oneof(
  fc.tuple(NESTING, fc.boolean()).map(([{ depth, shape }, asMember]) => ({
    bytes: utf8(asMember ? `{"title":"t","rows":1,"x":${nest(depth, shape)}}` : nest(depth, shape)),
    note: `nesting ${depth} deep (${shape})${asMember ? ' in a member' : ''}`,
  })),
  fc.constantFrom(...NUMBER_SPELLINGS).map((rows) => ({ bytes: utf8(`{"title":"t","rows":${rows}}`), note: `rows spelled ${rows}` })),
  fc.tuple(VALID_BODY, fc.constantFrom('title', 'rows', 'format'), fc.jsonValue({ maxDepth: 1 }), fc.boolean()).map(([{ value }, name, other, first]) => {
    const entries = Object.entries(value);
    const members = first ? [[name, other] as [string, unknown], ...entries] : [...entries, [name, other] as [string, unknown]];
    return { bytes: utf8(jsonText(new Members(members))), note: `a duplicate ${name} member` };
  }),
  fc
    .tuple(
      VALID_BODY,
      fc.constantFrom(
        '"__proto__":{"polluted":1}',
        '"__proto__":null',
        '"\\u005f_proto__":{"polluted":1}',
        '"constructor":{"prototype":{"polluted":1}}',
        '"constructor":{"a":1}',
        '"prototype":{}',
      ),
    )
    .map(([{ value }, member]) => ({ bytes: utf8(`{${member},${jsonText(value).slice(1)}`), note: 'a prototype-shaped member' })),
  fc
    .tuple(fc.oneof(fc.integer({ min: 195, max: 260 }), fc.integer({ min: 10_000, max: 80_000 })), fc.constantFrom('a', 'é', '😀', '\\u0000', '\\\\'))
    .map(([length, unit]) => ({ bytes: utf8(`{"title":"${unit.repeat(length)}","rows":1}`), note: `a title of ${length} × ${unit}` })),
  fc.tuple(fc.integer({ min: 0, max: 0x1f }), fc.boolean()).map(([code, escaped]) => ({
    bytes: utf8(`{"title":"a${escaped ? `\\u${code.toString(16).padStart(4, '0')}` : String.fromCharCode(code)}b","rows":1}`),
    note: `a title with the control character ${code}${escaped ? ', escaped' : ', raw'}`,
  })),
  fc.tuple(VALID_BODY, fc.constantFrom('\ufeff', '\ufeff\ufeff', ' ', '\u00a0', '\u000b', '\u2028', 'x'), fc.boolean()).map(([{ text }, extra, before]) => ({
    bytes: utf8(before ? `${extra}${text}` : `${text}${extra}`),
    note: `${JSON.stringify(extra)} ${before ? 'before' : 'after'} the body`,
  })),
  fc.jsonValue({ maxDepth: 3 }).map((value) => ({ bytes: utf8(JSON.stringify(value) ?? 'null'), note: 'a random JSON value' })),
  fc
    .string({ unit: fc.constantFrom('{', '}', '[', ']', '"', ':', ',', ' ', 'a', '1', '-', 'e', '.', '\\', 'u', 'n', 'l', 't'), maxLength: 40 })
    .map((text) => ({
      bytes: utf8(text),
      note: 'JSON-like text',
    })),
  fc.uint8Array({ maxLength: 40 }).map((bytes) => ({ bytes: Buffer.from(bytes), note: 'random bytes' })),
);

// ---------------------------------------------------------------------------------------------

describe('fuzzing POST /reports (createReport) through inject', () => {
  let target: Target;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const demo = await startFuzzDemo({ bodyLimit: BODY_LIMIT, webhookSecret: SECRET, longPollMaxSeconds: 0 });
    target = { app: demo.app, operation: 'createReport' };
    close = () => demo.close();
  });
  afterAll(() => close());

  /** Sends a submission as a new principal, judges it by the model, and replays it if it was accepted. */
  async function judged(submission: Submission): Promise<void> {
    const findings = new Findings();
    const request = submissionRequest(submission, nextPrincipal());
    const faults = submissionFaults(submission, REPORT_REQUEST);
    const jobId = await submit(target, request, faults, findings);
    if (jobId !== undefined && findings.empty) await submit(target, request, faults, findings, { replayOf: jobId });
    await expectServerUp(target, findings);
    findings.throwIfAny();
  }

  it('property: a submission valid per the contract is accepted, stored, and replayed for the same key in any layout', async () => {
    await fuzz(
      fc.tuple(
        submissions({ callback: fc.oneof(fc.constant({ lines: [] as string[], verdict: 'none' as const }), PUBLIC_CALLBACK_LINES) }, validBodyBytes),
        VALID_AUTH,
      ),
      async ([submission, auth]) => {
        const findings = new Findings();
        const principal = nextPrincipal();
        const faults = submissionFaults(submission, REPORT_REQUEST);
        expect(faults, 'the generator of valid submissions made a faulty one').toEqual([]);
        const jobId = await submit(target, submissionRequest(submission, principal), faults, findings);
        if (jobId !== undefined) {
          // The same request in another layout and member order, with another credential scheme and key spelling: a replay.
          const value = JSON.parse(submission.body.toString('utf8')) as Record<string, unknown>;
          const key = keyFaults(submission.keyLines).key!;
          const relaid = {
            ...submission,
            auth,
            keyLines: [quote(key)],
            body: utf8(jsonText(new Members(Object.entries(value).reverse()), '\n ')),
          };
          await submit(target, submissionRequest(relaid, principal), faults, findings, { replayOf: jobId });
          const response = await answer(target.app, { method: 'GET', url: `/jobs/${jobId}`, headers: authHeaders(auth, principal) });
          if (response.statusCode !== 200 || response.json<{ id: string }>().id !== jobId)
            findings.note(`GET /jobs/${jobId} answered ${renderAnswer(response)}`);
        }
        await expectServerUp(target, findings);
        findings.throwIfAny();
      },
    );
  }, 15_000);

  it('property: a body mutated away from the contract is 400 validation-failed naming the mutated member, and stores nothing', async () => {
    const mutation = fc.tuple(mutatedValue(REPORT_REQUEST), GAPS).map(([mutated, gap]) => ({ ...mutated, text: jsonText(mutated.value, gap) }));
    await fuzz(
      submissions(
        {},
        mutation.map((mutated) => ({ bytes: utf8(mutated.text), note: `a body ${mutated.what}`, pointer: mutated.pointer })),
      ),
      async (submission) => {
        const findings = new Findings();
        const request = submissionRequest(submission, nextPrincipal());
        const faults = submissionFaults(submission, REPORT_REQUEST);
        const pointer = submission.pointer!;
        const before = await countStored(target.app.store);
        const response = await answer(target.app, request);
        const outcome = outcomeOf(response, target.operation);
        const expected = `400 validation-failed with an error {in: "body", pointer: "${pointer}"}`;
        if (!faults.some((fault) => fault.answer === '400 validation-failed' && !fault.soft))
          findings.note(`the model does not see the mutation: ${expectationText(faults)}`);
        if (outcome.kind !== 'problem' || outcome.answer !== '400 validation-failed') {
          findings.add(request, expected, response, outcome.kind === 'broken' ? outcome.why : 'not a 400 validation-failed');
        } else if (!(outcome.body.errors as Array<{ in: string; pointer: string }>).some((error) => error.in === 'body' && error.pointer === pointer)) {
          findings.add(request, expected, response, `errors do not name ${pointer || '/'}`);
        }
        if (JSON.stringify(await countStored(target.app.store)) !== JSON.stringify(before)) findings.note('a refused request changed the stored rows');
        await expectServerUp(target, findings);
        findings.throwIfAny();
      },
    );
  }, 15_000);

  it('property: hostile bodies (deep nesting, odd numbers, duplicate and prototype keys, long strings, control characters, garbage) get a 202 only when the contract accepts them, else a 4xx problem', async () => {
    await fuzz(submissions({}, HOSTILE_BODY), judged, {
      examples: [
        exampleBody(`{"title":"t","rows":1,"x":${nest(5000, '[')}}`, 'nesting 5000 deep in a member'),
        exampleBody(nest(5000, '{'), 'nesting 5000 deep'),
        exampleBody('{"title":"t","rows":1e309}', 'rows spelled 1e309'),
        exampleBody('{"title":"t","rows":-0}', 'rows spelled -0'),
        exampleBody('{"title":"t","rows":123456789012345678901234567890}', 'a huge rows'),
        exampleBody('{"title":"t","rows":"x","rows":1}', 'a duplicate rows member'),
        exampleBody('{"__proto__":{"polluted":1},"title":"t","rows":1}', 'a __proto__ member'),
        exampleBody('{"constructor":{"prototype":{"polluted":1}},"title":"t","rows":1}', 'a constructor.prototype member'),
      ],
    });
  }, 15_000);

  it('property: a body that is not valid UTF-8 is 400 malformed-body', async () => {
    await fuzz(submissions({}, INVALID_UTF8_BODY), judged, {
      examples: [
        exampleBody(Buffer.concat([utf8('{"title":"'), Buffer.from([0xff]), utf8('","rows":1}')]), 'the invalid UTF-8 byte ff in the title'),
        exampleBody(Buffer.concat([utf8('{"title":"caf'), Buffer.from([0xe9]), utf8('","rows":1}')]), 'a Latin-1 é in the title'),
      ],
    });
  }, 15_000);

  it('property: a charset other than utf-8 is 415 unsupported-media-type; utf-8, in any case, is accepted', async () => {
    const charset = fc.oneof(
      fc.constantFrom(...NON_UTF8_CHARSETS),
      fc.constantFrom(...UTF8_SPELLINGS),
      fc.constantFrom('', '"utf-8"', 'utf8', 'us-ascii', 'utf-8; charset=latin1'),
    );
    const contentType = fc
      .tuple(charset, fc.constantFrom('application/json; charset=', 'application/json;charset=', 'Application/JSON ;  CHARSET='))
      .map(([name, prefix]) => `${prefix}${name}`);
    await fuzz(submissions({ contentType }, validBodyBytes), judged, {
      examples: [example({ contentType: 'application/json; charset=iso-8859-1' }), example({ contentType: 'application/json; charset=utf-16' })],
    });
  }, 15_000);

  it('property: a Content-Type other than application/json is 415 unsupported-media-type', async () => {
    const token = fc.stringMatching(/^[a-z0-9!#$&^_.+-]{1,12}$/);
    const contentType = fc.oneof(
      fc.constantFrom(
        undefined,
        '',
        ' ',
        'text/plain',
        'text/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/merge-patch+json',
        'application/problem+json',
        'application/jsonx',
        'application/octet-stream',
        '*/*',
        'application/*',
        'json',
        'application/json, text/plain',
        'application',
        'application/',
        '/json',
        'application/json\u0000',
        'application/json; foo=bar',
        'application/json;',
        'application/json;;;',
        'Application/JSON',
        ' application/json ',
      ),
      fc.tuple(token, token).map(([type, subtype]) => `${type}/${subtype}`),
    );
    await fuzz(submissions({ contentType }, validBodyBytes), judged);
  }, 15_000);

  it('property: Idempotency-Keys follow the README (1 to 255 printable ASCII, sf-string form, one header line)', async () => {
    await fuzz(submissions({ keyLines: KEY_LINES, auth: ANY_AUTH }, validBodyBytes), judged);
  }, 15_000);

  it('property: a Callback-URL is accepted only when it is an absolute http(s) URL of a public host without credentials', async () => {
    const refused = [
      'http://[::127.0.0.2]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[::10.0.0.1]/',
      'http://2130706433/',
      'http://0x7f000001/',
      'http://user:pw@example.com/',
      'ftp://example.com/',
      'http://localhost./',
    ];
    await fuzz(submissions({ callback: CALLBACK_LINE, query: POST_QUERY }, validBodyBytes), judged, {
      runs: RUNS * 2,
      examples: refused.map((url) => example({ callbackLines: [url], callback: 'refused' })),
    });
  }, 15_000);

  it('property: a Callback-URL sent on two header lines is 400 callback-url-refused, whatever the lines say', async () => {
    await fuzz(submissions({ callback: TWO_CALLBACK_LINES }, validBodyBytes), judged, {
      examples: [example({ callbackLines: ['http://example.com/hooks', 'http://127.0.0.1/'], callback: 'refused' })],
    });
  }, 15_000);

  // -------------------------------------------------------------------------------------------
  // Idempotency under fuzz.

  /** How a follow-up submission with the same key relates to the first. */
  type Variant =
    | { kind: 'same'; gap: string; reversed: boolean; keyForm: 'bare' | 'quoted' | 'padded'; auth: Auth; contentType: string; padCallback: boolean }
    | { kind: 'other-body'; value: Record<string, unknown> }
    | { kind: 'other-callback'; url: string }
    | { kind: 'other-query'; query: string }
    | { kind: 'other-principal' }
    | { kind: 'invalid-bytes'; sequence: number[]; at: number };

  const SAME: fc.Arbitrary<Variant> = fc.record({
    kind: fc.constant('same' as const),
    gap: GAPS,
    reversed: fc.boolean(),
    keyForm: fc.constantFrom('bare' as const, 'quoted' as const, 'padded' as const),
    auth: VALID_AUTH,
    contentType: OK_CONTENT_TYPES,
    padCallback: fc.boolean(),
  });
  const DIFFERENT: fc.Arbitrary<Variant> = fc.oneof(
    (validValue(REPORT_REQUEST) as fc.Arbitrary<Record<string, unknown>>).map((value) => ({ kind: 'other-body' as const, value })),
    PUBLIC_CALLBACK_LINES.map(({ lines }) => ({ kind: 'other-callback' as const, url: lines[0]! })),
    fc.constantFrom('?v=2', '?a=1&a=2', '?__proto__=1', '?rows=2').map((query) => ({ kind: 'other-query' as const, query })),
    fc.constant({ kind: 'other-principal' as const }),
    fc.tuple(fc.constantFrom(...INVALID_UTF8), fc.nat()).map(([sequence, at]) => ({ kind: 'invalid-bytes' as const, sequence, at })),
  );

  const sameValue = (a: unknown, b: unknown) => jsonText(a) === jsonText(b);

  it('property: the same key with the same request (any layout, member order, key form or credential scheme) replays the job; with any other request it is 422 and the record stays', async () => {
    const scenario = fc.record({
      value: validValue(REPORT_REQUEST) as fc.Arbitrary<Record<string, unknown>>,
      key: fc.stringMatching(/^[A-Za-z0-9][\x20-\x7e]{0,30}[A-Za-z0-9]$/),
      callback: fc.option(
        PUBLIC_CALLBACK_LINES.map(({ lines }) => lines[0]!),
        { nil: undefined },
      ),
      variants: fc.array(fc.oneof(SAME, DIFFERENT), { minLength: 1, maxLength: 5 }),
      last: SAME,
    });
    await fuzz(
      scenario.map((value) => shown(value, (it) => JSON.stringify(it, (_name, member) => (member instanceof Buffer ? showBytes(member) : member), 1))),
      async ({ value, key, callback, variants, last }) => {
        const findings = new Findings();
        const principal = nextPrincipal();
        const first: Submission = {
          auth: 'x-api-key',
          contentType: 'application/json',
          keyLines: [key],
          callbackLines: callback === undefined ? [] : [callback],
          callback: callback === undefined ? 'none' : 'public',
          prefer: undefined,
          query: '',
          body: utf8(jsonText(value)),
          note: 'the first submission',
        };
        const jobId = await submit(target, submissionRequest(first, principal), [], findings);
        if (jobId === undefined) findings.throwIfAny();
        for (const variant of [...variants, last]) {
          let submission: Submission = { ...first, note: variant.kind };
          let requestPrincipal = principal;
          const expectation: { replayOf?: string; reused?: boolean } = {};
          switch (variant.kind) {
            case 'same': {
              const entries = Object.entries(value);
              const keyLine = variant.keyForm === 'quoted' ? quote(key) : variant.keyForm === 'padded' ? ` \t${key} ` : key;
              submission = {
                ...submission,
                auth: variant.auth,
                contentType: variant.contentType,
                keyLines: [keyLine],
                callbackLines: callback === undefined ? [] : [variant.padCallback ? `  ${callback}\t` : callback],
                body: utf8(jsonText(new Members(variant.reversed ? entries.reverse() : entries), variant.gap)),
              };
              expectation.replayOf = jobId;
              break;
            }
            case 'other-body': {
              const other = sameValue(variant.value, value) ? { ...value, rows: value.rows === 1 ? 2 : 1 } : variant.value;
              submission = { ...submission, body: utf8(jsonText(other)), note: `another body ${jsonText(other)}` };
              expectation.reused = true;
              break;
            }
            case 'other-callback': {
              const url = variant.url.trim() === callback?.trim() ? `${variant.url.trim()}?v=2` : variant.url;
              submission = { ...submission, callbackLines: [url], note: 'another Callback-URL' };
              expectation.reused = true;
              break;
            }
            case 'other-query':
              submission = { ...submission, query: variant.query, note: `the query ${variant.query}` };
              expectation.reused = true;
              break;
            case 'other-principal':
              // Keys are scoped by principal: the same key and body for someone else is their own new job.
              requestPrincipal = nextPrincipal();
              break;
            case 'invalid-bytes': {
              const title = utf8(String(value.title));
              const cut = variant.at % (title.length + 1);
              const marked = Buffer.concat([title.subarray(0, cut), Buffer.from(variant.sequence), title.subarray(cut)]);
              const body = Buffer.concat([utf8('{"title":"'), marked, utf8(`${jsonText({ ...value, title: '' }).slice(11)}`)]);
              submission = { ...submission, body, note: 'the title with invalid UTF-8 bytes in it' };
              expectation.reused = true;
              break;
            }
          }
          const faults = submissionFaults(submission, REPORT_REQUEST);
          const otherJob = await submit(target, submissionRequest(submission, requestPrincipal), faults, findings, expectation);
          if (variant.kind === 'other-principal' && otherJob === jobId)
            findings.note(`another principal's submission with the key was answered with job ${jobId}`);
        }
        await expectServerUp(target, findings);
        findings.throwIfAny();
      },
    );
  }, 15_000);

  it('property: bodies that differ only in invalid bytes are refused, and never replay one another', async () => {
    const pair = fc
      .tuple(fc.stringMatching(/^[a-z]{0,8}$/), fc.nat(), fc.constantFrom(...INVALID_UTF8), fc.constantFrom(...INVALID_UTF8))
      .filter(([, , first, second]) => first.join() !== second.join())
      .map(([title, at, first, second]) => {
        const cut = at % (title.length + 1);
        const body = (sequence: number[]) =>
          Buffer.concat([utf8(`{"title":"${title.slice(0, cut)}`), Buffer.from(sequence), utf8(`${title.slice(cut)}","rows":1}`)]);
        return shown({ first: body(first), second: body(second) }, ({ first, second }) => `${showBytes(first)} then ${showBytes(second)}`);
      });
    await fuzz(
      pair,
      async ({ first, second }) => {
        const findings = new Findings();
        const principal = nextPrincipal();
        const [a, b] = [first, second].map((body) => ({ ...example({ body, keyLines: ['same-key'] }), note: 'invalid bytes' }));
        const firstJob = await submit(target, submissionRequest(a!, principal), submissionFaults(a!, REPORT_REQUEST), findings);
        await submit(target, submissionRequest(b!, principal), submissionFaults(b!, REPORT_REQUEST), findings, firstJob === undefined ? {} : { reused: true });
        await expectServerUp(target, findings);
        findings.throwIfAny();
      },
      {
        examples: [
          shown(
            { first: Buffer.from('{"title":"a\xff","rows":1}', 'latin1'), second: Buffer.from('{"title":"a\xfe","rows":1}', 'latin1') },
            ({ first, second }) => `${showBytes(first)} then ${showBytes(second)}`,
          ),
        ],
      },
    );
  }, 15_000);

  // -------------------------------------------------------------------------------------------
  // The synchronous operation.

  interface EstimateCase {
    auth: Auth;
    query: string;
    kind: 'valid' | 'mutated' | 'hostile';
    rows?: number;
    format?: string;
    pointer?: string;
  }
  const showEstimate = (estimate: EstimateCase) => `${estimate.kind} (${estimate.auth}) GET /reports/estimate${estimate.query}`;
  const queryString = (pairs: Array<[string, string]>) =>
    pairs.length ? `?${pairs.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&')}` : '';

  const VALID_ESTIMATE = fc
    .record({
      rows: validValue(ROWS.schema) as fc.Arbitrary<number>,
      format: fc.option(validValue(FORMAT.schema) as fc.Arbitrary<string>, { nil: undefined }),
      reversed: fc.boolean(),
    })
    .map(({ rows, format, reversed }) => {
      const pairs: Array<[string, string]> = [['rows', String(rows)], ...(format === undefined ? [] : [['format', format] as [string, string]])];
      return { query: queryString(reversed ? pairs.reverse() : pairs), kind: 'valid' as const, rows, ...(format === undefined ? {} : { format }) };
    });
  const MUTATED_ESTIMATE = fc.oneof(
    fc.constant({ query: '', kind: 'mutated' as const, pointer: '/rows' }),
    fc.constant({ query: '?format=csv', kind: 'mutated' as const, pointer: '/rows' }),
    fc
      .oneof(
        fc.constantFrom('abc', '1.5', '', 'true', 'null', '[]', '1,2', '5abc', 'NaN', 'Infinity', '-0.5'),
        fc.integer({ min: -1e9, max: ROWS.schema.minimum! - 1 }).map(String),
        fc.integer({ min: ROWS.schema.maximum! + 1, max: 2 ** 40 }).map(String),
        fc.constantFrom('99999999999999999999', '1e309', '-1e309'),
      )
      .map((rows) => ({ query: queryString([['rows', rows]]), kind: 'mutated' as const, pointer: '/rows' })),
    fc
      .tuple(fc.integer({ min: 1, max: 1000 }), fc.oneof(fc.constantFrom('CSV', 'xml', '', ' csv', 'json ', 'csv,json'), fc.string({ maxLength: 6 })))
      .filter(([, format]) => !(FORMAT.schema.enum ?? []).includes(format))
      .map(([rows, format]) => ({
        query: queryString([
          ['rows', String(rows)],
          ['format', format],
        ]),
        kind: 'mutated' as const,
        pointer: '/format',
      })),
  );
  const HOSTILE_ESTIMATE = fc
    .oneof(
      fc.string({
        unit: fc.constantFrom('r', 'o', 'w', 's', '=', '&', '%', 'f', 'F', '0', '1', '9', '[', ']', '+', ';', '#', '?', '_', '.', 'e', '-'),
        maxLength: 40,
      }),
      fc.constantFrom(
        'rows=1&rows=2',
        'rows[]=1',
        'rows[0]=1',
        'rows=1&__proto__=x',
        'rows=1&constructor[prototype][x]=1',
        'rows=%ff',
        'rows=%',
        'rows=1%00',
        `rows=${'9'.repeat(5000)}`,
        'rows=1&format=csv&format=json',
        'rows=0x10',
        'rows=1e3',
        'rows=+5',
        'rows=%205',
        'ROWS=5',
      ),
    )
    .map((text) => ({ query: `?${text}`, kind: 'hostile' as const }));

  it('property: GET /reports/estimate answers 200 with the Estimate for valid queries, 400 validation-failed in the query for mutated ones, and a 4xx problem for anything else', async () => {
    const estimates = fc
      .tuple(fc.oneof(VALID_ESTIMATE, MUTATED_ESTIMATE, HOSTILE_ESTIMATE), ANY_AUTH)
      .map(([estimate, auth]) => shown<EstimateCase>({ ...estimate, auth }, showEstimate));
    await fuzz(estimates, async (estimate) => {
      const findings = new Findings();
      const request: HttpRequest = { method: 'GET', url: `/reports/estimate${estimate.query}`, headers: authHeaders(estimate.auth, nextPrincipal()) };
      const authorized = authFaults(estimate.auth).length === 0;
      const expected = !authorized
        ? '401 unauthorized'
        : estimate.kind === 'valid'
          ? `200 {rows: ${estimate.rows}, format: ${estimate.format ?? FORMAT.schema.default ?? 'csv'}, estimatedBytes}`
          : estimate.kind === 'mutated'
            ? `400 validation-failed with an error {in: "query", pointer: "${estimate.pointer}"}`
            : '200 with an Estimate, or a 4xx problem';
      const before = await countStored(target.app.store);
      const response = await answer(target.app, request).catch((error: Error) => {
        findings.add(request, expected, undefined, error.message.split('\n')[0]!);
        return undefined;
      });
      if (response) {
        const fail = (why: string) => findings.add(request, expected, response, why);
        if (response.statusCode === 200) {
          const body = JSON.parse(response.body) as Record<string, unknown>;
          const shapeFault =
            !/^application\/json/.test(String(response.headers['content-type'])) ||
            Object.keys(body).sort().join() !== 'estimatedBytes,format,rows' ||
            violations(ROWS.schema, body.rows).length > 0 ||
            violations(FORMAT.schema, body.format).length > 0 ||
            !Number.isInteger(body.estimatedBytes) ||
            (body.estimatedBytes as number) < 0;
          if (shapeFault) fail('a 200 that is not an Estimate');
          if (!authorized || estimate.kind === 'mutated') fail('a 200 for a request the contract refuses');
          if (estimate.kind === 'valid' && (body.rows !== estimate.rows || body.format !== (estimate.format ?? FORMAT.schema.default ?? 'csv')))
            fail('the Estimate is not for the rows and format asked');
        } else {
          const outcome = outcomeOf(response, 'estimateReport');
          if (outcome.kind === 'broken') fail(outcome.why);
          else if (outcome.kind === 'accepted') fail('a 202 from a synchronous operation');
          else if (!authorized) {
            if (outcome.answer !== '401 unauthorized') fail('not 401 for a missing or unknown credential');
          } else if (estimate.kind === 'valid') fail('a valid query was refused');
          else if (estimate.kind === 'mutated') {
            const errors = (outcome.body.errors ?? []) as Array<{ in: string; pointer: string }>;
            if (outcome.answer !== '400 validation-failed' || !errors.some((error) => error.in === 'query' && error.pointer === estimate.pointer)) {
              fail(`not a 400 validation-failed naming query ${estimate.pointer}`);
            }
          }
        }
      }
      if (JSON.stringify(await countStored(target.app.store)) !== JSON.stringify(before)) findings.note('a synchronous request changed the stored rows');
      await expectServerUp(target, findings);
      findings.throwIfAny();
    });
  }, 15_000);

  // -------------------------------------------------------------------------------------------
  // The jobs API and the methods of known paths.

  type IdSpec = 'own' | 'other' | 'unknown' | 'lowercase' | 'suffixed' | { encoded: string } | { raw: string };
  interface JobCase {
    route: 'job' | 'result' | 'events' | 'reports' | 'estimate';
    method: string;
    id: IdSpec;
    state: 'queued' | 'canceled';
    auth: Auth;
    prefer: string | undefined;
    lastEventId: string | undefined;
    unknownId: string;
  }
  const ROUTE_METHODS: Record<JobCase['route'], string[]> = {
    job: ['GET', 'HEAD', 'DELETE'],
    result: ['GET', 'HEAD'],
    events: ['GET'],
    reports: ['POST'],
    estimate: ['GET', 'HEAD'],
  };
  const idText = (id: IdSpec) => (typeof id === 'string' ? id : 'encoded' in id ? `encoded ${JSON.stringify(id.encoded)}` : `raw ${JSON.stringify(id.raw)}`);
  const showJobCase = (job: JobCase) =>
    `${job.method} ${job.route} of ${idText(job.id)} (the run's job ${job.state}), credential ${job.auth}${job.prefer === undefined ? '' : `, Prefer: ${job.prefer}`}${job.lastEventId === undefined ? '' : `, Last-Event-ID: ${JSON.stringify(job.lastEventId)}`}`;

  const JOB_CASES = fc
    .record({
      route: fc.constantFrom<JobCase['route']>('job', 'job', 'result', 'result', 'events', 'reports', 'estimate'),
      method: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom('GET', 'DELETE', 'HEAD') },
        { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'PATCH', 'OPTIONS') },
      ),
      id: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom<IdSpec>('own', 'other', 'unknown', 'lowercase', 'suffixed') },
        { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }).map((text) => ({ encoded: text })) },
        {
          weight: 1,
          arbitrary: fc
            .oneof(
              fc.constantFrom('%ff', '%', '%zz', '%2e%2e', '..', '.', '%00', '%2F', 'a%2Fb', '%E2%80%AE', '%C0%AF'),
              fc.integer({ min: 90, max: 400 }).map((length) => 'A'.repeat(length)),
            )
            .map((raw) => ({ raw })),
        },
      ),
      state: fc.constantFrom<JobCase['state']>('queued', 'canceled'),
      auth: ANY_AUTH,
      prefer: PREFER,
      lastEventId: fc.constantFrom(undefined, undefined, '0', '1', '3', '999999', '-1', 'abc', '', ' 2 ', '99999999999999999999'),
      unknownId: fc.ulid(),
    })
    // An event stream of an unfinished job stays open by design; it is not a request this property can wait for.
    .filter((job) => !(job.route === 'events' && job.method === 'GET' && job.id === 'own' && job.state === 'queued'))
    .filter((job) => !(job.route === 'events' && job.method === 'HEAD'))
    .filter((job) => !(['reports', 'estimate'].includes(job.route) && ROUTE_METHODS[job.route].includes(job.method)))
    .map((job) => shown<JobCase>(job, showJobCase));

  /** The answers the README gives a jobs-API request; "4xx" is any problem, "<status> head" a HEAD answer without a body. */
  function jobAnswers(job: JobCase): string[] {
    const garbage = typeof job.id === 'object' && ('raw' in job.id || /^\.+$/.test(job.id.encoded) || encodeURIComponent(job.id.encoded).length > 100);
    if (!ROUTE_METHODS[job.route].includes(job.method))
      return job.method === 'HEAD' ? ['405 head', ...(garbage ? ['4xx head'] : [])] : ['405 method-not-allowed', ...(garbage ? ['4xx'] : [])];
    if (garbage) return [job.method === 'HEAD' ? '4xx head' : '4xx'];
    let answers: string[];
    if (authFaults(job.auth).length) answers = ['401 unauthorized'];
    else if (job.id !== 'own') answers = ['404 job-not-found'];
    else if (job.route === 'job') answers = job.method === 'DELETE' && job.state === 'canceled' ? ['409 job-finished'] : ['200 job'];
    else if (job.route === 'result') answers = job.state === 'queued' ? ['202 job'] : ['409 job-canceled'];
    else answers = ['200 events'];
    return job.method === 'HEAD' ? answers.map((answer) => `${answer.split(' ')[0]} head`) : answers;
  }

  let otherJobId = '';
  async function newJob(principal: string, state: JobCase['state']): Promise<string> {
    const accepted = await answer(target.app, submissionRequest(example({ keyLines: [`${principal}-job`] }), principal));
    expect(accepted.statusCode, renderAnswer(accepted)).toBe(202);
    const id = accepted.json<{ job_id: string }>().job_id;
    if (state === 'canceled') {
      const canceled = await answer(target.app, { method: 'DELETE', url: `/jobs/${id}`, headers: { 'x-api-key': principal } });
      expect(canceled.statusCode, renderAnswer(canceled)).toBe(200);
    }
    return id;
  }

  it('property: the jobs API answers a job of the principal as the README says, anything else 404/405/4xx, and changes no rows', async () => {
    otherJobId ||= await newJob('fuzz-other-principal', 'queued');
    await fuzz(JOB_CASES, async (job) => {
      const findings = new Findings();
      const principal = nextPrincipal();
      const ownId = await newJob(principal, job.state);
      const id =
        job.id === 'own'
          ? ownId
          : job.id === 'other'
            ? otherJobId
            : job.id === 'unknown'
              ? job.unknownId
              : job.id === 'lowercase'
                ? ownId.toLowerCase()
                : job.id === 'suffixed'
                  ? `${ownId}A`
                  : 'encoded' in job.id
                    ? encodeURIComponent(job.id.encoded)
                    : job.id.raw;
      const path = { job: `/jobs/${id}`, result: `/jobs/${id}/result`, events: `/jobs/${id}/events`, reports: '/reports', estimate: '/reports/estimate' }[
        job.route
      ];
      const headers: Record<string, string> = { ...authHeaders(job.auth, principal) };
      if (job.prefer !== undefined) headers.prefer = job.prefer;
      if (job.lastEventId !== undefined) headers['last-event-id'] = job.lastEventId;
      const request: HttpRequest = { method: job.method, url: path, headers };
      const answers = jobAnswers(job);
      const expected = answers.join(' or ');
      const before = await countStored(target.app.store);
      const response = await answer(target.app, request).catch((error: Error) => {
        findings.add(request, expected, undefined, error.message.split('\n')[0]!);
        return undefined;
      });
      if (response) {
        const why = jobAnswerFault(response, answers, ownId, job);
        if (why) findings.add(request, expected, response, why);
      }
      if (JSON.stringify(await countStored(target.app.store)) !== JSON.stringify(before)) findings.note('a jobs-API request changed the stored rows');
      await expectServerUp(target, findings);
      findings.throwIfAny();
    });
  }, 15_000);

  function jobAnswerFault(response: LightMyRequestResponse, answers: string[], ownId: string, job: JobCase): string | undefined {
    const status = response.statusCode;
    const contentType = String(response.headers['content-type'] ?? '');
    if (status >= 500) return `a ${status}`;
    const head = answers.find((answer) => answer.endsWith(' head'));
    if (head) {
      if (response.body !== '') return 'a HEAD answer with a body';
      if (head === '4xx head' ? status < 400 || status > 499 : String(status) !== head.split(' ')[0]) return `status ${status}`;
      if (status >= 400 && !/^application\/problem\+json/.test(contentType)) return `a ${status} HEAD answer with Content-Type ${contentType}`;
      return undefined;
    }
    if (answers.includes('200 job') || answers.includes('202 job')) {
      if (!answers.includes(`${status} job`)) return `status ${status}`;
      const body = JSON.parse(response.body) as { id?: string; status?: string; operation?: string };
      const expectedStatus = job.method === 'DELETE' || job.state === 'canceled' ? 'canceled' : 'queued';
      if (!/^application\/json/.test(contentType) || body.id !== ownId || body.operation !== 'createReport' || body.status !== expectedStatus) {
        return `not the job ${ownId}, ${expectedStatus}`;
      }
      return JOB_STATES.includes(body.status as never) ? undefined : `an unknown job status ${body.status}`;
    }
    if (answers.includes('200 events')) {
      if (status !== 200 || !/^text\/event-stream/.test(contentType)) return `status ${status} ${contentType}, not an event stream`;
      const events = [...response.body.matchAll(/^event: (\S+)$/gm)].map((match) => match[1]);
      if (events.length > 0 && events.at(-1) !== 'job.canceled') return `the stream's last event is ${events.at(-1)}, not job.canceled`;
      if (job.lastEventId === undefined && events[0] !== 'job.queued') return 'the stream does not start with job.queued';
      return undefined;
    }
    if (/^application\/json/.test(contentType) && /"error"/.test(response.body))
      return `Fastify's default error body (application/json {"error": …}), not problem details`;
    const fault = problemFault(status, contentType, response.body);
    if (fault) return fault;
    const answer = `${status} ${String(JSON.parse(response.body).type).split(':').pop()}`;
    return answers.includes(answer) || answers.includes('4xx') ? undefined : `${answer} is not the answer`;
  }
});

describe('fuzzing a free-form body (a second contract) through inject', () => {
  let target: Target;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const tmp = tempDir();
    const principal = (credential: string) => (credential.startsWith('fuzz-') ? credential : undefined);
    const app = await createAsyncFirst({
      contract: OPEN_CONTRACT,
      handlers: { storeDocument: async () => ({}) },
      security: { ApiKeyAuth: principal },
      config: { databaseUrl: tmp.dbPath, logLevel: 'silent', workerConcurrency: 0, bodyLimit: BODY_LIMIT },
    });
    target = { app, operation: 'storeDocument' };
    close = async () => {
      await app.close();
      tmp.cleanup();
    };
  });
  afterAll(() => close());

  const documentSubmission = (body: Buffer, note: string): Submission =>
    shown({ ...example({ body, note }), keyLines: ['doc-1'] }, (submission) => `${submission.note}: ${showBytes(submission.body)}`);

  it(`property: nesting up to BODY_MAX_DEPTH (${BODY_MAX_DEPTH}) is accepted and replays; deeper, up to thousands of levels, is 400 validation-failed, never a 5xx`, async () => {
    const nested = fc
      .tuple(NESTING, fc.boolean())
      .map(([{ depth, shape }, asMember]) =>
        documentSubmission(utf8(asMember ? `{"doc":${nest(depth, shape)}}` : `{"a":${nest(depth - 1, shape)}}`), `nesting ${depth} deep (${shape})`),
      );
    await fuzz(
      nested,
      async (submission) => {
        const findings = new Findings();
        const request = submissionRequest(submission, nextPrincipal(), '/documents');
        const faults = submissionFaults(submission, DOCUMENT);
        const jobId = await submit(target, request, faults, findings);
        if (jobId !== undefined && findings.empty) await submit(target, request, faults, findings, { replayOf: jobId });
        await expectServerUp(target, findings);
        findings.throwIfAny();
      },
      {
        examples: [BODY_MAX_DEPTH - 1, BODY_MAX_DEPTH, 3000, 10_000].map((depth) =>
          documentSubmission(utf8(`{"doc":${nest(depth, '[')}}`), `nesting ${depth + 1} deep ([)`),
        ),
      },
    );
  }, 15_000);

  it('property: a number beyond the range of a double (1e309) is 400, never stored as null; any finite spelling is accepted', async () => {
    const spellings = fc.oneof(
      fc.constantFrom('1e309', '-1e309', '1e400', '-123e99999', '1.7976931348623159e308'),
      fc.constantFrom('1.7976931348623157e308', '5e-324', '1e-400', '-0', '-0.0e5', '1.0', '123456789012345678901234567890', '9007199254740993'),
    );
    const numbers = fc
      .tuple(spellings, fc.boolean())
      .map(([spelling, nested]) => documentSubmission(utf8(nested ? `{"a":[{"n":${spelling}}]}` : `{"n":${spelling}}`), `the number ${spelling}`));
    await fuzz(
      numbers,
      async (submission) => {
        const findings = new Findings();
        const request = submissionRequest(submission, nextPrincipal(), '/documents');
        const faults = submissionFaults(submission, DOCUMENT);
        const jobId = await submit(target, request, faults, findings);
        if (jobId !== undefined && findings.empty) await submit(target, request, faults, findings, { replayOf: jobId });
        await expectServerUp(target, findings);
        findings.throwIfAny();
      },
      { examples: [documentSubmission(utf8('{"n":1e309}'), 'the number 1e309')] },
    );
  }, 15_000);

  /** The same members in reverse order at every depth (the most different order there is). */
  const reversedMembers = (value: unknown): unknown =>
    value instanceof RawJson
      ? value
      : Array.isArray(value)
        ? value.map(reversedMembers)
        : value !== null && typeof value === 'object'
          ? new Members(
              Object.entries(value)
                .reverse()
                .map(([name, member]) => [name, reversedMembers(member)]),
            )
          : value;

  it('property: any JSON document replays for its key in any member order and layout; another document with the key is 422', async () => {
    const documents = fc
      .tuple(
        fc.object({
          key: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', '')),
          values: [fc.jsonValue({ maxDepth: 1 }), fc.constantFrom(...['-0', '1.0', '1e2', '123456789012345678901234567890'].map((text) => new RawJson(text)))],
          maxDepth: 3,
          maxKeys: 5,
        }),
        fc.jsonValue({ maxDepth: 2 }),
        GAPS,
      )
      .map(([document, extra, gap]) => shown({ document, extra, gap }, (value) => `${jsonText(value.document)} (then + ${jsonText(value.extra)})`));
    await fuzz(documents, async ({ document, extra, gap }) => {
      const findings = new Findings();
      const principal = nextPrincipal();
      const send = (text: string, note: string, expectation: { replayOf?: string; reused?: boolean } = {}) => {
        const submission = documentSubmission(utf8(text), note);
        return submit(target, submissionRequest(submission, principal, '/documents'), submissionFaults(submission, DOCUMENT), findings, expectation);
      };
      const jobId = await send(jsonText(document), 'a document');
      if (jobId !== undefined) {
        await send(jsonText(reversedMembers(document), gap), 'the document, members reversed at every depth', { replayOf: jobId });
        const changed = { ...document, [`~${Object.keys(document).length}`]: extra };
        await send(jsonText(changed), 'the document with one more member', { reused: true });
        await send(jsonText(document, gap), 'the document again', { replayOf: jobId });
      }
      await expectServerUp(target, findings);
      findings.throwIfAny();
    });
  }, 15_000);
});
