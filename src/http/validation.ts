import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import fastJson from 'fast-json-stringify';
import type { FastifySchemaCompiler } from 'fastify';
import type { JsonSchema } from '../contract/operations.js';
import type { ProblemViolation } from '../core/problems.js';

// ajv-formats ships CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/** JSON Schema validators for one contract: OpenAPI 3.1 schemas are draft 2020-12, 3.0 schemas draft-04-like. */
export class ContractValidators {
  /** Bodies and job results: no type coercion, so "5" is not a number. */
  private readonly strict: Ajv;
  /** Path, query and header values arrive as strings and are coerced to their declared types. */
  private readonly coercing: Ajv;

  constructor(openapiVersion: string) {
    const options: Options = { strict: false, allErrors: true, useDefaults: true, removeAdditional: false, validateFormats: true };
    const AjvClass = openapiVersion.startsWith('3.1') ? Ajv2020 : Ajv;
    this.strict = addFormats(new AjvClass({ ...options, coerceTypes: false }));
    this.coercing = addFormats(new AjvClass({ ...options, coerceTypes: 'array' }));
  }

  /** Fastify's validator compiler: each route part is compiled once, at start. */
  readonly compiler: FastifySchemaCompiler<JsonSchema> = ({ schema, httpPart }) => (httpPart === 'body' ? this.strict : this.coercing).compile(schema);

  /** A checker for one part of a submission made from code (app.enqueue): its violations, none when it passes. */
  requestChecker(schema: JsonSchema, part: ProblemViolation['in']): (value: unknown) => ProblemViolation[] {
    const validate: ValidateFunction = (part === 'body' ? this.strict : this.coercing).compile(schema);
    return (value) => (validate(value) ? [] : toViolations(validate.errors ?? [], part));
  }

  /**
   * The writer of one operation's results (a synchronous body or a job's result): checks a result
   * against the 200/201 schema, then serializes it from the schema as Fastify's response
   * serialization does, so a property the schema does not declare is dropped, never sent.
   */
  resultWriter(schema: JsonSchema | undefined): (value: unknown) => WrittenResult {
    if (!schema) return (value) => ({ json: JSON.stringify(value ?? null) });
    const validate: ValidateFunction = this.strict.compile(schema);
    const serialize = fastJson(freeFormObjectsKept(schema));
    return (value) => {
      if (!validate(value)) {
        return {
          violations: toViolations(validate.errors ?? [], 'body')
            .map((violation) => `${violation.pointer || '/'} ${violation.message}`)
            .join('; '),
        };
      }
      return { json: serialize(value) as string };
    };
  }
}

/**
 * The schema for serialization: an object schema that declares no properties at all (`type:
 * object` alone, a free-form object) allows any, as JSON Schema reads it — fast-json-stringify, like
 * Fastify, would otherwise write it as {}. Copies; the contract's schema is left as it is.
 */
function freeFormObjectsKept(schema: JsonSchema): JsonSchema {
  const copies = new Map<object, unknown>();
  const copy = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const done = copies.get(value);
    if (done !== undefined) return done;
    if (Array.isArray(value)) {
      const items: unknown[] = [];
      copies.set(value, items);
      for (const item of value) items.push(copy(item));
      return items;
    }
    const result: Record<string, unknown> = {};
    copies.set(value, result);
    for (const [key, member] of Object.entries(value)) result[key] = copy(member);
    const types = Array.isArray(result.type) ? result.type : [result.type];
    const shaped = ['properties', 'patternProperties', 'additionalProperties', 'allOf', 'anyOf', 'oneOf', 'if', '$ref'].some((keyword) => keyword in result);
    if (types.includes('object') && !shaped) result.additionalProperties = true;
    return result;
  };
  return copy(schema) as JsonSchema;
}

/** A result as it is sent and stored (the JSON of what the schema declares), or why it does not match. */
export type WrittenResult = { json: string; violations?: undefined } | { json?: undefined; violations: string };

const PART: Record<string, ProblemViolation['in']> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

/** The request part that Fastify names in a validation error's context. */
export function requestPart(validationContext: string | undefined): ProblemViolation['in'] {
  return PART[validationContext ?? 'body'] ?? 'body';
}

/** Turns ajv errors into problem-details violations: a JSON Pointer and a message each. */
export function toViolations(errors: ErrorObject[], part: ProblemViolation['in']): ProblemViolation[] {
  return errors.slice(0, 50).map((error) => {
    let pointer = error.instancePath;
    let message = error.message ?? error.keyword;
    const params = error.params as Record<string, unknown>;
    if (error.keyword === 'required') {
      pointer += `/${escapePointer(String(params.missingProperty))}`;
      message = 'is required';
    } else if (error.keyword === 'additionalProperties') {
      pointer += `/${escapePointer(String(params.additionalProperty))}`;
      message = 'is not allowed';
    } else if (error.keyword === 'enum') {
      message = `must be one of ${(params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(', ')}`;
    }
    return { in: part, pointer, message };
  });
}

function escapePointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}
