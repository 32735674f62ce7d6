import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createConfig, getLineColLocation, lintFromString, type NormalizedProblem } from '@redocly/openapi-core';
import { DEFAULT_CONFIG } from '../config.js';
import { ContractError, loadContract, type OpenApiDocument, readContractFile } from '../contract/load.js';
import { describeOperations } from '../contract/operations.js';
import { settlePolicies } from '../contract/policies.js';
import { buildServedDocument } from '../contract/served-document.js';

/** One finding of `asyncfirst check`, with its place in the contract. */
export interface ContractProblem {
  severity: 'error' | 'warn';
  /** file:line:column, or the file and a JSON pointer. */
  place: string;
  rule: string;
  message: string;
}

/**
 * Checks a contract as asyncfirst would serve it (OpenAPI 3.0/3.1 validity, every operation
 * servable) and lints it with Redocly's recommended rules.
 */
export async function checkContract(contract: string, options: { served?: boolean } = {}): Promise<ContractProblem[]> {
  const document = await readContractFile(contract);
  let served: OpenApiDocument;
  try {
    const loaded = await loadContract(document, contract);
    const operations = describeOperations(loaded);
    // The x-asyncfirst policies, as a start checks them (code's options aside).
    settlePolicies(operations, () => undefined, DEFAULT_CONFIG, contract);
    served = buildServedDocument(loaded.document, operations);
  } catch (error) {
    if (error instanceof ContractError) return [{ severity: 'error', place: contract, rule: 'asyncfirst', message: error.message }];
    throw error;
  }
  // --served: the document as served at /openapi.json (places are lines of its JSON form).
  const source = options.served ? `${JSON.stringify(served, null, 2)}\n` : await readFile(contract, 'utf8');
  const name = options.served ? `${contract} (served)` : contract;
  // A document without servers is served relative to where it is fetched (OpenAPI's default server
  // is "/"), which is how asyncfirst serves it: worth a warning, not an error.
  const config = await createConfig({ extends: ['recommended'], rules: { 'no-empty-servers': 'warn' } });
  const problems = await lintFromString({ source, absoluteRef: resolve(contract), config });
  return problems.map((problem) => toContractProblem(problem, name));
}

function toContractProblem(problem: NormalizedProblem, contract: string): ContractProblem {
  const location = problem.location[0];
  let place = contract;
  if (location) {
    const lineCol = getLineColLocation(location);
    place = `${contract}:${lineCol.start.line}:${lineCol.start.col}`;
  }
  return { severity: problem.severity === 'error' ? 'error' : 'warn', place, rule: problem.ruleId, message: problem.message };
}
