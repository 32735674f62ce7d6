import { TELEMETRY_LABELS, TELEMETRY_SETTINGS, type TelemetryPart } from '../parts/telemetry.js';
import { formatFixed, formatInt } from './context.js';
import type { BenchResults, Goal } from './report.js';
import { ms, table } from './report-format.js';
import { median, medianInterval } from './stats.js';

/*
 * The telemetry part: acceptance and drain with metrics and tracing on (no SDK registered) against
 * METRICS=off TRACING=off, measured in turns in this run. The cost of a pair of turns is
 * 1 − on/off; the goal is judged on the median of the paired costs, with a distribution-free
 * confidence interval for that median: met when the whole interval is at or under the bound,
 * missed when the whole interval is over it, inconclusive when it straddles it. (Comparing the
 * medians or the best turns of each setting, as this part first did, let one slow stretch of the
 * machine decide: in two runs the best turns differed by more than the bound while the medians
 * showed no cost.)
 */

/** The bound on the cost. */
const MAX_COST = 0.03;
/** The confidence interval's coverage (at least; order statistics give steps). */
const COVERAGE = 0.9;

export const TELEMETRY_GOAL = 'Metrics and tracing with no SDK registered: ≤3% cost to acceptance req/s and to drain jobs/s (against METRICS=off TRACING=off)';

interface Cost {
  /** The median of the paired costs 1 − on/off. */
  median: number;
  /** Its confidence interval. */
  low: number;
  high: number;
  coverage: number;
  pairs: number;
  /** The medians of each setting's turns, for the table. */
  on: number;
  off: number;
}

/** Pairs the i-th value of one setting with the other's i-th (the turns were taken in pairs). */
function costOf(on: Array<number | undefined>, off: Array<number | undefined>): Cost | undefined {
  const pairs: Array<[number, number]> = [];
  for (let index = 0; index < Math.min(on.length, off.length); index++) {
    const a = on[index];
    const b = off[index];
    if (a !== undefined && b !== undefined && b > 0) pairs.push([a, b]);
  }
  const paired = pairs.map(([a, b]) => 1 - a / b);
  const interval = medianInterval(paired, COVERAGE);
  if (!interval) return undefined;
  return {
    median: median(paired),
    low: interval.low,
    high: interval.high,
    coverage: interval.coverage,
    pairs: pairs.length,
    on: median(pairs.map(([a]) => a)),
    off: median(pairs.map(([, b]) => b)),
  };
}

function costs(part: TelemetryPart): { acceptance: Cost | undefined; drain: Cost | undefined } {
  // A drain that did not finish has no rate: its pair is left out.
  const drains = (setting: 'on' | 'off') => part.drain[setting].map((run) => (run.drained === run.jobs ? run.jobsPerSec : undefined));
  return {
    acceptance: costOf(
      part.acceptance.on.map((run) => run.rps),
      part.acceptance.off.map((run) => run.rps),
    ),
    drain: costOf(drains('on'), drains('off')),
  };
}

const percent = (share: number) => `${formatFixed(100 * share, 1)}%`;
const described = (cost: Cost) =>
  `${percent(cost.median)} (${Math.round(100 * cost.coverage)}% interval ${percent(cost.low)} to ${percent(cost.high)}, ${cost.pairs} pairs)`;

export function telemetryGoals(results: BenchResults): Goal[] {
  const part = results.telemetry;
  const measured = part ? costs(part) : undefined;
  if (!part || !measured?.acceptance || !measured.drain) return [{ goal: TELEMETRY_GOAL, measured: '–', status: 'not measured' }];
  const { acceptance, drain } = measured;
  const both = [acceptance, drain];
  const status = both.every((cost) => cost.high <= MAX_COST) ? 'met' : both.some((cost) => cost.low > MAX_COST) ? 'missed' : 'inconclusive';
  const worst = Math.max(acceptance.high, drain.high);
  return [
    {
      goal: TELEMETRY_GOAL,
      measured: `median paired cost: acceptance ${described(acceptance)} (${formatInt(acceptance.on)} vs ${formatInt(acceptance.off)} req/s); drain ${described(drain)} (${formatInt(drain.on)} vs ${formatInt(drain.off)} jobs/s)`,
      status,
      ...(status === 'met' ? {} : { by: `the interval reaches ${formatFixed(100 * (worst - MAX_COST), 1)} points over 3%` }),
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
  const cell = (cost: Cost | undefined) => (cost ? described(cost) : '–');
  return [
    '## Metrics and tracing, on and off',
    '',
    `What the Prometheus metrics and the OpenTelemetry tracing cost when the application registers no SDK: asyncfirst with both on (the defaults) and with \`METRICS=off TRACING=off\`, taking turns for ${part.rounds} round(s) (on then off, then off then on). Acceptance as in the acceptance part (the demo server, worker off, ${part.connections} connections, a ${part.warmupS} s warm-up, then ${part.durationS} s measured, random UUIDv4 keys); the drain of ${formatInt(part.drainJobs)} stored jobs with the no-op handler at concurrency ${part.drainConcurrency}, ${part.drainsPerRound ?? 1} drain(s) of each setting per round, taking turns. Each turn is paired with the other setting's turn beside it (the i-th drain of a round with the other's i-th); the cost of a pair is 1 − on/off, and the goal is judged on the median of the paired costs with a distribution-free confidence interval for it (from order statistics): met when the interval is at or under 3%, missed when it is over, inconclusive when it straddles 3%.`,
    '',
    table(
      ['', 'On (req/s or jobs/s, median)', 'Off', 'Median paired cost', 'Each round, on', 'Each round, off'],
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
