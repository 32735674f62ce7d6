import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AsyncFirstOptions } from '../app.js';
import { CliError } from './errors.js';

type OptionsExport = AsyncFirstOptions<object> | (() => AsyncFirstOptions<object> | Promise<AsyncFirstOptions<object>>);

/**
 * A user's service module, for `asyncfirst serve|worker <module>`: its `options` export, or its
 * default export — the asyncfirst options (contract and handlers), or a function that makes them.
 */
export async function loadServiceModule(module: string): Promise<OptionsExport> {
  const path = resolve(module);
  if (!existsSync(path)) throw new CliError(`cannot find the service module ${module}`);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    throw new CliError(`cannot load ${module}: ${(error as Error).message}`);
  }
  const candidate = exports.options ?? exports.default;
  if (typeof candidate === 'function') return candidate as OptionsExport;
  if (candidate !== null && typeof candidate === 'object' && 'contract' in candidate && 'handlers' in candidate) return candidate as AsyncFirstOptions<object>;
  throw new CliError(
    `${module} exports no asyncfirst options: export const options = { contract, handlers } (or a default export, or a function returning them)`,
  );
}
