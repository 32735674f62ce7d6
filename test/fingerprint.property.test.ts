import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, fingerprintRequest, type JobInput } from '../src/idempotency/fingerprint.js';
import { seededRandom } from './helpers.js';

/** A copy of `value` whose objects, at every depth, have their members inserted in a shuffled order. */
function shuffleKeys(value: unknown, next: () => number): unknown {
  if (Array.isArray(value)) return value.map((item) => shuffleKeys(item, next));
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [entries[i], entries[j]] = [entries[j] as [string, unknown], entries[i] as [string, unknown]];
  }
  // fromEntries defines own properties, so a "__proto__" member stays a member.
  return Object.fromEntries(entries.map(([key, member]) => [key, shuffleKeys(member, next)]));
}

/** Same members, reversed order, at every depth (the most different order there is). */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([key, member]) => [key, reverseKeys(member)]),
  );
}

const json = fc.jsonValue({ maxDepth: 4 });
const object = fc.object({ maxDepth: 3, values: [fc.jsonValue({ maxDepth: 2 })] });
const record = fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 });
const input: fc.Arbitrary<JobInput> = fc.record({ params: record, query: record, body: json });
const operationId = fc.string({ minLength: 1, maxLength: 30 });

describe('canonicalJson', () => {
  it('property: ignores the order of object members at every depth (fc.jsonValue)', () => {
    fc.assert(
      fc.property(json, fc.integer(), (value, seed) => {
        const canonical = canonicalJson(value);
        expect(canonicalJson(shuffleKeys(value, seededRandom(seed)))).toBe(canonical);
        expect(canonicalJson(reverseKeys(value))).toBe(canonical);
      }),
    );
  });

  it('property: ignores the order of object members at every depth (fc.object)', () => {
    fc.assert(
      fc.property(object, fc.integer(), (value, seed) => {
        expect(canonicalJson(shuffleKeys(value, seededRandom(seed)))).toBe(canonicalJson(value));
        expect(canonicalJson(reverseKeys(value))).toBe(canonicalJson(value));
      }),
    );
  });

  it('property: is one-line JSON that parses back to the same value, and is its own canonical form', () => {
    fc.assert(
      fc.property(json, (value) => {
        const canonical = canonicalJson(value);
        expect(JSON.parse(canonical)).toEqual(JSON.parse(JSON.stringify(value)));
        expect(canonical).not.toMatch(/\n/);
        expect(canonicalJson(JSON.parse(canonical))).toBe(canonical);
      }),
    );
  });

  it('keeps array order and tells apart values JSON tells apart', () => {
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: '1' }));
    expect(canonicalJson({ a: null })).not.toBe(canonicalJson({}));
    expect(canonicalJson({ a: 'b","c":"d' })).not.toBe(canonicalJson({ a: 'b', c: 'd' }));
    expect(canonicalJson({ b: { d: 1, c: [{ f: 1, e: 2 }] }, a: 0 })).toBe('{"a":0,"b":{"c":[{"e":2,"f":1}],"d":1}}');
  });
});

describe('fingerprintRequest', () => {
  it('property: ignores member order in body, params and query at every depth', () => {
    fc.assert(
      fc.property(operationId, input, fc.integer(), (operation, request, seed) => {
        const next = seededRandom(seed);
        const shuffled = {
          query: shuffleKeys(request.query, next),
          body: shuffleKeys(request.body, next),
          params: shuffleKeys(request.params, next),
        } as JobInput;
        const original = fingerprintRequest(operation, request);
        const reordered = fingerprintRequest(operation, shuffled);
        expect(reordered.fingerprint).toBe(original.fingerprint);
        expect(reordered.canonicalInput).toBe(original.canonicalInput);
        expect(original.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      }),
    );
  });

  it('property: different bodies (by canonical JSON) give different fingerprints', () => {
    fc.assert(
      fc.property(operationId, record, json, json, (operation, params, a, b) => {
        fc.pre(canonicalJson(a) !== canonicalJson(b));
        const first = fingerprintRequest(operation, { params, query: {}, body: a });
        const second = fingerprintRequest(operation, { params, query: {}, body: b });
        expect(first.fingerprint).not.toBe(second.fingerprint);
        expect(first.canonicalInput).not.toBe(second.canonicalInput);
      }),
    );
  });

  it('property: equal bodies (by canonical JSON) give equal fingerprints', () => {
    fc.assert(
      fc.property(operationId, input, (operation, request) => {
        const copy = JSON.parse(JSON.stringify(request)) as JobInput;
        expect(fingerprintRequest(operation, copy).fingerprint).toBe(fingerprintRequest(operation, request).fingerprint);
      }),
    );
  });

  it('property: the operationId is part of the fingerprint', () => {
    fc.assert(
      fc.property(operationId, operationId, input, (a, b, request) => {
        fc.pre(a !== b);
        expect(fingerprintRequest(a, request).fingerprint).not.toBe(fingerprintRequest(b, request).fingerprint);
      }),
    );
  });

  it('property: path parameters are part of the fingerprint', () => {
    fc.assert(
      fc.property(operationId, record, record, json, (operation, paramsA, paramsB, body) => {
        fc.pre(canonicalJson(paramsA) !== canonicalJson(paramsB));
        expect(fingerprintRequest(operation, { params: paramsA, query: {}, body }).fingerprint).not.toBe(
          fingerprintRequest(operation, { params: paramsB, query: {}, body }).fingerprint,
        );
      }),
    );
  });

  it('property: the same members as path parameters, query or body are different requests', () => {
    fc.assert(
      fc.property(operationId, fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 1 }), { minKeys: 1, maxKeys: 4 }), (operation, members) => {
        const asParams = fingerprintRequest(operation, { params: members, query: {}, body: null }).fingerprint;
        const asQuery = fingerprintRequest(operation, { params: {}, query: members, body: null }).fingerprint;
        const asBody = fingerprintRequest(operation, { params: {}, query: {}, body: members }).fingerprint;
        expect(new Set([asParams, asQuery, asBody]).size).toBe(3);
      }),
    );
  });

  it('tells apart path parameter values and their types, and an absent body from an empty one', () => {
    const one = fingerprintRequest('getItem', { params: { id: '1' }, query: {}, body: undefined });
    const two = fingerprintRequest('getItem', { params: { id: '2' }, query: {}, body: undefined });
    expect(one.fingerprint).not.toBe(two.fingerprint);
    expect(fingerprintRequest('getItem', { params: { id: 1 }, query: {}, body: undefined }).fingerprint).not.toBe(one.fingerprint);
    expect(fingerprintRequest('op', { params: {}, query: {}, body: undefined }).fingerprint).not.toBe(
      fingerprintRequest('op', { params: {}, query: {}, body: {} }).fingerprint,
    );
    expect(one.canonicalInput).toBe('{"body":null,"params":{"id":"1"},"query":{}}');
  });
});
