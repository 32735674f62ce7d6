import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './shared.js';

/*
 * --baseline=<commit>: that commit checked out into a temporary git worktree, detached, whose
 * node_modules is a link to this repository's (nothing is installed), so that its asyncfirst
 * acceptance server and drain child can run in turns with the current ones. The worktree is
 * removed when the run ends, however it ends; a worktree a killed run left behind is removed by
 * the next run that asks for a baseline.
 */

export interface Baseline {
  /** The commit as given, and as resolved. */
  requested: string;
  commit: string;
  short: string;
  /** Its subject line. */
  subject: string;
  /** The worktree's folder. */
  root: string;
}

/** The children the baseline must have, in the protocol this harness speaks. */
const BASELINE_ENTRIES = ['bench/servers/asyncfirst.ts', 'bench/drain/asyncfirst.ts', 'bench/lib/child-side.ts'];

function git(args: string[]): string {
  return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Removes the registrations of benchmark worktrees whose folder is gone (a run killed by SIGKILL). */
function removeStaleWorktrees(): void {
  const listing = git(['worktree', 'list', '--porcelain']);
  for (const line of listing.split('\n')) {
    const path = line.startsWith('worktree ') ? line.slice('worktree '.length) : undefined;
    if (!path || !/asyncfirst-bench-\d+-[^/]+\/baseline$/.test(path) || existsSync(path)) continue;
    try {
      git(['worktree', 'remove', '--force', path]);
    } catch {
      // already unregistered
    }
  }
}

/** Checks `commit` out into `<tmpRoot>/baseline`; throws, saying why, when it cannot serve as a baseline. */
export function addBaseline(requested: string, tmpRoot: string): Baseline {
  removeStaleWorktrees();
  let commit: string;
  try {
    commit = git(['rev-parse', '--verify', '--quiet', `${requested}^{commit}`]);
  } catch {
    throw new Error(`--baseline=${requested} names no commit of this repository (a shallow clone may lack it)`);
  }
  const root = join(tmpRoot, 'baseline');
  git(['worktree', 'add', '--detach', root, commit]);
  const baseline: Baseline = {
    requested,
    commit,
    short: commit.slice(0, 7),
    subject: git(['log', '-1', '--format=%s', commit]),
    root,
  };
  try {
    const missing = BASELINE_ENTRIES.filter((entry) => !existsSync(join(root, entry)));
    if (missing.length) throw new Error(`the baseline ${baseline.short} has no ${missing.join(', ')}: its benchmark children cannot run under this harness`);
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  } catch (error) {
    removeBaseline(baseline);
    throw error;
  }
  return baseline;
}

/** Removes the worktree (synchronously: also called from an 'exit' handler). */
export function removeBaseline(baseline: Baseline): void {
  // The link first, by itself: nothing below may reach through it into this repository's node_modules.
  const link = join(baseline.root, 'node_modules');
  try {
    if (lstatSync(link).isSymbolicLink()) unlinkSync(link);
  } catch {
    // never made
  }
  try {
    git(['worktree', 'remove', '--force', baseline.root]);
  } catch {
    // already gone; the registration is removed by the next run's removeStaleWorktrees
  }
}
