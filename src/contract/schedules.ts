import { Cron } from 'croner';
import type { ContractValidators } from '../http/validation.js';
import { ContractError } from './load.js';
import type { OperationSpec } from './operations.js';

/*
 * Recurring schedules: declared in the contract (the document's `x-asyncfirst-schedules` list) or
 * in code (createAsyncFirst's `schedules`), each a cron expression with seconds in a time zone that
 * submits one job of an asynchronous operation per tick, with a fixed request body. A schedule
 * that cannot run stops the start with a message naming it and its field.
 */

/** The document-level extension's name. */
export const SCHEDULES_EXTENSION = 'x-asyncfirst-schedules';

/** A schedule as the contract (or code) writes it. */
export interface ScheduleDefinition {
  /** Unique among the schedules: letters, digits, `.`, `_`, `-` (it is part of each tick's idempotency key). */
  name: string;
  /** The asynchronous operation each tick submits a job of. */
  operationId: string;
  /** Six fields, seconds first: `*\/10 * * * * *` is every ten seconds, `0 0 3 * * *` 03:00 every day. */
  cron: string;
  /** An IANA time zone the cron is read in (default UTC). */
  timezone?: string;
  /** The request body of each tick's job, checked against the operation's request body schema at start. */
  input?: unknown;
  /**
   * How late a tick may still run, in seconds or an ISO 8601 duration (PT1H): after downtime the
   * missed ticks inside the window run once each, older ones are skipped (default 0: only ticks at
   * most MIN_WINDOW_MS late, as a busy timer is).
   */
  backfill?: number | string;
  /** The principal the jobs belong to (default "anonymous"). */
  principal?: string;
}

/** A schedule checked and settled. */
export interface Schedule {
  name: string;
  operationId: string;
  cron: string;
  timezone: string;
  /** The body each tick's job is submitted with (undefined: none). */
  body: unknown;
  /** Ticks later than this (milliseconds) are skipped. */
  windowMs: number;
  principal: string;
}

/** A tick taken up to this late always runs: timers on a busy machine fire late. */
export const MIN_WINDOW_MS = 2000;
const NAME = /^[A-Za-z0-9._-]{1,100}$/;
const KNOWN_FIELDS = ['name', 'operationId', 'cron', 'timezone', 'input', 'backfill', 'principal'];
/** PnDTnHnMnS (weeks too): what `backfill` may say besides plain seconds. */
const ISO_DURATION = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** The croner job of a schedule's cron and time zone, never started: it only computes run times. */
export function cronOf(cron: string, timezone: string): Cron {
  return new Cron(cron, { timezone, paused: true, mode: '6-part' });
}

/**
 * The schedules of the contract and of code (a name in both: code's wins), each checked: its
 * operation exists and is asynchronous and takes no required parameters, its cron and time zone
 * parse, its input matches the operation's request body schema.
 */
export function settleSchedules(
  declared: unknown,
  inCode: readonly ScheduleDefinition[] | undefined,
  operations: OperationSpec[],
  validators: ContractValidators,
  source: string,
): Schedule[] {
  if (declared !== undefined && !Array.isArray(declared)) throw new ContractError(`${source}: ${SCHEDULES_EXTENSION} must be a list of schedules`);
  const byName = new Map<string, Schedule>();
  const settle = (entries: readonly unknown[], where: string) => {
    const seen = new Set<string>();
    entries.forEach((entry, index) => {
      const schedule = settleSchedule(entry, `${where}[${index}]`, operations, validators);
      if (seen.has(schedule.name))
        throw new ContractError(`${where}[${index}].name: "${schedule.name}" is the name of an earlier schedule; names must be unique`);
      seen.add(schedule.name);
      byName.set(schedule.name, schedule);
    });
  };
  settle((declared as unknown[] | undefined) ?? [], `${source}: ${SCHEDULES_EXTENSION}`);
  settle(inCode ?? [], 'schedules');
  return [...byName.values()];
}

function settleSchedule(entry: unknown, where: string, operations: OperationSpec[], validators: ContractValidators): Schedule {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new ContractError(`${where} must be an object (name, operationId, cron, …)`);
  const fields = entry as Record<string, unknown>;
  const unknown = Object.keys(fields).find((field) => !KNOWN_FIELDS.includes(field));
  if (unknown) throw new ContractError(`${where}.${unknown} is not a known field (known: ${KNOWN_FIELDS.join(', ')})`);
  const name = fields.name;
  if (typeof name !== 'string' || !NAME.test(name))
    throw new ContractError(`${where}.name must be 1 to 100 letters, digits, ".", "_" or "-" (given: ${JSON.stringify(name)})`);
  const place = `${where} (${name})`;
  const operationId = fields.operationId;
  const operation = operations.find((candidate) => candidate.operationId === operationId);
  if (typeof operationId !== 'string' || !operation)
    throw new ContractError(`${place}.operationId: no operation has the operationId ${JSON.stringify(operationId)}`);
  if (!operation.async)
    throw new ContractError(`${place}.operationId: ${operationId} is synchronous; a schedule submits jobs of asynchronous operations (those answering 202)`);
  const required = [...operation.parameters.path, ...operation.parameters.query, ...operation.parameters.header].find((parameter) => parameter.required);
  if (required) throw new ContractError(`${place}.operationId: ${operationId} requires the parameter "${required.name}", and a schedule gives only a body`);
  const timezone = fields.timezone ?? 'UTC';
  if (typeof timezone !== 'string' || !isTimeZone(timezone))
    throw new ContractError(`${place}.timezone: ${JSON.stringify(timezone)} is not an IANA time zone (such as Europe/Paris, or UTC)`);
  const cron = fields.cron;
  if (typeof cron !== 'string' || cron.trim().split(/\s+/).length !== 6)
    throw new ContractError(`${place}.cron must have six fields, seconds first (such as "0 */5 * * * *"); given: ${JSON.stringify(cron)}`);
  try {
    if (cronOf(cron, timezone).nextRun() === null) throw new Error('it never fires');
  } catch (error) {
    throw new ContractError(`${place}.cron: ${JSON.stringify(cron)} is not a cron expression croner reads: ${(error as Error).message}`);
  }
  const body = fields.input;
  if (body === undefined && operation.body?.required) throw new ContractError(`${place}.input is required: ${operationId} requires a request body`);
  if (body !== undefined) {
    if (!operation.body?.schema) throw new ContractError(`${place}.input: ${operationId} declares no JSON request body; remove input`);
    const violations = validators.requestChecker(operation.body.schema, 'body')(structuredClone(body));
    const first = violations[0];
    if (first) throw new ContractError(`${place}.input${first.pointer.replaceAll('/', '.')} ${first.message} (the request body schema of ${operationId})`);
  }
  const principal = fields.principal ?? 'anonymous';
  if (typeof principal !== 'string' || principal === '') throw new ContractError(`${place}.principal must be a non-empty string`);
  return { name, operationId, cron: cron.trim(), timezone, body, windowMs: Math.max(MIN_WINDOW_MS, backfillMs(fields.backfill, place)), principal };
}

/** `backfill` in milliseconds: seconds (a number) or an ISO 8601 duration. */
function backfillMs(value: unknown, place: string): number {
  if (value === undefined) return 0;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.round(value * 1000);
  const match = typeof value === 'string' ? ISO_DURATION.exec(value) : null;
  if (match && value !== 'P' && value !== 'PT') {
    const [weeks, days, hours, minutes, seconds] = match.slice(1).map((part) => Number(part ?? 0)) as [number, number, number, number, number];
    return Math.round(((((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000);
  }
  throw new ContractError(`${place}.backfill must be seconds (a number of at least 0) or an ISO 8601 duration such as PT1H (given: ${JSON.stringify(value)})`);
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
