import { Ajv, type ErrorObject } from 'ajv';
import { NOTIFY_EVENTS, type NotificationRoute, type NotifyEvent } from '../store/store.js';
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
  /** Notifiers told of the job's endings: a notifier's name (every ending), or one with the endings it hears of. */
  notify?: NotifyEntry[];
  /** How long, in seconds, the operation's finished jobs (`jobs`) and its idempotency keys (`keys`) are kept; each in place of JOB_RETENTION_MS, IDEMPOTENCY_RETENTION_MS. */
  retention?: { jobs?: number; keys?: number };
}

/** One entry of `notify`: a notifier's name (told of every ending), or the name and the endings it is told of. */
export type NotifyEntry = string | { notifier: string; on?: NotifyEvent[] };

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
  /** The notifiers told of the operation's job endings (none: nothing more is written when a job ends). */
  notify: NotificationRoute[];
  /** How long a finished job is kept; undefined: JOB_RETENTION_MS. */
  jobRetentionMs: number | undefined;
  /** How long an idempotency key stays bound; undefined: IDEMPOTENCY_RETENTION_MS. */
  keyRetentionMs: number | undefined;
}

/** The fields of the extension, as an unknown one's error lists them. */
const KNOWN_FIELDS = ['maxAttempts', 'timeout', 'backoff', 'priority', 'concurrency', 'rateLimit', 'notify', 'retention'];

/** The longest timeout and backoff accepted: a week (timers in Node.js hold at most 24.8 days). */
const MAX_SECONDS = 7 * 24 * 60 * 60;

/** The longest retention accepted: ten years (no timer holds it; the sweeper compares times). */
const MAX_RETENTION_SECONDS = 10 * 365 * 24 * 60 * 60;

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
    // Its entries are checked by checkedNotify, whose messages name the entry and the notifiers known.
    notify: { type: 'array' },
    retention: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: {
        jobs: { type: 'number', exclusiveMinimum: 0, maximum: MAX_RETENTION_SECONDS },
        keys: { type: 'number', exclusiveMinimum: 0, maximum: MAX_RETENTION_SECONDS },
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
  /** The service's notifiers; undefined (asyncfirst check, which has only the contract): notify's names are not checked. */
  notifiers?: ReadonlySet<string>,
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
    // Code's notify replaces the contract's whole (an empty list in code: no notifiers).
    const notify =
      given.notify !== undefined
        ? checkedNotify(given.notify, `operations.${operation.operationId}`, notifiers)
        : checkedNotify(declared.notify ?? [], `${source}: ${place}: ${POLICY_EXTENSION}`, notifiers);
    // Field by field, as backoff: code's jobs or keys over the contract's, each else the global setting.
    const jobRetention = given.retention?.jobs ?? declared.retention?.jobs;
    const keyRetention = given.retention?.keys ?? declared.retention?.keys;
    policies.set(operation.operationId, {
      maxAttempts: given.maxAttempts ?? declared.maxAttempts ?? defaults.maxAttempts,
      timeoutMs: timeout === undefined ? undefined : Math.max(1, Math.round(timeout * 1000)),
      retryBaseMs,
      retryMaxMs,
      priority: given.priority ?? declared.priority ?? 0,
      concurrency: given.concurrency ?? declared.concurrency,
      rateLimit: rateLimit === undefined ? undefined : { max: rateLimit.max, perMs: Math.max(1, Math.round(rateLimit.per * 1000)) },
      notify,
      jobRetentionMs: jobRetention === undefined ? undefined : Math.max(1, Math.round(jobRetention * 1000)),
      keyRetentionMs: keyRetention === undefined ? undefined : Math.max(1, Math.round(keyRetention * 1000)),
    });
  }
  return policies;
}

/** A notify list checked entry by entry against the notifiers there are; `where` names the policy in the error. */
function checkedNotify(entries: unknown[], where: string, notifiers: ReadonlySet<string> | undefined): NotificationRoute[] {
  const routes: NotificationRoute[] = [];
  entries.forEach((entry, index) => {
    const at = `${where}.notify[${index}]`;
    const isObject = entry !== null && typeof entry === 'object' && !Array.isArray(entry);
    if (typeof entry !== 'string' && !isObject)
      throw new ContractError(`${at} must be a notifier's name or { notifier, on } (given: ${JSON.stringify(entry)})`);
    const fields = (typeof entry === 'string' ? { notifier: entry } : entry) as Record<string, unknown>;
    const unknown = Object.keys(fields).find((field) => field !== 'notifier' && field !== 'on');
    if (unknown !== undefined) throw new ContractError(`${at}.${unknown} is not a known field (known: notifier, on)`);
    const name = fields.notifier;
    const nameAt = typeof entry === 'string' ? at : `${at}.notifier`;
    if (typeof name !== 'string' || name === '') throw new ContractError(`${nameAt} must be a notifier's name (given: ${JSON.stringify(name)})`);
    if (notifiers && !notifiers.has(name)) {
      const known =
        notifiers.size > 0 ? `known: ${[...notifiers].join(', ')}` : 'none is configured: pass createAsyncFirst({ notifiers }) or set NOTIFY_SLACK_URL';
      throw new ContractError(`${nameAt} names the notifier "${name}", which this service does not have (${known})`);
    }
    if (routes.some((route) => route.notifier === name)) throw new ContractError(`${nameAt} names "${name}" again; give it once, with every ending in on`);
    const on = fields.on ?? [...NOTIFY_EVENTS];
    if (!Array.isArray(on) || on.length === 0)
      throw new ContractError(`${at}.on must be a non-empty list of ${NOTIFY_EVENTS.join(', ')} (given: ${JSON.stringify(on)})`);
    on.forEach((event, position) => {
      if (!(NOTIFY_EVENTS as readonly unknown[]).includes(event))
        throw new ContractError(`${at}.on[${position}] must be one of ${NOTIFY_EVENTS.join(', ')} (given: ${JSON.stringify(event)})`);
    });
    routes.push({ notifier: name, on: new Set(on as string[]) });
  });
  return routes;
}

/** The policy fields of an operation's options in code (its hooks are not policy). */
function policyFieldsOf(options: object): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const name of KNOWN_FIELDS) {
    const value = (options as Record<string, unknown>)[name];
    if (value !== undefined) fields[name] = value;
  }
  return fields;
}

/** A policy checked against the schema; `where` names it in the error (e.g. "…: x-asyncfirst"). */
function checkedFields(value: unknown, where: string): JobPolicyFields {
  if (value === undefined) return {};
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
    const known = field === 'backoff' ? 'base, max' : field === 'rateLimit' ? 'max, per' : field === 'retention' ? 'jobs, keys' : KNOWN_FIELDS.join(', ');
    return `${at}.${unknown} is not a known field (known: ${known})`;
  }
  if (error.keyword === 'minProperties') return field === 'retention' ? `${at} must give jobs or keys (seconds)` : `${at} must give base or max (seconds)`;
  if (error.keyword === 'required')
    return `${at} must give ${(error.params as { missingProperty: string }).missingProperty} (rateLimit is { max: starts, per: seconds })`;
  return `${at} ${error.message ?? 'is not valid'} (given: ${JSON.stringify(error.data)})`;
}
