import type { LoadedContract } from './load.js';
import { ContractError } from './load.js';

export type JsonSchema = Record<string, unknown>;

/** A named parameter of one location (path, query or header) with its schema. */
export interface ParameterSpec {
  name: string;
  required: boolean;
  schema: JsonSchema;
}

/** One alternative of an operation's security: every named scheme must accept the request. */
export type SecurityRequirement = string[];

/** Everything the HTTP layer and the worker need to know about one operation of the contract. */
export interface OperationSpec {
  operationId: string;
  method: string;
  /** The OpenAPI path template, e.g. /reports/{id}. */
  path: string;
  /** The same path in Fastify's syntax, e.g. /reports/:id. */
  routeUrl: string;
  /** True when the operation declares a 202 response: it is accepted as a job. */
  async: boolean;
  parameters: { path: ParameterSpec[]; query: ParameterSpec[]; header: ParameterSpec[] };
  body?: { required: boolean; mediaTypes: string[]; schema?: JsonSchema };
  /** The 200/201 response schema: a synchronous handler's body, or an asynchronous job's result. */
  result?: { status: number; schema?: JsonSchema };
  /** Alternatives; an empty list means anyone, including the anonymous principal. */
  security: SecurityRequirement[];
  anonymousAllowed: boolean;
  /** The operation's `x-asyncfirst` extension as written (its job policy), unchecked; see policies.ts. */
  policy?: unknown;
}

interface RawParameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: JsonSchema;
}

interface RawOperation {
  operationId: string;
  method: string;
  path: string;
  parameters?: RawParameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, { content?: Record<string, { schema?: JsonSchema }> }>;
  security?: Record<string, string[]>[];
  'x-asyncfirst'?: unknown;
}

/** Framework-owned request headers that an operation must not redefine. */
const RESERVED_HEADERS = new Set(['idempotency-key']);

/** Builds the operation index from a loaded contract. */
export function describeOperations(contract: LoadedContract): OperationSpec[] {
  const globalSecurity = (contract.dereferenced.security as Record<string, string[]>[] | undefined) ?? [];
  return contract.backend.getOperations().map((raw) => describeOperation(raw as unknown as RawOperation, globalSecurity));
}

function describeOperation(raw: RawOperation, globalSecurity: Record<string, string[]>[]): OperationSpec {
  const place = `${raw.method.toUpperCase()} ${raw.path} (${raw.operationId})`;
  const parameters: OperationSpec['parameters'] = { path: [], query: [], header: [] };
  // Later entries win, so an operation's parameter overrides the path item's one of the same name.
  const byKey = new Map<string, RawParameter>();
  for (const parameter of raw.parameters ?? []) byKey.set(`${parameter.in}:${parameter.name}`, parameter);
  for (const parameter of byKey.values()) {
    if (parameter.in === 'cookie') continue;
    if (parameter.in !== 'path' && parameter.in !== 'query' && parameter.in !== 'header') {
      throw new ContractError(`${place}: parameter "${parameter.name}" is in "${parameter.in}", which is not supported`);
    }
    if (parameter.in === 'header' && RESERVED_HEADERS.has(parameter.name.toLowerCase())) continue;
    parameters[parameter.in].push({
      name: parameter.in === 'header' ? parameter.name.toLowerCase() : parameter.name,
      required: parameter.in === 'path' ? true : parameter.required === true,
      schema: parameter.schema ?? {},
    });
  }

  let body: OperationSpec['body'];
  if (raw.requestBody?.content) {
    const mediaTypes = Object.keys(raw.requestBody.content).map((type) => type.toLowerCase());
    const json = Object.entries(raw.requestBody.content).find(([type]) => isJsonMediaType(type));
    if (!json) throw new ContractError(`${place}: asyncfirst reads JSON request bodies only; declared ${mediaTypes.join(', ')}`);
    body = { required: raw.requestBody.required === true, mediaTypes, schema: json[1].schema };
  }

  const responses = raw.responses ?? {};
  const resultStatus = ['200', '201'].find((status) => status in responses);
  let result: OperationSpec['result'];
  if (resultStatus) {
    const content = responses[resultStatus]?.content ?? {};
    const json = Object.entries(content).find(([type]) => isJsonMediaType(type));
    result = { status: Number(resultStatus), schema: json?.[1].schema };
  }

  const security = (raw.security ?? globalSecurity).map((requirement) => Object.keys(requirement));
  return {
    operationId: raw.operationId,
    method: raw.method.toUpperCase(),
    path: raw.path,
    routeUrl: raw.path.replace(/\{([^}]+)\}/g, ':$1'),
    async: '202' in responses,
    parameters,
    body,
    result,
    security: security.filter((requirement) => requirement.length > 0),
    anonymousAllowed: security.length === 0 || security.some((requirement) => requirement.length === 0),
    ...(raw['x-asyncfirst'] === undefined ? {} : { policy: raw['x-asyncfirst'] }),
  };
}

/** application/json and any +json type. */
export function isJsonMediaType(mediaType: string): boolean {
  const type = mediaType.split(';', 1)[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}
