import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** What every part of the run gets. */
export interface BenchContext {
  quick: boolean;
  /** Folder for every database file and probe of this run (removed at the end). */
  tmpRoot: string;
  /** Why a peer cannot run here (undefined: it can). */
  skip: { bullmq?: string; pgboss?: string };
  log(line: string): void;
}

/** A fresh folder and database path for one child. */
export function freshDatabase(context: BenchContext, label: string): { dir: string; dbPath: string; cleanup(): void } {
  const dir = mkdtempSync(join(context.tmpRoot, `${label}-`));
  return { dir, dbPath: join(dir, 'jobs.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** "12,345" */
export function formatInt(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? '–' : Math.round(value).toLocaleString('en-US');
}

/** "1.23" */
export function formatFixed(value: number | undefined, digits = 2): string {
  return value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}
