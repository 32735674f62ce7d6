import { describe, expect, it } from 'vitest';
import { canonicalJson, fingerprintRequest } from '../src/idempotency/fingerprint.js';

/*
 * canonicalJson runs on every submission, and its callers need not have bounded the input's depth
 * (the HTTP layer does, at BODY_MAX_DEPTH, but the store's callers and tests do not).
 */

describe('canonicalJson on deeply nested values', () => {
  it('writes 100,000 levels of arrays without overflowing the stack', () => {
    const depth = 100_000;
    const text = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    expect(canonicalJson(JSON.parse(text))).toBe(text);
  });

  it('writes 100,000 levels of objects with sorted keys at every level', () => {
    const depth = 100_000;
    let value: unknown = 1;
    for (let level = 0; level < depth; level++) value = { z: level, a: value };
    const text = canonicalJson(value);
    expect(text.startsWith('{"a":{"a":{"a":')).toBe(true);
    expect(text).toContain('{"a":1,"z":0},"z":1},"z":2}');
    expect(text.endsWith(`,"z":${depth - 1}}`)).toBe(true);
  });

  it('fingerprints a deeply nested body, whoever calls it', () => {
    const body = JSON.parse(`${'['.repeat(50_000)}${']'.repeat(50_000)}`);
    const { fingerprint, canonicalInput } = fingerprintRequest('op', { params: {}, query: {}, body });
    expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(canonicalInput.startsWith('{"body":[[[')).toBe(true);
  });
});
