import type { ProfileName, ProfileRun } from '../parts/profile.js';
import { formatFixed, formatInt } from './context.js';
import type { BenchResults, Goal } from './report.js';
import { drainRow, functionShare, httpRow, sqliteShare, table, x } from './report-format.js';
import { median } from './stats.js';

/*
 * "Before and after" on SQLite (--baseline=<commit>): the baseline commit's acceptance server and
 * drain child ran in turns with the current ones; the current code should not be slower.
 */

/** Slower than this share of the baseline counts as a regression (the machine's noise between turns is of this order). */
const TOLERANCE = 0.95;

export function baselineGoals(results: BenchResults): Goal[] {
  const baseline = results.baseline;
  if (!baseline) return [];
  const goals: Goal[] = [];
  const acceptGoal = `SQLite acceptance not slower than at ${baseline.short} (≥ ${TOLERANCE}x req/s)`;
  const after = httpRow(results, 'asyncfirst');
  const before = httpRow(results, 'asyncfirst-baseline');
  if (after && before) {
    // Interference only ever slows a turn down: the best of the rounds is judged beside the medians.
    const medianRatio = after.rps / before.rps;
    const bestRatio = Math.max(...after.runs.map((run) => run.rps)) / Math.max(...before.runs.map((run) => run.rps));
    goals.push(
      judged(
        acceptGoal,
        medianRatio,
        bestRatio,
        `${x(medianRatio)} on medians (${formatInt(after.rps)} vs ${formatInt(before.rps)} req/s), ${x(bestRatio)} on the best of ${after.runs.length} rounds; p99 ${after.p99} vs ${before.p99} ms`,
      ),
    );
  } else goals.push({ goal: acceptGoal, measured: '–', status: 'not measured' });

  const drainGoal = `SQLite drain not slower than at ${baseline.short} (≥ ${TOLERANCE}x jobs/s)`;
  const ours = drainRow(results, 'asyncfirst');
  const theirs = drainRow(results, 'asyncfirst-baseline');
  if (ours?.best && theirs?.best) {
    const pairs = pairedDrains(results);
    const medianRatio = median(pairs.map((pair) => pair.ratio));
    const bestRatio = ours.best.jobsPerSec / theirs.best.jobsPerSec;
    goals.push(
      judged(
        drainGoal,
        medianRatio,
        bestRatio,
        `${x(bestRatio)} best against best (${formatInt(ours.best.jobsPerSec)} at ${ours.best.config} vs ${formatInt(theirs.best.jobsPerSec)} at ${theirs.best.config}); ${x(medianRatio)} the median of the ${pairs.length} settings' ratios`,
      ),
    );
  } else goals.push({ goal: drainGoal, measured: '–', status: 'not measured' });
  return goals;
}

function judged(goal: string, medianRatio: number, bestRatio: number, measured: string): Goal {
  const medianMet = medianRatio >= TOLERANCE;
  const bestMet = bestRatio >= TOLERANCE;
  const status = medianMet && bestMet ? 'met' : medianMet !== bestMet ? 'inconclusive' : 'missed';
  const worst = Math.min(medianRatio, bestRatio);
  return { goal, measured, status, ...(status === 'met' ? {} : { by: `${x(TOLERANCE - worst)} below ${TOLERANCE}x (${medianMet ? 'best' : 'medians'})` }) };
}

/** A bullet for each before-and-after goal this run missed: by how much, and what the run saw of why. */
export function baselineBounds(results: BenchResults, missed: (goal: string) => boolean): string[] {
  const baseline = results.baseline;
  if (!baseline) return [];
  const out: string[] = [];
  const after = httpRow(results, 'asyncfirst');
  const before = httpRow(results, 'asyncfirst-baseline');
  if (after && before && missed(`SQLite acceptance not slower than at ${baseline.short}`)) {
    const rounds = after.runs.map((run, index) => (before.runs[index] ? x(run.rps / (before.runs[index]?.rps ?? Number.NaN)) : '–'));
    out.push(
      `- **SQLite acceptance against ${baseline.short}.** ${formatInt(after.rps)} against ${formatInt(before.rps)} req/s on medians (${x(after.rps / before.rps)}); round by round ${rounds.join(', ')}, the two running next to each other.${profiledPair(results, 'acceptance', 'acceptance-baseline', baseline.short)}`,
    );
  }
  const pairs = pairedDrains(results);
  if (pairs.length && missed(`SQLite drain not slower than at ${baseline.short}`)) {
    const ours = drainRow(results, 'asyncfirst')?.runs ?? [];
    const theirs = drainRow(results, 'asyncfirst-baseline')?.runs ?? [];
    const perJob = (runs: typeof ours, pick: (io: NonNullable<(typeof ours)[number]['io']>) => number) => {
      const values = runs.flatMap((run) => (run.io ? [pick(run.io) / run.jobs] : []));
      return values.length ? median(values) : Number.NaN;
    };
    const bytes = [perJob(ours, (io) => io.writeBytes), perJob(theirs, (io) => io.writeBytes)] as const;
    const calls = [perJob(ours, (io) => io.writeCalls), perJob(theirs, (io) => io.writeCalls)] as const;
    const written =
      Number.isFinite(bytes[0]) && Number.isFinite(bytes[1])
        ? ` Each drain child wrote ${formatInt(bytes[0])} bytes in ${formatFixed(calls[0], 2)} write calls per job (the fill and the drain together, medians over the settings; /proc/self/io), the baseline's ${formatInt(bytes[1])} bytes in ${formatFixed(calls[1], 2)} (${x(bytes[0] / bytes[1])} and ${x(calls[0] / calls[1])}).`
        : '';
    out.push(
      `- **SQLite drain against ${baseline.short}.** After / before at each setting: ${pairs.map((pair) => `${pair.config} ${x(pair.ratio)}`).join(', ')}.${written}${profiledPair(results, 'drain', 'drain-baseline', baseline.short)}`,
    );
  }
  return out;
}

/** The current code's and the baseline's profiles of one path, side by side, and the functions whose share grew most. */
function profiledPair(results: BenchResults, current: ProfileName, before: ProfileName, short: string): string {
  const runs = results.profile?.runs ?? [];
  const ours = runs.find((run) => run.name === current);
  const theirs = runs.find((run) => run.name === before);
  if (!ours || !theirs) return ' The baseline was not profiled in this run.';
  const pct = (value: number) => `${formatFixed(value, 1)}%`;
  const shares = (run: ProfileRun) =>
    `BEGIN/COMMIT of the groups ${pct(sqliteShare(run, true))}, the statements ${pct(sqliteShare(run, false))}, garbage collection ${pct(functionShare(run, '(garbage collector)'))}, idle ${pct(functionShare(run, '(idle)'))}`;
  // By function name only: the store's module was renamed (sqlite-store.ts, sqlite-driver.ts) but kept its functions.
  const byName = (run: ProfileRun) => {
    const names = new Map<string, number>();
    for (const entry of run.summary.functions) {
      const name = entry.name.split(' — ')[0] ?? entry.name;
      names.set(name, (names.get(name) ?? 0) + entry.percent);
    }
    return names;
  };
  const now = byName(ours);
  const then = byName(theirs);
  const grown = [...now.entries()]
    .map(([name, share]) => ({ name, change: share - (then.get(name) ?? 0) }))
    .filter((entry) => entry.change >= 0.5 && entry.name !== '(idle)' && entry.name !== '(program)')
    .sort((a, b) => b.change - a.change)
    .slice(0, 5)
    .map((entry) => `\`${entry.name}\` +${formatFixed(entry.change, 1)} points`);
  // Shares hide what changed when the rates differ: per unit (request or job) of wall time, in µs.
  const perUnit = (run: ProfileRun, percent: number) => (percent / 100) * (1e6 / run.rate);
  const srcShare = (run: ProfileRun) => run.summary.modules.filter((entry) => entry.name.startsWith('src/')).reduce((sum, entry) => sum + entry.percent, 0);
  const parts: Array<[string, (run: ProfileRun) => number]> = [
    ['BEGIN/COMMIT', (run) => sqliteShare(run, true)],
    ['the statements', (run) => sqliteShare(run, false)],
    ["asyncfirst's own JavaScript (src/, self time)", srcShare],
    ['node internals', (run) => run.summary.modules.find((entry) => entry.name === 'node internals')?.percent ?? 0],
    ['garbage collection', (run) => functionShare(run, '(garbage collector)')],
    ['idle', (run) => functionShare(run, '(idle)')],
  ];
  const unit = current.startsWith('drain') ? 'job' : 'request';
  const perUnitText = parts
    .map(([label, share]) => `${label} ${formatFixed(perUnit(ours, share(ours)), 1)} µs against ${formatFixed(perUnit(theirs, share(theirs)), 1)}`)
    .join(', ');
  return ` Profiled one after the other (sections below): the current code at ${ours.throughput} — ${shares(ours)} of its main thread; ${short} at ${theirs.throughput} — ${shares(theirs)}. Per ${unit} of the main thread's time: ${perUnitText}.${grown.length ? ` The largest gains in share (self time, by function name): ${grown.join(', ')}.` : ''}`;
}

/** The drain settings both the current code and the baseline completed, with after / before. */
function pairedDrains(results: BenchResults): Array<{ config: string; after: number; before: number; ratio: number }> {
  const ours = drainRow(results, 'asyncfirst')?.runs ?? [];
  const theirs = drainRow(results, 'asyncfirst-baseline')?.runs ?? [];
  return ours.flatMap((run) => {
    const other = theirs.find((candidate) => candidate.config === run.config && candidate.drained === candidate.jobs);
    return other && run.drained === run.jobs
      ? [{ config: run.config, after: run.jobsPerSec, before: other.jobsPerSec, ratio: run.jobsPerSec / other.jobsPerSec }]
      : [];
  });
}

/** The before-and-after section. */
export function baselineSection(results: BenchResults): string[] {
  const baseline = results.baseline;
  if (!baseline) return [];
  const out = ['## Before and after on SQLite', ''];
  out.push(
    `The baseline is ${baseline.short} ("${baseline.subject}"), checked out into a temporary git worktree that used this checkout's node_modules; its own \`bench/servers/asyncfirst.ts\` and \`bench/drain/asyncfirst.ts\` ran in turns with the current ones, under the same load and settings (acceptance: next to the current server in every round, each a fresh child on a fresh file; drain: next to the current child at each setting; the two swap places every other round and setting, so that neither always runs first after another part).`,
    '',
  );
  const after = httpRow(results, 'asyncfirst');
  const before = httpRow(results, 'asyncfirst-baseline');
  if (after && before) {
    out.push(
      table(
        ['Acceptance (random UUIDv4 keys)', 'req/s (median)', 'p50', 'p99', 'Errors', 'Each round (req/s)'],
        [after, before].map((row) => [
          row.label,
          formatInt(row.rps),
          `${row.p50} ms`,
          `${row.p99} ms`,
          String(row.errors + row.non2xx),
          row.runs.map((run) => formatInt(run.rps)).join(', '),
        ]),
      ),
      '',
    );
    const rounds = after.runs.map((run, index) => {
      const other = before.runs[index];
      return other ? x(run.rps / other.rps) : '–';
    });
    out.push(`After / before, round by round: ${rounds.join(', ')}.`, '');
  }
  const pairs = pairedDrains(results);
  if (pairs.length) {
    out.push(
      table(
        ['Drain setting', 'Current (jobs/s)', `At ${baseline.short} (jobs/s)`, 'After / before'],
        pairs.map((pair) => [pair.config, formatInt(pair.after), formatInt(pair.before), x(pair.ratio)]),
      ),
      '',
    );
  }
  return out;
}
