import { relative } from 'node:path';
import { COMPARABLE_CONCURRENCY, type DrainPart, type DrainRow, HANDLER_ROWS } from '../parts/drain.js';
import { HTTP_LABELS, type HttpPart } from '../parts/http.js';
import { DEFAULT_WORKER_CONCURRENCY, type LatencyPart } from '../parts/latency.js';
import { POSTGRES_PROFILES, type ProfilePart, type ProfileRun } from '../parts/profile.js';
import type { RssPart } from '../parts/rss.js';
import type { ScalePart } from '../parts/scale.js';
import type { TelemetryPart } from '../parts/telemetry.js';
import { type Bar, type Panel, renderChart } from './chart.js';
import { formatFixed, formatInt } from './context.js';
import type { MachineInfo } from './machine.js';
import type { ProfileSummary } from './profile.js';
import { baselineBounds, baselineGoals, baselineSection } from './report-baseline.js';
import { functionShare, httpRow, MiB, ms, sqliteShare, table, x } from './report-format.js';
import { commitProbeSection, databaseCostTable, postgresBounds, postgresGoals } from './report-postgres.js';
import { telemetryConsoleRows, telemetryGoals, telemetrySection } from './report-telemetry.js';
import { REPO_ROOT } from './shared.js';

export const PART_NAMES = ['acceptance', 'replay', 'drain', 'telemetry', 'latency', 'scale', 'rss', 'profile'] as const;
export type PartName = (typeof PART_NAMES)[number];

export interface BenchResults {
  mode: 'quick' | 'full';
  /** The options the run was given (e.g. "--baseline=a54ffa6"), as typed. */
  options?: string;
  parts: PartName[];
  startedAt: string;
  seconds: number;
  machine: MachineInfo;
  services: { redis: string; postgres: string };
  note?: string;
  http?: HttpPart;
  drain?: DrainPart;
  latency?: LatencyPart;
  /** The same on PostgreSQL, or why it was not measured. */
  latencyPostgres?: LatencyPart;
  latencyPostgresSkipped?: string;
  /** On PostgreSQL with 50 concurrent jobs instead of the default. */
  latencyPostgresConcurrent?: LatencyPart;
  scale?: ScalePart;
  rss?: RssPart;
  profile?: ProfilePart;
  /** Acceptance and drain with metrics and tracing on and off. */
  telemetry?: TelemetryPart;
  /** The commit the SQLite figures were compared with (--baseline). */
  baseline?: { requested: string; commit: string; short: string; subject: string };
  failures: Array<{ part: PartName; message: string }>;
}

export interface Goal {
  goal: string;
  measured: string;
  status: 'met' | 'missed' | 'inconclusive' | 'not measured';
  /** For a miss: by how much. */
  by?: string;
}

/** The issue's goals, judged on this run's numbers. */
export function judgeGoals(results: BenchResults): Goal[] {
  const goals: Goal[] = [];
  const accept = httpRow(results, 'asyncfirst');
  if (accept) {
    const errors = accept.errors + accept.non2xx;
    const misses: string[] = [];
    if (!(accept.ratio >= 0.8)) misses.push(`req/s at ${x(accept.ratio)}, ${x(0.8 - accept.ratio)} short of 0.8x`);
    if (!(accept.p99Ratio <= 2)) misses.push(`p99 at ${x(accept.p99Ratio)}, ${x(accept.p99Ratio - 2)} over 2x`);
    if (errors > 0) misses.push(`${errors} errors`);
    const v7 = httpRow(results, 'asyncfirst-v7');
    goals.push({
      goal: 'Acceptance ≥ 0.8x bare Fastify req/s, p99 ≤ 2x bare, no errors',
      measured: `${x(accept.ratio)} req/s, p99 ${x(accept.p99Ratio)} (${ms(accept.p99)} vs ${ms(accept.p99 / accept.p99Ratio)}), ${errors} errors (random UUIDv4 keys)${v7 ? `; with UUIDv7 keys ${x(v7.ratio)} req/s, p99 ${x(v7.p99Ratio)}, ${v7.errors + v7.non2xx} errors` : ''}`,
      status: misses.length ? 'missed' : 'met',
      ...(misses.length ? { by: misses.join('; ') } : {}),
    });
  } else goals.push({ goal: 'Acceptance ≥ 0.8x bare Fastify req/s, p99 ≤ 2x bare, no errors', measured: '–', status: 'not measured' });

  const replay = httpRow(results, 'replay');
  if (replay) {
    const errors = replay.errors + replay.non2xx;
    const met = replay.ratio >= 0.9 && errors === 0;
    const fresh = httpRow(results, 'bare');
    goals.push({
      goal: 'Replay ≥ 0.9x bare Fastify req/s (both sent one fixed request)',
      measured: `${x(replay.ratio)} (${formatInt(replay.rps)} req/s)${fresh ? `; ${x(replay.rps / fresh.rps)} of bare Fastify with new keys` : ''}, ${errors} errors`,
      status: met ? 'met' : 'missed',
      ...(met ? {} : { by: replay.ratio < 0.9 ? `${x(0.9 - replay.ratio)} short` : `${errors} errors` }),
    });
  } else goals.push({ goal: 'Replay ≥ 0.9x bare Fastify req/s', measured: '–', status: 'not measured' });

  const ours = results.drain?.rows.find((row) => row.system === 'asyncfirst')?.best;
  const bull = results.drain?.rows.find((row) => row.system === 'bullmq')?.best;
  if (ours && bull) {
    const ratio = ours.jobsPerSec / bull.jobsPerSec;
    goals.push({
      goal: 'Drain ≥ 3x BullMQ jobs/s',
      measured: `${x(ratio)} (${formatInt(ours.jobsPerSec)} vs ${formatInt(bull.jobsPerSec)} jobs/s, best of each)`,
      status: ratio >= 3 ? 'met' : 'missed',
      ...(ratio >= 3 ? {} : { by: `${x(3 - ratio)} short (needs ${formatInt(3 * bull.jobsPerSec)} jobs/s)` }),
    });
  } else
    goals.push({
      goal: 'Drain ≥ 3x BullMQ jobs/s',
      measured: ours ? `${formatInt(ours.jobsPerSec)} jobs/s; BullMQ not measured` : '–',
      status: 'not measured',
    });

  // Real handlers (issue: drain as users run it): both at concurrency 50, and asyncfirst at its defaults.
  const handlerRuns = HANDLER_ROWS.map((pair) => {
    const oursRow = results.drain?.rows.find((row) => row.system === pair.ours);
    const bullRow = results.drain?.rows.find((row) => row.system === pair.bull);
    return { pair, at50: oursRow && comparablePair(oursRow), byDefault: defaultRun(oursRow), bull: bullRow && comparablePair(bullRow) };
  });
  const handlerName = (handler: 'report' | 'sleep5') => (handler === 'report' ? "the demo's createReport" : 'a 5 ms wait');
  for (const [goal, need, pick] of [
    ['Drain with real handlers ≥ 3x BullMQ jobs/s, both at concurrency 50', 3, (entry: (typeof handlerRuns)[number]) => entry.at50],
    ["Drain with real handlers at asyncfirst's default settings ≥ 2x BullMQ's at concurrency 50", 2, (entry: (typeof handlerRuns)[number]) => entry.byDefault],
  ] as const) {
    const measured = handlerRuns.flatMap((entry) => {
      const ours = pick(entry);
      return ours && entry.bull ? [{ handler: entry.pair.handler, ours, bull: entry.bull, ratio: ours.jobsPerSec / entry.bull.jobsPerSec }] : [];
    });
    if (measured.length < handlerRuns.length) {
      goals.push({ goal, measured: '–', status: 'not measured' });
      continue;
    }
    const worst = Math.min(...measured.map((entry) => entry.ratio));
    goals.push({
      goal,
      measured: measured
        .map(
          (entry) =>
            `${handlerName(entry.handler)}: ${x(entry.ratio)} (${formatInt(entry.ours.jobsPerSec)} at ${entry.ours.config} vs ${formatInt(entry.bull.jobsPerSec)} jobs/s)`,
        )
        .join('; '),
      status: worst >= need ? 'met' : 'missed',
      ...(worst >= need ? {} : { by: `${x(need - worst)} short at the worst` }),
    });
  }

  const latency = results.latency;
  if (latency && latency.fromResponse.count > 0) {
    const p50 = latency.fromResponse.p50;
    goals.push({
      goal: '202 → handler start p50 ≤ 5 ms',
      measured: `p50 ${ms(p50, 2)}, p99 ${ms(latency.fromResponse.p99, 2)} at ${latency.rate} req/s`,
      status: p50 <= 5 ? 'met' : 'missed',
      ...(p50 <= 5 ? {} : { by: `${ms(p50 - 5, 2)} over` }),
    });
  } else goals.push({ goal: '202 → handler start p50 ≤ 5 ms', measured: '–', status: 'not measured' });

  const million = results.scale?.levels.find((level) => level.prefilled === 1_000_000);
  const empty = results.scale?.levels.find((level) => level.prefilled === 0);
  if (million && empty && Number.isFinite(million.ratio)) {
    // Interference from other processes only ever slows a turn down, so the best of the rounds
    // is judged as well as the median: when the two disagree, the run cannot decide.
    const bestRatio = Math.max(...million.acceptRuns) / Math.max(...empty.acceptRuns);
    const medianMet = million.ratio >= 0.9;
    const bestMet = bestRatio >= 0.9;
    const worst = Math.min(million.ratio, bestRatio);
    goals.push({
      goal: 'Acceptance at 1,000,000 jobs within 10% of an empty file',
      measured: `${x(million.ratio)} of the empty file's req/s on medians (${formatInt(million.accept.rps)} vs ${formatInt(million.accept.rps / million.ratio)}), ${x(bestRatio)} on the best of ${million.acceptRuns.length} rounds (random UUIDv4 keys); with UUIDv7 keys ${x(million.ratioV7)} on medians (${formatInt(million.acceptV7.rps)} vs ${formatInt(million.acceptV7.rps / million.ratioV7)}), ${x(Math.max(...million.acceptV7Runs) / Math.max(...empty.acceptV7Runs))} on the best of rounds`,
      status: medianMet && bestMet ? 'met' : medianMet !== bestMet ? 'inconclusive' : 'missed',
      ...(medianMet && bestMet ? {} : { by: `${formatFixed(100 * (0.9 - worst), 1)} points below 90% (${medianMet ? 'best of rounds' : 'medians'})` }),
    });
  } else goals.push({ goal: 'Acceptance at 1,000,000 jobs within 10% of an empty file', measured: '–', status: 'not measured' });

  const rss = results.rss;
  if (rss && Number.isFinite(rss.growthPercent)) {
    const met = rss.growthPercent <= 10;
    goals.push({
      goal: 'RSS flat after warm-up (end ≤ 1.1x the after-warm-up RSS)',
      measured: `${formatFixed(rss.afterWarmup / MiB, 1)} → ${formatFixed(rss.end / MiB, 1)} MiB (${formatFixed(rss.growthPercent, 1)}%, slope ${formatFixed(rss.slopeMiBPerMin, 2)} MiB/min) over ${rss.durationS} s`,
      status: met ? 'met' : 'missed',
      ...(met ? {} : { by: `${formatFixed(rss.growthPercent - 10, 1)} points over 10%` }),
    });
  } else goals.push({ goal: 'RSS flat after warm-up', measured: '–', status: 'not measured' });
  goals.push(...telemetryGoals(results), ...postgresGoals(results), ...baselineGoals(results));
  return goals;
}

const ON_POSTGRES: ReadonlyArray<DrainRow['system']> = ['asyncfirst-pg', 'graphile'];
const COMPARABLE = `concurrency ${COMPARABLE_CONCURRENCY}`;

/** On PostgreSQL, asyncfirst's and graphile-worker's runs at the comparable concurrency; with a real handler, each system's run at it. */
function comparablePair(row: DrainRow): DrainRow['best'] {
  if (!ON_POSTGRES.includes(row.system) && !HANDLER_ROWS.some((pair) => pair.ours === row.system || pair.bull === row.system)) return undefined;
  return row.runs.find((run) => run.config === COMPARABLE && run.drained === run.jobs);
}

/** A real-handler row's run at asyncfirst's default settings. */
function defaultRun(row: DrainRow | undefined): DrainRow['best'] {
  return row?.runs.find((run) => run.config.includes('(the default)') && run.drained === run.jobs);
}

/**
 * A drain rate against its reference: on SQLite and Redis BullMQ's best; on PostgreSQL
 * graphile-worker's (its best, or its run at the comparable concurrency).
 */
function drainVersus(results: BenchResults, row: DrainRow, jobsPerSec: number, comparable = false): string {
  const handlerPair = HANDLER_ROWS.find((pair) => pair.ours === row.system || pair.bull === row.system);
  if (handlerPair) {
    if (row.system === handlerPair.bull) return '';
    const bullRow = results.drain?.rows.find((candidate) => candidate.system === handlerPair.bull);
    const reference = bullRow ? comparablePair(bullRow) : undefined;
    return reference ? `${x(jobsPerSec / reference.jobsPerSec)} BullMQ (${COMPARABLE})` : '';
  }
  if (ON_POSTGRES.includes(row.system)) {
    const graphile = results.drain?.rows.find((candidate) => candidate.system === 'graphile');
    if (!graphile || row.system === 'graphile') return '';
    const reference = comparable ? comparablePair(graphile) : graphile.best;
    return reference ? `${x(jobsPerSec / reference.jobsPerSec)} graphile-worker${comparable ? ` (${COMPARABLE})` : ''}` : '';
  }
  const bull = results.drain?.rows.find((candidate) => candidate.system === 'bullmq')?.best;
  return bull && row.system !== 'bullmq' ? `${x(jobsPerSec / bull.jobsPerSec)} BullMQ` : '';
}

/** The one table printed at the end of a run. */
export function consoleTable(results: BenchResults): string {
  const header = ['Part', 'Target', 'Throughput', 'p50', 'p99', 'Errors', 'Ratio', 'Note'];
  const rows: string[][] = [];
  for (const row of results.http?.rows ?? []) {
    const part = row.target === 'replay' || row.target === 'bare-same' ? 'replay' : 'acceptance';
    if (row.skipped) rows.push([part, row.label, '–', '–', '–', '–', '–', `skipped: ${row.skipped}`]);
    else
      rows.push([
        part,
        row.label,
        `${formatInt(row.rps)} req/s`,
        ms(row.p50),
        ms(row.p99),
        String(row.errors + row.non2xx),
        row.target === row.baseline ? '1.00x' : `${x(row.ratio)} ${HTTP_LABELS[row.baseline]}`,
        `median of ${row.runs.length}`,
      ]);
  }
  for (const row of results.drain?.rows ?? []) {
    if (row.skipped || row.failed || !row.best) {
      rows.push(['drain', row.label, '–', '', '', '', '', row.skipped ? `skipped: ${row.skipped}` : `failed: ${row.failed ?? 'no complete run'}`]);
      continue;
    }
    rows.push([
      'drain',
      row.label,
      `${formatInt(row.best.jobsPerSec)} jobs/s`,
      '',
      '',
      '',
      drainVersus(results, row, row.best.jobsPerSec),
      `best: ${row.best.config}; ${results.drain?.jobs} jobs`,
    ]);
    const pair = comparablePair(row);
    if (pair && pair !== row.best)
      rows.push(['drain', row.label, `${formatInt(pair.jobsPerSec)} jobs/s`, '', '', '', drainVersus(results, row, pair.jobsPerSec, true), pair.config]);
  }
  rows.push(...telemetryConsoleRows(results));
  for (const latency of [results.latency, results.latencyPostgres, results.latencyPostgresConcurrent]) {
    if (!latency) continue;
    rows.push([
      'latency',
      `202 → handler start${latency.database === 'postgres' ? ', PostgreSQL' : ''}${latency.workerConcurrency === DEFAULT_WORKER_CONCURRENCY ? '' : `, ${latency.workerConcurrency} jobs at once`}`,
      `${latency.rate} req/s offered`,
      ms(latency.fromResponse.p50, 2),
      ms(latency.fromResponse.p99, 2),
      String(latency.load.errors + latency.load.non2xx),
      '',
      `${latency.fromResponse.count} of ${latency.accepted} jobs; arrival → start p50 ${ms(latency.fromArrival.p50, 2)}`,
    ]);
  }
  if (results.latencyPostgresSkipped)
    rows.push(['latency', '202 → handler start, PostgreSQL', '–', '', '', '', '', `skipped: ${results.latencyPostgresSkipped}`]);
  for (const level of results.scale?.levels ?? []) {
    rows.push([
      'scale',
      `${formatInt(level.prefilled)} jobs: POST`,
      `${formatInt(level.accept.rps)} req/s`,
      ms(level.accept.p50),
      ms(level.accept.p99),
      String(level.accept.errors + level.accept.non2xx),
      `${x(level.ratio)} empty`,
      `${formatInt(level.bytesPerJob)} bytes/job on disk`,
    ]);
    rows.push([
      'scale',
      `${formatInt(level.prefilled)} jobs: GET`,
      `${formatInt(level.get.rps)} req/s`,
      ms(level.get.p50),
      ms(level.get.p99),
      String(level.get.errors + level.get.non2xx),
      '',
      'GET /jobs/{id}',
    ]);
  }
  const rss = results.rss;
  if (rss)
    rows.push([
      'rss',
      'asyncfirst RSS',
      `${formatInt(rss.load.rps)} req/s`,
      '',
      '',
      String(rss.load.errors + rss.load.non2xx),
      '',
      `start ${formatFixed(rss.start / MiB, 1)} / warm ${formatFixed(rss.afterWarmup / MiB, 1)} / end ${formatFixed(rss.end / MiB, 1)} MiB, ${formatFixed(rss.slopeMiBPerMin, 2)} MiB/min`,
    ]);
  for (const run of results.profile?.runs ?? []) {
    const top = run.summary.functions[0];
    rows.push(['profile', `asyncfirst ${run.name}`, run.throughput, '', '', '', '', top ? `top: ${formatFixed(top.percent, 1)}% ${top.name}` : '']);
  }
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ');
  return [line(header), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

/** The acceptance and drain comparisons as an SVG: SQLite and Redis, then PostgreSQL, each at its own scale. */
export function chartSvg(results: BenchResults): string {
  const panels: Panel[] = [];
  const skippedNote = (reason: string) => ({ note: `skipped: ${reason.slice(0, 70)}` });
  if (results.http) {
    const http = results.http;
    const bar = (row: (typeof http.rows)[number], label = row.label): Bar => ({
      label,
      value: row.skipped ? undefined : row.rps,
      ...(row.skipped ? skippedNote(row.skipped) : {}),
      highlight: row.target === 'asyncfirst' || row.target === 'asyncfirst-v7' || row.target === 'replay' || row.target === 'asyncfirst-pg',
      ...(row.target !== row.baseline && !row.skipped
        ? { detail: `${x(row.ratio)} ${HTTP_LABELS[row.baseline]} · p99 ${ms(row.p99)}` }
        : { detail: `p99 ${ms(row.p99)}` }),
    });
    const sqlite = http.rows.filter((row) => row.target !== 'asyncfirst-pg' && row.target !== 'pgboss');
    const postgres = http.rows.filter((row) => row.target === 'asyncfirst-pg' || row.target === 'pgboss');
    const title = (where: string) => `Acceptance${where}: POST /reports, ${http.connections} connections (median of ${http.rounds})`;
    if (sqlite.length) panels.push({ title: title(''), unit: 'req/s', bars: sqlite.map((row) => bar(row)) });
    if (postgres.length)
      panels.push({
        title: title(' on PostgreSQL'),
        unit: 'req/s',
        bars: postgres.map((row) => bar(row, row.target === 'pgboss' ? 'Fastify + pg-boss' : 'asyncfirst')),
      });
  }
  if (results.drain) {
    const drain = results.drain;
    const bar = (row: DrainRow, run: DrainRow['best'], label: string): Bar => ({
      label,
      value: run?.jobsPerSec,
      ...(run ? {} : row.skipped ? skippedNote(row.skipped) : { note: `failed: ${(row.failed ?? 'no complete run').slice(0, 70)}` }),
      highlight: row.system === 'asyncfirst' || row.system === 'asyncfirst-pg',
      ...(run
        ? { detail: [run.config, drainVersus(results, row, run.jobsPerSec, run.config === COMPARABLE && run !== row.best)].filter(Boolean).join(' · ') }
        : {}),
    });
    const label = (row: DrainRow) => (row.system === 'asyncfirst-baseline' ? `asyncfirst at ${results.baseline?.short ?? 'baseline'}` : row.label);
    const sqlite = drain.rows.filter((row) => row.system === 'asyncfirst' || row.system === 'asyncfirst-baseline' || row.system === 'bullmq');
    panels.push({
      title: `Drain: ${formatInt(drain.jobs)} stored jobs, no-op handler (best setting)`,
      unit: 'jobs/s',
      bars: sqlite.map((row) => bar(row, row.best, label(row))),
    });
    const short: Partial<Record<DrainRow['system'], string>> = { pgboss: 'pg-boss work()', 'asyncfirst-pg': 'asyncfirst', graphile: 'graphile-worker' };
    const postgres: Bar[] = [];
    for (const system of ['asyncfirst-pg', 'graphile'] as const) {
      const row = drain.rows.find((candidate) => candidate.system === system);
      if (!row) continue;
      const pair = comparablePair(row);
      if (pair) postgres.push(bar(row, pair, `${short[system]}, ${COMPARABLE_CONCURRENCY}`));
      if (!pair || row.best !== pair) postgres.push(bar(row, row.best, `${short[system]}, best`));
    }
    const boss = drain.rows.find((row) => row.system === 'pgboss');
    if (boss) postgres.push(bar(boss, boss.best, `${short.pgboss}, best`));
    if (postgres.length)
      panels.push({
        title: `Drain on PostgreSQL: ${formatInt(drain.jobs)} stored jobs, no-op handler (at concurrency ${COMPARABLE_CONCURRENCY}, and the best setting)`,
        unit: 'jobs/s',
        bars: postgres,
      });
  }
  const machine = results.machine;
  const caption = `${machine.cores} × ${machine.cpuModel}, Node ${machine.node}, ${formatInt(machine.fsync.fdatasyncPerSec)} fdatasync/s · ${results.startedAt.slice(0, 10)} · npm run bench${results.options ? ` -- ${results.options}` : ''}`;
  return renderChart(panels, caption);
}

function latencySection(latency: LatencyPart): string[] {
  const summaryRow = (label: string, summary: LatencyPart['fromResponse']) => [
    label,
    String(summary.count),
    ms(summary.min, 2),
    ms(summary.p50, 2),
    ms(summary.p90, 2),
    ms(summary.p99, 2),
    ms(summary.max, 2),
  ];
  const concurrency =
    latency.workerConcurrency === DEFAULT_WORKER_CONCURRENCY
      ? `concurrency ${latency.workerConcurrency}, the default`
      : `concurrency ${latency.workerConcurrency}`;
  const out = [`### On ${latency.database === 'postgres' ? 'PostgreSQL' : 'SQLite'}, worker concurrency ${latency.workerConcurrency}`, ''];
  out.push(
    `An asyncfirst child ${latency.database === 'postgres' ? 'on PostgreSQL (a schema of its own, a pool of 10 connections)' : 'on an SQLite file'} with the worker on (${concurrency}) and a no-op handler, under an evenly paced ${latency.rate} req/s for ${latency.durationS} s after a short warm-up (an open-loop client in the parent: one request every ${formatFixed(1000 / latency.rate, 1)} ms; ${formatInt(latency.load.rps)} req/s answered, ${latency.load.errors + latency.load.non2xx} errors, client-side latency p50 ${ms(latency.load.latency.p50, 1)} / p99 ${ms(latency.load.latency.p99, 1)}; ${latency.fromResponse.count} of the ${latency.accepted} jobs accepted in the window had started when it ended). autocannon's overallRate is not used here because it sends each second's quota as one burst. Inside the child, per job: when its 202 was sent (Fastify onResponse hook), when its request arrived (onRequest) and when its handler started (performance.now()).`,
    '',
  );
  out.push(
    table(
      ['Interval', 'Jobs', 'min', 'p50', 'p90', 'p99', 'max'],
      [summaryRow('202 sent → handler start', latency.fromResponse), summaryRow('request arrived → handler start', latency.fromArrival)],
    ),
    '',
  );
  out.push(
    `p50 over the first third of the jobs: ${ms(latency.p50FirstThird, 2)}; over the last third: ${ms(latency.p50LastThird, 2)} (a worker that cannot keep up shows as a last third far slower than the first: a growing backlog rather than a per-job delay).`,
    '',
  );
  if (latency.handlerBeforeResponse > 0)
    out.push(
      `${latency.handlerBeforeResponse} of ${latency.fromResponse.count} handlers started before their 202 had been sent (negative intervals): the commit wakes the worker in the same turn that resolves the request.`,
      '',
    );
  return out;
}

/** RESULTS.md. */
export function markdown(results: BenchResults, chartFile: string | undefined): string {
  const out: string[] = [];
  const machine = results.machine;
  out.push('# asyncfirst benchmark results', '');
  out.push(
    `Written by \`npm run bench${results.options ? ` -- ${results.options}` : ''}\` on ${results.startedAt} (${Math.round(results.seconds)} s). Every number below comes from this one run; each server under test ran in its own child process, autocannon in the parent.`,
    '',
  );
  if (results.note) out.push(`> ${results.note}`, '');
  out.push('## Machine', '');
  out.push(
    table(
      ['', ''],
      [
        ['CPU', `${machine.cores} × ${machine.cpuModel} (available parallelism ${machine.availableParallelism})`],
        ['Memory', `${machine.memoryGiB} GiB`],
        ['Node.js', machine.node],
        ['OS', machine.os],
        [
          'fsync rate',
          `${formatInt(machine.fsync.fdatasyncPerSec)}/s with fdatasync, ${formatInt(machine.fsync.fsyncPerSec)}/s with fsync (4 KiB appended per sync, in the databases' folder)`,
        ],
        ['Redis (BullMQ)', results.services.redis],
        ['PostgreSQL (asyncfirst, pg-boss, graphile-worker)', results.services.postgres],
      ],
    ),
    '',
  );
  out.push(
    "asyncfirst on SQLite commits with `synchronous=NORMAL` and then fdatasyncs the WAL off the event loop, answering no write (a 202 included) before that sync has finished (see the README's Durability); asyncfirst on PostgreSQL, pg-boss and graphile-worker are as durable as PostgreSQL above (its WAL flushed at each commit when synchronous_commit=on); BullMQ acknowledges once Redis holds the job in memory, so with the Redis settings above an acknowledged BullMQ job does not survive a Redis restart.",
    '',
  );

  out.push('## Goals', '');
  out.push(
    table(
      ['Goal', 'Measured', 'Status'],
      judgeGoals(results).map((goal) => [
        goal.goal,
        goal.measured,
        goal.status === 'missed'
          ? `**missed** by ${goal.by ?? '?'}`
          : goal.status === 'inconclusive'
            ? `inconclusive: missed by ${goal.by ?? '?'}`
            : goal.status,
      ]),
    ),
    '',
  );

  if (results.http) {
    const http = results.http;
    out.push('## Acceptance and replay', '');
    if (chartFile) out.push(`![Acceptance and drain comparison](${chartFile})`, '');
    out.push(
      `POST /reports with \`${JSON.stringify({ title: 'Quarterly report', rows: 1000, format: 'csv' })}\`, headers X-API-Key and a new Idempotency-Key per request; ${http.connections} connections; ${http.rounds} round(s) in which the targets take turns, each turn a fresh server child (fresh database file, emptied queue), a ${http.warmupS} s warm-up that is discarded, then ${http.durationS} s measured. req/s counts 2xx answers; p50/p99 are autocannon's (1 ms resolution); the table shows the median over the rounds, errors are summed.`,
      '',
    );
    out.push(
      table(
        ['Target', 'req/s', 'vs baseline', 'p50', 'p99', 'p99 vs baseline', 'Errors', 'Each round (req/s)'],
        http.rows.map((row) =>
          row.skipped
            ? [row.label, '–', '–', '–', '–', '–', '–', `skipped: ${row.skipped}`]
            : [
                row.label,
                formatInt(row.rps),
                row.target === row.baseline ? 'baseline' : `${x(row.ratio)} (${HTTP_LABELS[row.baseline]})`,
                ms(row.p50),
                ms(row.p99),
                x(row.p99Ratio),
                `${row.errors + row.non2xx}${row.non2xx ? ` (status ${Object.keys(row.statusCodes).join(', ')})` : ''}`,
                row.runs.map((run) => formatInt(run.rps)).join(', '),
              ],
        ),
      ),
      '',
    );
    out.push(
      `- **bare Fastify**: the same route, JSON schema, API-key check and 202 answer, storing nothing. **asyncfirst**: the demo service (\`createDemo\`), worker off (\`WORKER_CONCURRENCY=0\`), sent a random UUIDv4 key per request. **asyncfirst, UUIDv7 keys**: the same, sent a time-ordered UUIDv7 key per request, as asyncfirst’s client does: the key index then grows at its end instead of dirtying a random leaf page per request. **asyncfirst replay**: one Idempotency-Key sent again and again (every answer is the stored 202 with \`Idempotent-Replayed: true\`). **bare Fastify, one key**: bare Fastify sent that same fixed request, the baseline for replay: a new key per request costs autocannon a \`setupRequest()\` and a rebuilt request each time (about a quarter more of the load generator’s CPU on this machine), so the fixed request is cheaper to send and the comparison must use it on both sides. **Fastify + BullMQ**: the bare route plus \`queue.add()\`. **Fastify + pg-boss**: the bare route plus \`boss.send()\`. **asyncfirst on PostgreSQL**: the demo service with \`DATABASE_URL\` on PostgreSQL, in a schema of its own made for each turn and dropped after it, a pool of 10 connections (\`DATABASE_POOL_MAX\`, the default, as pg-boss’s) plus its LISTEN connection, worker off; compared with Fastify + pg-boss.${results.baseline ? ` **asyncfirst at ${results.baseline.short}**: the baseline commit’s own demo server (see Before and after).` : ''}`,
      '',
    );
  }

  if (results.drain) {
    const drain = results.drain;
    out.push('## Drain', '');
    out.push(
      `${formatInt(drain.jobs)} createReport jobs stored first, then the worker started with a no-op handler that returns a valid Report; the time until every job is recorded as done (asyncfirst: \`succeeded\` rows; BullMQ: \`completed\` events; pg-boss: \`completed\` rows; graphile-worker: no job left, as it deletes a job when it completes), in one process per run. Each system was tried at several settings, taking turns; the best is compared, and on PostgreSQL asyncfirst and graphile-worker also at the same concurrency, ${COMPARABLE_CONCURRENCY}. The rows with a real handler run as users run them: the demo's own \`createReport\` (async; it builds and hashes a report of one row — BullMQ's processor calls the same function) and a handler that awaits a 5 ms timer before returning its Report (a handler that waits on the network), both systems at concurrency ${COMPARABLE_CONCURRENCY} and asyncfirst also at its default settings; every BullMQ processor returns the same Report, which BullMQ stores as the job's return value, as asyncfirst stores the result.`,
      '',
    );
    const roundTrips = (run: NonNullable<DrainRow['best']> | undefined) =>
      run?.database
        ? `${formatFixed(run.database.queries / run.jobs, run.database.queries / run.jobs < 0.1 ? 4 : 2)} round trips, ${formatInt((run.database.processCpuSeconds * 1e6) / run.jobs)} µs of the process's CPU, ${formatInt((run.database.backendCpuSeconds * 1e6) / run.jobs)} µs of backend CPU`
        : '';
    out.push(
      table(
        ['System', 'Best jobs/s', 'Best setting', 'Against', 'All settings (jobs/s)', 'Enqueue rate (jobs/s)', 'Per job on PostgreSQL (best setting)'],
        drain.rows.map((row) =>
          row.best
            ? [
                row.label,
                formatInt(row.best.jobsPerSec),
                row.best.config,
                drainVersus(results, row, row.best.jobsPerSec),
                row.runs
                  .map(
                    (run) =>
                      `${run.config}: ${formatInt(run.jobsPerSec)}${run.drained < run.jobs ? ` (only ${run.drained} done)` : ''}${run.config === COMPARABLE && comparablePair(row) === run && run !== row.best && drainVersus(results, row, run.jobsPerSec, true) ? ` (${drainVersus(results, row, run.jobsPerSec, true)})` : ''}`,
                  )
                  .join('; '),
                formatInt(row.best.fillJobsPerSec),
                roundTrips(row.best),
              ]
            : [row.label, '–', '–', '–', row.skipped ? `skipped: ${row.skipped}` : `failed: ${row.failed ?? 'no run drained every job'}`, '–', ''],
        ),
      ),
      '',
    );
    out.push(
      `- asyncfirst: jobs filled with \`store.acceptJob\` in group-committed batches of 1,000 (through a store of their own), then \`createAsyncFirst(...).startBackground()\`. BullMQ: \`Queue.addBulk\` in batches of 1,000, then one \`Worker\` with that concurrency. pg-boss 10: \`boss.insert\` in batches of 1,000, then \`boss.work()\` registered several times with \`batchSize\` (v10 has no \`teamSize\`; each registration fetches a batch, and waits out its 0.5 s polling interval, the minimum, between fetches). asyncfirst on PostgreSQL: jobs filled with the engine's \`acceptJob\`, 1,000 at a time, then the worker on a pool of 10 connections (or the pool named) in a schema of the run's own. graphile-worker 0.17: \`WorkerUtils.addJobs\` in batches of 1,000, then \`run()\` with that concurrency and a pool of concurrency + 2 connections (its advice: at least one per concurrent job); “localQueue” is its batching (a pool-wide queue that locks that many jobs with one statement, and completions written together with \`completeJobBatchDelay: 0\`), which its documentation recommends for many short jobs; each run in a schema of its own. Round trips are counted in the drain process (every node-postgres query) and the backends' CPU read from /proc, from the worker's start until the last handler returned.${results.baseline ? ` asyncfirst at ${results.baseline.short}: the baseline commit's own drain child (see Before and after).` : ''}`,
      '',
    );
  }

  out.push(...telemetrySection(results));

  if (results.latency || results.latencyPostgres || results.latencyPostgresSkipped) {
    out.push('## From 202 to handler start', '');
    if (results.latency) out.push(...latencySection(results.latency));
    if (results.latencyPostgres) out.push(...latencySection(results.latencyPostgres));
    if (results.latencyPostgresConcurrent) out.push(...latencySection(results.latencyPostgresConcurrent));
    else if (results.latencyPostgresSkipped) out.push('### On PostgreSQL', '', `Skipped: ${results.latencyPostgresSkipped}.`, '');
  }

  out.push(...baselineSection(results));

  if (results.scale) {
    const scale = results.scale;
    out.push('## Scale', '');
    out.push(
      `The acceptance run (${scale.connections} connections, ${scale.durationS} s after a warm-up), then GET /jobs/{id} for random stored jobs, against files prefilled with finished jobs and their idempotency records (one transaction of INSERTs, synchronous=OFF for the prefill only, then flushed to disk). Each turn starts a server on a fresh copy of the prefilled file; the sizes take turns for ${scale.rounds} round(s), each round starting at the next size, and the median is shown. Bytes per job = (file + WAL) / jobs after a turn. Each turn runs the acceptance load with random UUIDv4 keys, then again with time-ordered UUIDv7 keys (what asyncfirst's client sends); the prefilled records have v4 keys.`,
      '',
    );
    out.push(
      table(
        [
          'Jobs in the file',
          'POST req/s (v4 keys)',
          'vs empty',
          'Each round',
          'POST req/s (v7 keys)',
          'vs empty (v7)',
          'POST p50',
          'POST p99',
          'GET req/s',
          'GET p50',
          'GET p99',
          'Errors',
          'Bytes/job (after a turn)',
          'Bytes/job (prefill)',
          'Prefill',
        ],
        scale.levels.map((level) => [
          formatInt(level.prefilled),
          formatInt(level.accept.rps),
          x(level.ratio),
          `${level.acceptRuns.map((rps) => formatInt(rps)).join(', ')} (best ${x(Math.max(...level.acceptRuns) / Math.max(...(scale.levels.find((candidate) => candidate.prefilled === 0)?.acceptRuns ?? [Number.NaN])))} of the empty file's best)`,
          formatInt(level.acceptV7.rps),
          x(level.ratioV7),
          ms(level.accept.p50),
          ms(level.accept.p99),
          formatInt(level.get.rps),
          ms(level.get.p50),
          ms(level.get.p99),
          String(level.accept.errors + level.accept.non2xx + level.get.errors + level.get.non2xx),
          formatInt(level.bytesPerJob),
          formatInt(level.bytesPerJobPrefilled),
          `${formatFixed(level.prefillSeconds, 1)} s`,
        ]),
      ),
      '',
    );
  }

  if (results.rss) {
    const rss = results.rss;
    const mib = (value: number) => `${formatFixed(value / MiB, 1)} MiB`;
    out.push('## Memory', '');
    out.push(
      `The demo server (worker on, concurrency ${rss.workerConcurrency}) under the acceptance load for ${rss.durationS} s (${formatInt(rss.load.rps)} req/s, ${rss.load.errors + rss.load.non2xx} errors); RSS read from /proc every ${rss.durationS > 10 ? '1 s' : '0.25 s'}; warm-up = the first ${rss.warmupS} s.`,
      '',
    );
    out.push(
      table(
        ['Idle', 'Start of load', 'After warm-up', 'End', 'Max', 'Slope after warm-up', 'Growth after warm-up'],
        [
          [
            mib(rss.idle),
            mib(rss.start),
            mib(rss.afterWarmup),
            mib(rss.end),
            mib(rss.max),
            `${formatFixed(rss.slopeMiBPerMin, 2)} MiB/min`,
            `${formatFixed(rss.growthPercent, 1)}%`,
          ],
        ],
      ),
      '',
    );
  }

  if (results.profile) {
    out.push(...boundsSection(results), '');
    for (const run of results.profile.runs) out.push(...profileSection(run, results.baseline?.short), '');
    if (results.profile.commits) out.push(...commitProbeSection(results.profile.commits), '');
    else if (results.profile.commitsSkipped) out.push("## PostgreSQL's own commit rates", '', `Skipped: ${results.profile.commitsSkipped}.`, '');
  }

  if (results.failures.length) {
    out.push('## Failures', '');
    for (const failure of results.failures) out.push(`- ${failure.part}: ${failure.message}`);
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function profileTitle(run: ProfileRun, baseline: string | undefined): string {
  if (run.name === 'drain-baseline') return `Where asyncfirst at ${baseline ?? 'the baseline'} spent its drain time`;
  if (run.name === 'acceptance-baseline') return `Where asyncfirst at ${baseline ?? 'the baseline'} spent its acceptance time`;
  if (run.name === 'drain') return 'Where asyncfirst spends its drain time';
  if (run.name === 'drain-pg') return 'Where asyncfirst spends its drain time on PostgreSQL';
  if (run.name === 'acceptance-pg') return 'Where asyncfirst spends its acceptance time on PostgreSQL';
  if (run.name === 'replay') return 'Where asyncfirst spends its replay time';
  return run.prefilled
    ? `Where asyncfirst spends its acceptance time with ${formatInt(run.prefilled)} jobs in the file`
    : 'Where asyncfirst spends its acceptance time';
}

/** What bounds each goal this run missed, in the profiles' numbers. */
function boundsSection(results: BenchResults): string[] {
  const runs = results.profile?.runs ?? [];
  const find = (name: ProfileRun['name']) => runs.find((run) => run.name === name);
  const pct = (value: number) => `${formatFixed(value, 1)}%`;
  const out = ['## What bounds the missed goals', ''];
  const accept = find('acceptance');
  const million = find('acceptance-1m');
  const drain = find('drain');
  const v7 = httpRow(results, 'asyncfirst-v7');
  const v4 = httpRow(results, 'asyncfirst');
  // A bullet for each goal this run missed (or could not decide), from the profile of that path.
  const goals = judgeGoals(results);
  const missed = (prefix: string) => goals.some((goal) => goal.goal.startsWith(prefix) && (goal.status === 'missed' || goal.status === 'inconclusive'));
  if (accept && missed('Acceptance ≥')) {
    out.push(
      `- **Acceptance.** Profiled at ${accept.throughput}, the main thread spent ${pct(sqliteShare(accept, true))} in the BEGIN/COMMIT of the groups (better-sqlite3's \`run\` from \`sqliteTransaction\`: writing the group's pages to the WAL; the fdatasync of the WAL and the checkpoints that copy it into the database file run off the main thread, on libuv's thread pool and a checkpoint thread) and ${pct(sqliteShare(accept, false))} in the statements themselves; ${pct(functionShare(accept, '(idle)'))} was idle. The bare route does none of this work, and the load generator shares the machine's cores. Each request adds an idempotency record whose key is random, so every insert dirties a different leaf page of the key index, and the COMMIT writes (and the checkpoint later rewrites) one 4 KiB page per request instead of a shared tail page.${v7 && v4 ? ` Sent time-ordered UUIDv7 keys, the same server answered ${formatInt(v7.rps)} req/s (${x(v7.ratio)} of bare Fastify) against ${formatInt(v4.rps)} (${x(v4.ratio)}) with random keys.` : ''}`,
    );
  }
  if (million && accept && missed('Acceptance at 1,000,000')) {
    const scaleRatio = results.scale?.levels.find((level) => level.prefilled === million.prefilled)?.ratio;
    const leaves = million.keyIndexLeaves;
    out.push(
      `- **Acceptance at ${formatInt(million.prefilled)} jobs.** Profiled at ${million.throughput} (empty file: ${accept.throughput}), BEGIN/COMMIT took ${pct(sqliteShare(million, true))} of the main thread (empty file: ${pct(sqliteShare(accept, true))}) and the statements ${pct(sqliteShare(million, false))} (${pct(sqliteShare(accept, false))}). ${scaleRatio !== undefined && Number.isFinite(scaleRatio) ? `The profiled pair differs less (${x(million.rate / accept.rate)}) than the scale part's medians (${x(scaleRatio)}): the profiles ran on files written just before, not on flushed copies, and under the profiler; their shares, not their rates, are the evidence here.` : ''} With ${formatInt(million.prefilled)} random keys the key index has ${leaves ? `${formatInt(leaves)} leaf pages (SQLite's dbstat on the profiled file, about ${formatInt((million.prefilled ?? 0) / leaves)} keys a page)` : 'tens of thousands of leaf pages'}: almost every insert reads a leaf that is not in SQLite's page cache, and the checkpoints write those scattered pages back into a file of several hundred MiB. (Tried outside this run and not kept: a 256 MiB page cache was slower, because SQLite scans its page cache at the end of each write transaction.) With time-ordered keys the index grows at its end, which the scale table's UUIDv7 column shows.`,
    );
  }
  const replay = find('replay');
  const replayRow = httpRow(results, 'replay');
  if (replay && replayRow && missed('Replay')) {
    const bareSame = httpRow(results, 'bare-same');
    const extraUs = bareSame ? 1e6 / replayRow.rps - 1e6 / bareSame.rps : Number.NaN;
    out.push(
      `- **Replay.** At ${formatInt(replayRow.rps)} against ${formatInt(bareSame?.rps)} req/s, a replay takes about ${formatFixed(extraUs, 1)} µs more of the whole system's time per request (1/req/s: server and load generator together) than the bare route. Profiled at ${replay.throughput}: the fingerprint (canonical JSON and SHA-256 of the request, which a replay must compute to tell a repeat from a reused key) took ${pct(replay.summary.srcInclusive.find((entry) => entry.name.startsWith('fingerprintRequest'))?.percent ?? 0)} of the main thread, better-sqlite3 ${pct(sqliteShare(replay, false) + sqliteShare(replay, true))} (the key lookup and job check inside the group's transaction, and its BEGIN/COMMIT, which writes nothing), writing the answers to the sockets ${pct(functionShare(replay, 'writev (native)'))}, and the thread was idle ${pct(functionShare(replay, '(idle)'))}: it waits for requests as much as it works, so at these rates the load generator, on the same two cores, is much of the limit, and every microsecond the server adds is taken from it. (Tried outside this run and not kept: answering replays from a lookup outside the group's transaction was about 2.6 times slower — 11.5k vs 29.7k req/s in one alternating run — and a \`perf\` profile points at lost batching: answered inside the socket's read callback, the replies left one by one instead of in a burst per event-loop turn, and the profile showed the loopback TCP sends rising from 9% to 17% of the server's CPU, and the standalone lookups, each its own read transaction, from 1.4% to 5.3%.)`,
    );
  }
  if (drain && missed('Drain ≥')) {
    out.push(
      `- **Drain.** Profiled at ${drain.throughput}: better-sqlite3 statements ${pct(sqliteShare(drain, false))}, BEGIN/COMMIT ${pct(sqliteShare(drain, true))}, garbage collection ${pct(functionShare(drain, '(garbage collector)'))}, idle ${pct(functionShare(drain, '(idle)'))}; the rest is the worker's JavaScript (promises, the result check, JSON). Each job costs a claim UPDATE and a finish UPDATE on the jobs table (with their partial indexes) and two event-log INSERTs carrying the job's snapshot, durably committed; BullMQ moves a job with a Lua script in Redis's memory, without fsync.`,
    );
  }
  out.push(...postgresBounds(results, (goal) => missed(goal)), ...baselineBounds(results, (goal) => missed(goal)));
  return out;
}

function profileSection(run: ProfileRun, baseline: string | undefined): string[] {
  const rowsOf = (entries: ProfileSummary['functions'], count: number) =>
    entries.slice(0, count).map((entry) => [entry.name, `${formatFixed(entry.percent, 1)}%`]);
  return [
    `## ${profileTitle(run, baseline)}`,
    '',
    `A V8 CPU profile of ${run.what} (${run.throughput} while profiled). The sampler is the one behind \`node --cpu-prof\` (1 ms interval), driven through node:inspector so that start-up is left out. Self time unless said otherwise; "(idle)" is time the main thread waited for I/O; "(native)" frames are C++ called from JavaScript (${POSTGRES_PROFILES.includes(run.name) ? "PostgreSQL's work happens in its own processes, not in this profile: the backends' CPU time is given below" : "better-sqlite3's `run` includes the COMMIT and its fsync"}).${run.file ? ` The profile is kept in \`${relative(REPO_ROOT, run.file)}\` (git-ignored; open it in Chrome DevTools or speedscope).` : ''}`,
    '',
    table(['Where', 'Self time'], rowsOf(run.summary.modules, 10)),
    '',
    table(['Function', 'Self time'], rowsOf(run.summary.functions, 15)),
    '',
    ...(POSTGRES_PROFILES.includes(run.name)
      ? databaseCostTable(run)
      : [table(['better-sqlite3 calls, by their nearest named caller', 'Self time'], rowsOf(run.summary.sqliteByCaller, 10))]),
    '',
    table(["asyncfirst's functions (src/), inclusive of what they call", 'Total time'], rowsOf(run.summary.srcInclusive, 12)),
  ];
}
