/**
 * npm run generate: writes generated/openapi.json (the document as served, framework endpoints
 * merged in) and generated/api.ts (its TypeScript types, by openapi-typescript), as
 * `asyncfirst generate` does for a user's contract.
 * npm run generate -- --check: exits 1 when generated/ is stale against the contract.
 */
import { generate } from '../src/cli/generate.js';

const contract = process.env.CONTRACT ?? 'openapi.yaml';
const out = process.env.GENERATED_DIR ?? 'generated';
const check = process.argv.includes('--check');

const { changed } = await generate({ contract, out, check, command: 'npm run generate' });
for (const path of changed) console[check ? 'error' : 'log'](check ? `${path} is stale: run npm run generate and commit the result` : `wrote ${path}`);
if (check && changed.length > 0) process.exit(1);
