import { TELEMETRY_LABELS, TELEMETRY_SETTINGS, type TelemetryPart } from '../parts/telemetry.js';
import { formatFixed, formatInt } from './context.js';
import type { BenchResults, Goal } from './report.js';
import { ms, table } from './report-format.js';
import { median } from './stats.js';

/*
 * The telemetry part: acceptance and drain with metrics and tracing on (no SDK registered) against
 * METRICS=off TRACING=off, measured in turns in this run. The cost is 1 − on/off.
 */

/** The bound on the cost. */
const MAX_COST = 0.03;

export const TELEMETRY_GOAL = 'Metrics and tracing with no SDK registered: ≤3% cost to acceptance req/s and to drain jobs/s (against METRICS=off TRACING=off)';

interface Cost {
  /** 1 − on/off on the medians of the rounds. */
  median: number;
  /** 1 − on/off on the best round of each (interference only ever slows a turn down). */
  best: number;
  on: number;
  off: number;
}

function costOf(on: number[], off: number[]): Cost | undefined {
  if (on.length === 0 || off.length === 0) return undefined;
  return { median: 1 - median(on) / median(off), best: 1 - Math.max(...on) / Math.max(...off), on: median(on), off: median(off) };
}

function costs(part: TelemetryPart): { acceptance: Cost | undefined; drain: Cost | undefined } {
  const complete = (setting: 'on' | 'off') => part.drain[setting].filter((run) => run.drained === run.jobs).map((run) => run.jobsPerSec);
  return {
    acceptance: costOf(
      part.acceptance.on.map((run) => run.rps),
      part.acceptance.off.map((run) => run.rps),
    ),
    drain: costOf(complete('on'), complete('off')),
  };
}

const percent = (share: number) => `${formatFixed(100 * share, 1)}%`;

export function telemetryGoals(results: BenchResults): Goal[] {
  const part = results.telemetry;
  const measured = part ? costs(part) : undefined;
  if (!part || !measured?.acceptance || !measured.drain) return [{ goal: TELEMETRY_GOAL, measured: '–', status: 'not measured' }];
  const { acceptance, drain } = measured;
  const medianMet = acceptance.median <= MAX_COST && drain.median <= MAX_COST;
  const bestMet = acceptance.best <= MAX_COST && drain.best <= MAX_COST;
  const status = medianMet && bestMet ? 'met' : medianMet !== bestMet ? 'inconclusive' : 'missed';
  const worst = Math.max(acceptance.median, acceptance.best, drain.median, drain.best);
  return [
    {
      goal: TELEMETRY_GOAL,
      measured: `acceptance ${percent(acceptance.median)} on medians (${formatInt(acceptance.on)} vs ${formatInt(acceptance.off)} req/s), ${percent(acceptance.best)} on the best of ${part.rounds} rounds; drain ${percent(drain.median)} on medians (${formatInt(drain.on)} vs ${formatInt(drain.off)} jobs/s), ${percent(drain.best)} on the best`,
      status,
      ...(status === 'met' ? {} : { by: `${formatFixed(100 * (worst - MAX_COST), 1)} points over 3% at the worst` }),
    },
  ];
}

/** The console table's rows (Part, Target, Throughput, p50, p99, Errors, Ratio, Note). */
export function telemetryConsoleRows(results: BenchResults): string[][] {
  const part = results.telemetry;
  if (!part) return [];
  const measured = costs(part);
  const rows: string[][] = [];
  for (const setting of TELEMETRY_SETTINGS) {
    const runs = part.acceptance[setting];
    rows.push([
      'telemetry',
      `acceptance, ${TELEMETRY_LABELS[setting]}`,
      `${formatInt(median(runs.map((run) => run.rps)))} req/s`,
      ms(median(runs.map((run) => run.p50))),
      ms(median(runs.map((run) => run.p99))),
      String(runs.reduce((total, run) => total + run.errors + run.non2xx, 0)),
      setting === 'on' && measured.acceptance ? `cost ${percent(measured.acceptance.median)}` : '',
      `median of ${runs.length}`,
    ]);
  }
  for (const setting of TELEMETRY_SETTINGS) {
    const runs = part.drain[setting];
    rows.push([
      'telemetry',
      `drain, ${TELEMETRY_LABELS[setting]}`,
      `${formatInt(median(runs.map((run) => run.jobsPerSec)))} jobs/s`,
      '',
      '',
      '',
      setting === 'on' && measured.drain ? `cost ${percent(measured.drain.median)}` : '',
      `median of ${runs.length}; concurrency ${part.drainConcurrency}, ${formatInt(part.drainJobs)} jobs`,
    ]);
  }
  return rows;
}

/** RESULTS.md's section. */
export function telemetrySection(results: BenchResults): string[] {
  const part = results.telemetry;
  if (!part) return [];
  const measured = costs(part);
  const cell = (cost: Cost | undefined) => (cost ? `${percent(cost.median)} (best of rounds: ${percent(cost.best)})` : '–');
  return [
    '## Metrics and tracing, on and off',
    '',
    `What the Prometheus metrics and the OpenTelemetry tracing cost when the application registers no SDK: asyncfirst with both on (the defaults) and with \`METRICS=off TRACING=off\`, taking turns for ${part.rounds} round(s) (on then off, then off then on). Acceptance as in the acceptance part (the demo server, worker off, ${part.connections} connections, a ${part.warmupS} s warm-up, then ${part.durationS} s measured, random UUIDv4 keys); the drain of ${formatInt(part.drainJobs)} stored jobs with the no-op handler at concurrency ${part.drainConcurrency}, ${part.drainsPerRound ?? 1} drain(s) of each setting per round, taking turns. Cost = 1 − on/off, on the medians and on the best round of each.`,
    '',
    table(
      ['', 'On (req/s or jobs/s)', 'Off', 'Cost', 'Each round, on', 'Each round, off'],
      [
        [
          'Acceptance',
          formatInt(measured.acceptance?.on),
          formatInt(measured.acceptance?.off),
          cell(measured.acceptance),
          part.acceptance.on.map((run) => formatInt(run.rps)).join(', '),
          part.acceptance.off.map((run) => formatInt(run.rps)).join(', '),
        ],
        [
          'Drain',
          formatInt(measured.drain?.on),
          formatInt(measured.drain?.off),
          cell(measured.drain),
          part.drain.on.map((run) => formatInt(run.jobsPerSec)).join(', '),
          part.drain.off.map((run) => formatInt(run.jobsPerSec)).join(', '),
        ],
      ],
    ),
    '',
  ];
}
