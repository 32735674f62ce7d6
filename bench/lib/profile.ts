import { readFileSync } from 'node:fs';
import { REPO_ROOT } from './shared.js';

/** The parts of a V8 .cpuprofile the summary reads. */
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  /** Share of all sampled time, 0..100. */
  percent: number;
  ms: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time by function (name and place). */
  functions: ProfileEntry[];
  /** Self time by where the code lives: a package, asyncfirst's src/, node internals, native/GC. */
  modules: ProfileEntry[];
  /** The busiest frames, split by their two nearest callers. */
  busiestWithCallers: ProfileEntry[];
  /** Inclusive time (self + callees) of asyncfirst's own functions (src/). */
  srcInclusive: ProfileEntry[];
  /**
   * Self time of better-sqlite3's native statement calls (run, get, all, …), by the nearest
   * named JavaScript caller: `sqliteTransaction` is the BEGIN and COMMIT (with its WAL writes,
   * fsync and checkpoints) of a group; the store's named write closures are its statements.
   */
  sqliteByCaller: ProfileEntry[];
}

const STATEMENT_METHODS = new Set(['run', 'get', 'all', 'iterate', 'exec', 'pragma']);

function isStoreCode(url: string): boolean {
  return url.includes('/node_modules/better-sqlite3/') || (url.includes('/src/store/') && !url.includes('/node_modules/'));
}

/** A path relative to this repository or to a baseline's worktree (bench/lib/baseline.ts), else undefined. */
function checkoutRelative(path: string): string | undefined {
  if (path.startsWith(REPO_ROOT)) return path.slice(REPO_ROOT.length);
  const worktree = /\/asyncfirst-bench-\d+-[^/]+\/baseline\//.exec(path);
  return worktree ? path.slice(worktree.index + worktree[0].length) : undefined;
}

function place(url: string): string {
  if (url === '') return '(native, GC, idle)';
  if (url.startsWith('node:')) return 'node internals';
  const path = url.replace(/^file:\/\//, '');
  const nodeModules = path.lastIndexOf('/node_modules/');
  if (nodeModules >= 0) {
    const rest = path.slice(nodeModules + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? path);
  }
  const relative = checkoutRelative(path);
  if (relative !== undefined) {
    const [top, second] = relative.split('/');
    return top === 'src' && second && !second.endsWith('.ts') && !second.endsWith('.js') ? `src/${second}/` : relative;
  }
  return path;
}

/** A readable file name: relative to the repository, or package-relative inside node_modules. */
function fileOf(url: string): string {
  if (url.startsWith('node:')) return url;
  const path = url.replace(/^file:\/\//, '');
  const nodeModules = path.lastIndexOf('/node_modules/');
  if (nodeModules >= 0) return path.slice(nodeModules + '/node_modules/'.length);
  return checkoutRelative(path) ?? path;
}

/** "name — file:line" (no line for tsx-compiled sources, which are whitespace-minified to one line). */
function frameLabel(frame: CpuProfile['nodes'][number]['callFrame']): string {
  const name = frame.functionName || '(anonymous)';
  if (frame.url === '') return name.startsWith('(') ? name : `${name} (native)`;
  return frame.lineNumber > 0 ? `${name} — ${fileOf(frame.url)}:${frame.lineNumber + 1}` : `${name} — ${fileOf(frame.url)}`;
}

/** Self time per function and per module of a V8 CPU profile, and the callers of the busiest frames. */
export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  // Samples inside node:inspector are the profiler stopping itself, not the server's work.
  const profilerOwn = new Map<number, boolean>();
  const isProfilerOwn = (id: number): boolean => {
    const known = profilerOwn.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id);
    const up = parent.get(id);
    const own = node?.callFrame.url === 'node:inspector' || (up !== undefined && isProfilerOwn(up));
    profilerOwn.set(id, own);
    return own;
  };
  const self = new Map<number, number>();
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    if (isProfilerOwn(id)) return;
    const delta = profile.timeDeltas[index] ?? 0;
    self.set(id, (self.get(id) ?? 0) + delta);
    totalUs += delta;
  });

  const functions = new Map<string, number>();
  const modules = new Map<string, number>();
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const label = frameLabel(node.callFrame);
    functions.set(label, (functions.get(label) ?? 0) + us);
    const module = node.callFrame.url === '' ? label : place(node.callFrame.url);
    modules.set(module, (modules.get(module) ?? 0) + us);
  }

  // The busiest frames with their two nearest callers (native frames such as better-sqlite3's
  // run() say little without knowing which statement called them).
  const busiest = new Set(
    [...functions.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([label]) => label),
  );
  const withCallers = new Map<string, number>();
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (!node || !busiest.has(frameLabel(node.callFrame))) continue;
    const chain = [frameLabel(node.callFrame)];
    for (let current = parent.get(id), depth = 0; current !== undefined && depth < 2; current = parent.get(current), depth++) {
      const caller = byId.get(current);
      if (caller) chain.push(frameLabel(caller.callFrame));
    }
    const label = chain.join(' ← ');
    withCallers.set(label, (withCallers.get(label) ?? 0) + us);
  }

  // Inclusive time of src/ functions: each sample counts once for every distinct src/ frame on its stack.
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const node = byId.get(current);
      if (!node?.callFrame.url.includes('/src/') || node.callFrame.url.includes('/node_modules/')) continue;
      const label = frameLabel(node.callFrame);
      if (!seen.has(label)) {
        seen.add(label);
        inclusive.set(label, (inclusive.get(label) ?? 0) + us);
      }
    }
  }
  const sqlite = new Map<string, number>();
  for (const [id, us] of self) {
    const node = byId.get(id);
    if (node?.callFrame.url !== '' || !STATEMENT_METHODS.has(node.callFrame.functionName)) continue;
    // Only better-sqlite3's methods: called from better-sqlite3 itself or from the store (not, say, node:crypto's `run`).
    const direct = byId.get(parent.get(id) ?? -1)?.callFrame;
    if (!direct || !isStoreCode(direct.url)) continue;
    let caller = '(no named caller)';
    if (direct.functionName === 'sqliteTransaction') caller = 'BEGIN/COMMIT of a group (sqliteTransaction)';
    else
      for (let current = parent.get(id); current !== undefined; current = parent.get(current)) {
        const frame = byId.get(current)?.callFrame;
        if (frame?.functionName) {
          caller = frameLabel(frame);
          break;
        }
      }
    const label = `${node.callFrame.functionName} ← ${caller}`;
    sqlite.set(label, (sqlite.get(label) ?? 0) + us);
  }
  const ranked = (map: Map<string, number>, count = top) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, us]) => ({ name, ms: us / 1000, percent: totalUs ? (100 * us) / totalUs : 0 }));
  return {
    totalMs: totalUs / 1000,
    functions: ranked(functions),
    modules: ranked(modules),
    busiestWithCallers: ranked(withCallers, 12),
    srcInclusive: ranked(inclusive),
    sqliteByCaller: ranked(sqlite, 12),
  };
}
