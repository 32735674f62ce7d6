import { readFile } from 'node:fs/promises';
import { Validator } from '@seriousme/openapi-schema-validator';
import { type Document, OpenAPIBackend } from 'openapi-backend';
import { parse as parseYaml, YAMLParseError } from 'yaml';

/** A contract that cannot be served; the message names the place in the document. */
export class ContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContractError';
  }
}

export type OpenApiDocument = Record<string, unknown> & { openapi: string; paths?: Record<string, Record<string, unknown>> };

/** A checked contract: the document as written and the same document with every $ref resolved. */
export interface LoadedContract {
  /** The parsed document, $refs intact (what the served document is built from). */
  document: OpenApiDocument;
  /** The dereferenced document (what routes and validators are built from). */
  dereferenced: OpenApiDocument;
  /** openapi-backend's index of the operations, each with path-level parameters merged in. */
  backend: OpenAPIBackend;
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

// openapi-backend checks documents against the OpenAPI 3.0 schema only; ours are checked
// against 3.0 or 3.1 by @seriousme/openapi-schema-validator before it sees them.
class CheckedBackend extends OpenAPIBackend {
  override validateDefinition() {
    return this.document;
  }
}

/** Reads a contract from a YAML or JSON file. */
export async function readContractFile(path: string): Promise<OpenApiDocument> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ContractError(`cannot read the contract ${path}: ${(error as Error).message}`);
  }
  try {
    const parsed: unknown = parseYaml(text, { prettyErrors: true });
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ContractError(`${path}: the contract is not an object`);
    }
    return parsed as OpenApiDocument;
  } catch (error) {
    if (error instanceof YAMLParseError) throw new ContractError(`${path}: ${error.message}`);
    throw error;
  }
}

/** Checks a parsed document (OpenAPI 3.0 or 3.1), resolves its $refs and indexes its operations. */
export async function loadContract(input: OpenApiDocument, source = 'the contract'): Promise<LoadedContract> {
  const document = structuredClone(input);
  const validator = new Validator({ strict: false });
  const { valid, errors } = await validator.validate(document);
  if (!valid) {
    const list = typeof errors === 'string' ? [errors] : (errors ?? []).slice(0, 10).map((e) => `at ${e.instancePath || '/'}: ${e.message ?? e.keyword}`);
    throw new ContractError(`${source} is not a valid OpenAPI ${String(document.openapi)} document:\n  ${list.join('\n  ')}`);
  }
  checkOperationIds(document, source);

  const backend = new CheckedBackend({ definition: structuredClone(document) as unknown as Document, strict: true, validate: false });
  try {
    await backend.init();
  } catch (error) {
    throw new ContractError(`${source}: ${(error as Error).message}`);
  }
  return { document, dereferenced: backend.definition as unknown as OpenApiDocument, backend };
}

function checkOperationIds(document: OpenApiDocument, source: string): void {
  const seen = new Map<string, string>();
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const method of HTTP_METHODS) {
      const operation = item[method] as { operationId?: unknown } | undefined;
      if (!operation) continue;
      const place = `paths["${path}"].${method}`;
      if (typeof operation.operationId !== 'string' || operation.operationId === '') {
        throw new ContractError(`${source}: the operation at ${place} has no operationId`);
      }
      const earlier = seen.get(operation.operationId);
      if (earlier) throw new ContractError(`${source}: operationId "${operation.operationId}" is used at ${earlier} and at ${place}`);
      seen.set(operation.operationId, place);
    }
  }
}
