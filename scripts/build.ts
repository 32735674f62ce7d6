/**
 * npm run build (and prepack): compiles src/ to dist/ (JavaScript, declarations, source maps) and
 * copies what the compiled code reads from disk at run time beside it: the PostgreSQL migrations.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');

rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
// Read with readFileSync next to migrate.js (new URL('./migrations/', import.meta.url)).
cpSync('src/store/postgres/migrations', 'dist/store/postgres/migrations', { recursive: true, filter: (path) => !path.endsWith('~') });
console.error('built dist/');
