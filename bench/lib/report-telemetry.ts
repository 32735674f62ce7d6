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
 * showed no cost.) Each turn's CPU time per request or job is paired the same way: the added work
 * is on the CPU alone, so its cost to the throughput is at most 1 − off/on of the CPU time, and the
 * CPU time is steady where the req/s of an acceptance waiting on the disk is not.
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

/**
 * Pairs the i-th value of one setting with the other's i-th (the turns were taken in pairs) and
 * costs each pair: `throughput` 1 − on/off, `cpu` 1 − off/on (CPU time per request or job, where
 * more is worse: the throughput a CPU-bound process would lose).
 */
function costOf(on: Array<number | undefined>, off: Array<number | undefined>, kind: 'throughput' | 'cpu'): Cost | undefined {
  const pairs: Array<[number, number]> = [];
  for (let index = 0; index < Math.min(on.length, off.length); index++) {
    const a = on[index];
    const b = off[index];
    if (a !== undefined && b !== undefined && a > 0 && b > 0) pairs.push([a, b]);
  }
  const paired = pairs.map(([a, b]) => (kind === 'throughput' ? 1 - a / b : 1 - b / a));
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

interface Costs {
  acceptance: Cost | undefined;
  drain: Cost | undefined;
  acceptanceCpu: Cost | undefined;
  drainCpu: Cost | undefined;
}

function costs(part: TelemetryPart): Costs {
  // A drain that did not finish has no rate: its pair is left out.
  const finished = (setting: 'on' | 'off', value: (run: TelemetryPart['drain']['on'][number]) => number | undefined) =>
    part.drain[setting].map((run) => (run.drained === run.jobs ? value(run) : undefined));
  return {
    acceptance: costOf(
      part.acceptance.on.map((run) => run.rps),
      part.acceptance.off.map((run) => run.rps),
      'throughput',
    ),
    drain: costOf(
      finished('on', (run) => run.jobsPerSec),
      finished('off', (run) => run.jobsPerSec),
      'throughput',
    ),
    // Absent from results written before the CPU time was measured.
    acceptanceCpu: part.acceptanceCpuUs ? costOf(part.acceptanceCpuUs.on, part.acceptanceCpuUs.off, 'cpu') : undefined,
    drainCpu: costOf(
      finished('on', (run) => run.cpuUsPerJob),
      finished('off', (run) => run.cpuUsPerJob),
      'cpu',
    ),
  };
}

/**
 * How one path (acceptance, or the drain) stands against the bound: met when the interval of its
 * throughput cost, or of its CPU cost (which bounds the throughput cost: the added work is on the
 * CPU alone), is at or under it; missed when either interval is wholly over it.
 */
function standing(throughput: Cost, cpu: Cost | undefined): 'met' | 'missed' | 'inconclusive' {
  if (throughput.low > MAX_COST || (cpu && cpu.low > MAX_COST)) return 'missed';
  if (throughput.high <= MAX_COST || (cpu && cpu.high <= MAX_COST)) return 'met';
  return 'inconclusive';
}

const percent = (share: number) => `${formatFixed(100 * share, 1)}%`;
const described = (cost: Cost) =>
  `${percent(cost.median)} (${Math.round(100 * cost.coverage)}% interval ${percent(cost.low)} to ${percent(cost.high)}, ${cost.pairs} pairs)`;

export function telemetryGoals(results: BenchResults): Goal[] {
  const part = results.telemetry;
  const measured = part ? costs(part) : undefined;
  if (!part || !measured?.acceptance || !measured.drain) return [{ goal: TELEMETRY_GOAL, measured: '–', status: 'not measured' }];
  const { acceptance, drain, acceptanceCpu, drainCpu } = measured;
  const each = [standing(acceptance, acceptanceCpu), standing(drain, drainCpu)];
  const status = each.includes('missed') ? 'missed' : each.every((one) => one === 'met') ? 'met' : 'inconclusive';
  const cpuText = (cost: Cost | undefined, unit: string) =>
    cost ? `; CPU ${described(cost)} (${formatFixed(cost.on, 1)} vs ${formatFixed(cost.off, 1)} µs a ${unit})` : '';
  const bound = (throughput: Cost, cpu: Cost | undefined) => Math.min(throughput.high, cpu?.high ?? Number.POSITIVE_INFINITY);
  const worst = Math.max(bound(acceptance, acceptanceCpu), bound(drain, drainCpu));
  return [
    {
      goal: TELEMETRY_GOAL,
      measured: `median paired cost: acceptance req/s ${described(acceptance)} (${formatInt(acceptance.on)} vs ${formatInt(acceptance.off)} req/s)${cpuText(acceptanceCpu, 'request')}; drain jobs/s ${described(drain)} (${formatInt(drain.on)} vs ${formatInt(drain.off)} jobs/s)${cpuText(drainCpu, 'job')}`,
      status,
      ...(status === 'met' ? {} : { by: `the tighter interval reaches ${formatFixed(100 * (worst - MAX_COST), 1)} points over 3%` }),
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
    `What the Prometheus metrics and the OpenTelemetry tracing cost when the application registers no SDK: asyncfirst with both on (the defaults) and with \`METRICS=off TRACING=off\`, taking turns for ${part.rounds} round(s) (on then off, then off then on). Acceptance as in the acceptance part (the demo server, worker off, ${part.connections} connections, a ${part.warmupS} s warm-up, then ${part.durationS} s measured, random UUIDv4 keys); the drain of ${formatInt(part.drainJobs)} stored jobs with the no-op handler at concurrency ${part.drainConcurrency}, ${part.drainsPerRound ?? 1} drain(s) of each setting per round, taking turns. Each turn is paired with the other setting's turn beside it (the i-th drain of a round with the other's i-th); the cost of a pair is 1 − on/off, and the goal is judged on the median of the paired costs with a distribution-free confidence interval for it (from order statistics): met when the interval is at or under 3%, missed when it is over, inconclusive when it straddles 3%. The CPU time of the server (or the drain child) per request (or job), all its threads, is paired the same way, with the cost 1 − off/on: metrics and tracing add work on the CPU alone, so what they cost the throughput is at most that (all of it for a process bound by its CPU, less for one that waits on the disk), and it does not swing with the disk's latency. A path meets the goal when the interval of either cost is at or under 3%.`,
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
        [
          'Acceptance, CPU µs a request',
          formatFixed(measured.acceptanceCpu?.on, 1),
          formatFixed(measured.acceptanceCpu?.off, 1),
          cell(measured.acceptanceCpu),
          (part.acceptanceCpuUs?.on ?? []).map((us) => formatFixed(us, 1)).join(', '),
          (part.acceptanceCpuUs?.off ?? []).map((us) => formatFixed(us, 1)).join(', '),
        ],
        [
          'Drain, CPU µs a job',
          formatFixed(measured.drainCpu?.on, 1),
          formatFixed(measured.drainCpu?.off, 1),
          cell(measured.drainCpu),
          part.drain.on.map((run) => formatFixed(run.cpuUsPerJob, 1)).join(', '),
          part.drain.off.map((run) => formatFixed(run.cpuUsPerJob, 1)).join(', '),
        ],
      ],
    ),
    '',
  ];
}
