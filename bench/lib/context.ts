import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Baseline } from './baseline.js';

/** What every part of the run gets. */
export interface BenchContext {
  quick: boolean;
  /** Folder for every database file and probe of this run (removed at the end). */
  tmpRoot: string;
  /** Why a peer, or asyncfirst on PostgreSQL, cannot run here (undefined: it can). */
  skip: { bullmq?: string; pgboss?: string; postgres?: string };
  /** The commit asyncfirst is compared with on SQLite (--baseline), checked out in a worktree. */
  baseline?: Baseline;
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
