import { Ajv, type ErrorObject } from 'ajv';
import { ContractError } from './load.js';
import type { OperationSpec } from './operations.js';

/*
 * An asynchronous operation's job policy, declared beside it in the contract (the `x-asyncfirst`
 * extension) and overridable in code (createAsyncFirst's `operations.<id>`). Times are seconds in
 * both places, as the contract writes them; the worker is given milliseconds.
 */

/** The extension's name on an operation object. */
export const POLICY_EXTENSION = 'x-asyncfirst';

/** A policy as the contract (or code) writes it. */
export interface JobPolicyFields {
  /** Handler runs before the job fails. */
  maxAttempts?: number;
  /** Seconds one attempt may run: then its signal fires and the attempt fails as job-timeout. */
  timeout?: number;
  /** Retry delays: the first retry's ceiling (`base`, doubling per attempt) and the largest (`max`), in seconds. */
  backoff?: { base?: number; max?: number };
  /** Higher runs first among due jobs (default 0). */
  priority?: number;
  /** The most attempts of the operation running at once, across every process. */
  concurrency?: number;
  /** At most `max` attempts of the operation start in any `per` seconds, across every process. */
  rateLimit?: { max: number; per: number };
}

/** What the worker and the acceptance use for one operation, every field settled. */
export interface JobPolicy {
  maxAttempts: number;
  /** Undefined: attempts run as long as their handler does. */
  timeoutMs: number | undefined;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Stored with each job at acceptance: higher is claimed first among due jobs. */
  priority: number;
  /** Undefined: no limit on attempts running at once. */
  concurrency: number | undefined;
  /** Undefined: no limit on starts per window. */
  rateLimit: { max: number; perMs: number } | undefined;
}

/** Fields issue 9 plans whose enforcement needs the claim to change on both drivers: refused until then. */
const NOT_SUPPORTED_YET = ['retention', 'notify'];

/** The fields of the extension, as an unknown one's error lists them. */
const KNOWN_FIELDS = ['maxAttempts', 'timeout', 'backoff', 'priority', 'concurrency', 'rateLimit'];

/** The longest timeout and backoff accepted: a week (timers in Node.js hold at most 24.8 days). */
const MAX_SECONDS = 7 * 24 * 60 * 60;

/** The extension's JSON Schema (draft-07, as ajv's default class reads it). */
export const JOB_POLICY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    maxAttempts: { type: 'integer', minimum: 1, maximum: 1000 },
    timeout: { type: 'number', exclusiveMinimum: 0, maximum: MAX_SECONDS },
    backoff: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: {
        base: { type: 'number', exclusiveMinimum: 0, maximum: MAX_SECONDS },
        max: { type: 'number', exclusiveMinimum: 0, maximum: MAX_SECONDS },
      },
    },
    priority: { type: 'integer', minimum: -100, maximum: 100 },
    concurrency: { type: 'integer', minimum: 1, maximum: 10_000 },
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      required: ['max', 'per'],
      properties: {
        max: { type: 'integer', minimum: 1, maximum: 10_000 },
        per: { type: 'number', exclusiveMinimum: 0, maximum: MAX_SECONDS },
      },
    },
  },
} as const;

const validatePolicy = new Ajv({ allErrors: true, strict: true, verbose: true }).compile(JOB_POLICY_SCHEMA);

/** The settings a policy field falls back to when neither code nor the contract gives it. */
export interface PolicyDefaults {
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
}

/**
 * Each asynchronous operation's policy: code's fields over the contract's over the defaults.
 * A bad value in either place stops the start with a message naming the operation and the field.
 */
export function settlePolicies(
  operations: OperationSpec[],
  inCode: (operationId: string) => object | undefined,
  defaults: PolicyDefaults,
  source: string,
): Map<string, JobPolicy> {
  const policies = new Map<string, JobPolicy>();
  for (const operation of operations) {
    const place = `${operation.method} ${operation.path} (${operation.operationId})`;
    if (!operation.async) {
      if (operation.policy !== undefined)
        throw new ContractError(`${source}: ${place}: ${POLICY_EXTENSION} applies to asynchronous operations only (those answering 202); remove it`);
      continue;
    }
    const declared = checkedFields(operation.policy, `${source}: ${place}: ${POLICY_EXTENSION}`);
    const code = inCode(operation.operationId);
    const given = checkedFields(code === undefined ? undefined : policyFieldsOf(code), `operations.${operation.operationId}`);
    const base = given.backoff?.base ?? declared.backoff?.base;
    const max = given.backoff?.max ?? declared.backoff?.max;
    // A field given alone moves the other default out of its way, so only two given fields can disagree.
    let retryBaseMs = base === undefined ? defaults.retryBaseMs : Math.round(base * 1000);
    let retryMaxMs = max === undefined ? defaults.retryMaxMs : Math.round(max * 1000);
    if (base === undefined) retryBaseMs = Math.min(retryBaseMs, retryMaxMs);
    if (max === undefined) retryMaxMs = Math.max(retryMaxMs, retryBaseMs);
    if (retryMaxMs < retryBaseMs) {
      throw new ContractError(
        `${source}: ${place}: backoff.max (${retryMaxMs / 1000} s) is below backoff.base (${retryBaseMs / 1000} s); the largest delay cannot be below the first`,
      );
    }
    const timeout = given.timeout ?? declared.timeout;
    // rateLimit is one field: code's replaces the contract's whole (its max and per go together).
    const rateLimit = given.rateLimit ?? declared.rateLimit;
    policies.set(operation.operationId, {
      maxAttempts: given.maxAttempts ?? declared.maxAttempts ?? defaults.maxAttempts,
      timeoutMs: timeout === undefined ? undefined : Math.max(1, Math.round(timeout * 1000)),
      retryBaseMs,
      retryMaxMs,
      priority: given.priority ?? declared.priority ?? 0,
      concurrency: given.concurrency ?? declared.concurrency,
      rateLimit: rateLimit === undefined ? undefined : { max: rateLimit.max, perMs: Math.max(1, Math.round(rateLimit.per * 1000)) },
    });
  }
  return policies;
}

/** The policy fields of an operation's options in code (its hooks are not policy). */
function policyFieldsOf(options: object): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const name of [...KNOWN_FIELDS, ...NOT_SUPPORTED_YET]) {
    const value = (options as Record<string, unknown>)[name];
    if (value !== undefined) fields[name] = value;
  }
  return fields;
}

/** A policy checked against the schema; `where` names it in the error (e.g. "…: x-asyncfirst"). */
function checkedFields(value: unknown, where: string): JobPolicyFields {
  if (value === undefined) return {};
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const planned = NOT_SUPPORTED_YET.find((name) => name in value);
    if (planned) throw new ContractError(`${where}.${planned} is not supported yet (it is planned); remove it`);
  }
  if (validatePolicy(value)) return value as JobPolicyFields;
  throw new ContractError(`${where}${describeError((validatePolicy.errors ?? [])[0])}`);
}

/** One schema violation as ".field must …", after the place it is appended to. */
function describeError(error: ErrorObject | undefined): string {
  if (!error) return ': is not valid';
  const field = error.instancePath.replace(/^\//, '').replaceAll('/', '.');
  const at = field === '' ? '' : `.${field}`;
  if (error.keyword === 'additionalProperty' || error.keyword === 'additionalProperties') {
    const unknown = (error.params as { additionalProperty: string }).additionalProperty;
    const known = field === 'backoff' ? 'base, max' : field === 'rateLimit' ? 'max, per' : KNOWN_FIELDS.join(', ');
    return `${at}.${unknown} is not a known field (known: ${known})`;
  }
  if (error.keyword === 'minProperties') return `${at} must give base or max (seconds)`;
  if (error.keyword === 'required')
    return `${at} must give ${(error.params as { missingProperty: string }).missingProperty} (rateLimit is { max: starts, per: seconds })`;
  return `${at} ${error.message ?? 'is not valid'} (given: ${JSON.stringify(error.data)})`;
}
