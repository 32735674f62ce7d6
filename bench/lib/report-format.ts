import type { DrainRow, DrainRun, DrainSystem } from '../parts/drain.js';
import type { HttpRow } from '../parts/http.js';
import type { ProfileRun } from '../parts/profile.js';
import { formatFixed } from './context.js';
import type { BenchResults } from './report.js';

/* Formatting and look-ups shared by the report's modules. */

export const MiB = 2 ** 20;
/** "1.23x" */
export const x = (value: number) => (Number.isFinite(value) ? `${formatFixed(value, 2)}x` : '–');
/** "12 ms" */
export const ms = (value: number, digits = 0) => `${formatFixed(value, digits)} ms`;

/** A Markdown table. */
export function table(header: string[], rows: string[][]): string {
  const escapeCell = (cell: string) => cell.replace(/\|/g, '\\|');
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.map(escapeCell).join(' | ')} |`)].join('\n');
}

/** An acceptance row that was measured (not skipped, at least one run). */
export function httpRow(results: BenchResults, target: HttpRow['target']): HttpRow | undefined {
  const row = results.http?.rows.find((candidate) => candidate.target === target);
  return row && !row.skipped && row.runs.length > 0 ? row : undefined;
}

/** A drain row. */
export function drainRow(results: BenchResults, system: DrainSystem): DrainRow | undefined {
  return results.drain?.rows.find((row) => row.system === system);
}

/** A drain row's complete run at one setting. */
export function drainRunAt(results: BenchResults, system: DrainSystem, config: string): DrainRun | undefined {
  return drainRow(results, system)?.runs.find((run) => run.config === config && run.drained === run.jobs);
}

/** Share of the profile (0..100) in better-sqlite3 calls whose caller label matches. */
export function sqliteShare(run: ProfileRun | undefined, commit: boolean): number {
  if (!run) return Number.NaN;
  return run.summary.sqliteByCaller.filter((entry) => entry.name.includes('BEGIN/COMMIT') === commit).reduce((sum, entry) => sum + entry.percent, 0);
}

export function functionShare(run: ProfileRun | undefined, name: string): number {
  return run?.summary.functions.find((entry) => entry.name === name)?.percent ?? 0;
}
