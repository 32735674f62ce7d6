/**
 * npm run build (and prepack): compiles src/ to dist/ (JavaScript, declarations, source maps) and
 * copies beside the compiled code every other file under src/ that it reads from disk at run time
 * (new URL('./…', import.meta.url)): the PostgreSQL migrations, the dashboard's assets.
 * --out <dir> builds elsewhere (the CLI tests build a copy of their own).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { sep } from 'node:path';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const outFlag = process.argv.indexOf('--out');
const out = outFlag === -1 ? 'dist' : process.argv[outFlag + 1];
if (!out) throw new Error('--out needs a folder');

rmSync(out, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', out], { stdio: 'inherit' });
cpSync('src', out, {
  recursive: true,
  // Folders are walked; files other than TypeScript sources are copied (the demo is not shipped).
  filter: (path) => !path.endsWith('.ts') && !path.endsWith('~') && !path.split(sep).includes('demo'),
});
console.error(`built ${out}/`);
