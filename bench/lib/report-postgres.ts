import { COMPARABLE_CONCURRENCY, type DrainRun } from '../parts/drain.js';
import type { ProfileRun } from '../parts/profile.js';
import type { CommitProbe } from './commit-probe.js';
import { formatFixed, formatInt } from './context.js';
import type { DatabaseWindow } from './postgres.js';
import type { BenchResults, Goal } from './report.js';
import { drainRow, drainRunAt, httpRow, ms, table, x } from './report-format.js';
import { median } from './stats.js';

/*
 * The PostgreSQL rows of the report: their goals, what bounds a miss (from the profiles, the
 * round trips counted and PostgreSQL's own commit rates), and the commit probe's table.
 */

const COMPARABLE = `concurrency ${COMPARABLE_CONCURRENCY}`;

export const POSTGRES_GOALS = {
  acceptance: 'Acceptance on PostgreSQL ≥ 3x Fastify + pg-boss req/s',
  drain: 'Drain on PostgreSQL ≥ graphile-worker jobs/s',
  latency: '202 → handler start on PostgreSQL p50 < 5 ms',
} as const;

const pct = (value: number) => `${formatFixed(value, 1)}%`;

/** Round by round, ours over theirs (the runs are in round order). */
function pairedRatios(ours: readonly { rps: number }[], theirs: readonly { rps: number }[]): number[] {
  return ours.flatMap((run, index) => {
    const other = theirs[index];
    return other ? [run.rps / other.rps] : [];
  });
}

/** The issue's PostgreSQL goals, judged on this run's numbers. */
export function postgresGoals(results: BenchResults): Goal[] {
  const goals: Goal[] = [];
  const ours = httpRow(results, 'asyncfirst-pg');
  const boss = httpRow(results, 'pgboss');
  if (ours && boss) {
    // pg-boss runs right before asyncfirst in every round: the ratio of each round's pair is judged beside the ratio of the medians.
    const ratio = ours.rps / boss.rps;
    const paired = pairedRatios(ours.runs, boss.runs);
    const pairedMedian = median(paired);
    const errors = ours.errors + ours.non2xx;
    const mediansMet = ratio >= 3;
    const pairsMet = !(pairedMedian < 3);
    const status = errors > 0 || (!mediansMet && !pairsMet) ? 'missed' : mediansMet && pairsMet ? 'met' : 'inconclusive';
    goals.push({
      goal: POSTGRES_GOALS.acceptance,
      measured: `${x(ratio)} on medians (${formatInt(ours.rps)} vs ${formatInt(boss.rps)} req/s)${paired.length > 1 ? `, ${x(pairedMedian)} the median of the rounds' ratios (${paired.map(x).join(', ')})` : ''}; p99 ${ms(ours.p99)} vs ${ms(boss.p99)}; ${errors} errors`,
      status,
      ...(status === 'met'
        ? {}
        : {
            by:
              errors > 0
                ? `${errors} errors`
                : `${x(3 - Math.min(ratio, pairedMedian))} short (${mediansMet ? 'rounds' : 'medians'}; needs ${formatInt(3 * boss.rps)} req/s)`,
          }),
    });
  } else goals.push({ goal: POSTGRES_GOALS.acceptance, measured: ours ? `${formatInt(ours.rps)} req/s; pg-boss not measured` : '–', status: 'not measured' });

  const pairOurs = drainRunAt(results, 'asyncfirst-pg', COMPARABLE);
  const pairTheirs = drainRunAt(results, 'graphile', COMPARABLE);
  const bestOurs = drainRow(results, 'asyncfirst-pg')?.best;
  const bestTheirs = drainRow(results, 'graphile')?.best;
  if (pairOurs && pairTheirs && bestOurs && bestTheirs) {
    const pair = pairOurs.jobsPerSec / pairTheirs.jobsPerSec;
    const best = bestOurs.jobsPerSec / bestTheirs.jobsPerSec;
    const shortfalls = [
      ...(pair < 1 ? [`${pct(100 * (1 - pair))} short at ${COMPARABLE} each (needs ${formatInt(pairTheirs.jobsPerSec)} jobs/s)`] : []),
      ...(best < 1 ? [`${pct(100 * (1 - best))} short of graphile-worker's best (${formatInt(bestTheirs.jobsPerSec)} jobs/s at ${bestTheirs.config})`] : []),
    ];
    goals.push({
      goal: POSTGRES_GOALS.drain,
      measured: `${COMPARABLE} each: ${x(pair)} (${formatInt(pairOurs.jobsPerSec)} vs ${formatInt(pairTheirs.jobsPerSec)} jobs/s); best of each: ${x(best)} (${formatInt(bestOurs.jobsPerSec)} at ${bestOurs.config} vs ${formatInt(bestTheirs.jobsPerSec)} at ${bestTheirs.config})`,
      status: shortfalls.length ? 'missed' : 'met',
      ...(shortfalls.length ? { by: shortfalls.join('; ') } : {}),
    });
  } else
    goals.push({
      goal: POSTGRES_GOALS.drain,
      measured: bestOurs ? `${formatInt(bestOurs.jobsPerSec)} jobs/s; graphile-worker not measured` : '–',
      status: 'not measured',
    });

  const latency = results.latencyPostgres;
  if (latency && latency.fromResponse.count > 0) {
    const p50 = latency.fromResponse.p50;
    goals.push({
      goal: POSTGRES_GOALS.latency,
      measured: `p50 ${ms(p50, 2)}, p99 ${ms(latency.fromResponse.p99, 2)} at ${latency.rate} req/s (worker concurrency ${latency.workerConcurrency}; ${latency.fromResponse.count} of the ${latency.accepted} accepted jobs started)`,
      status: p50 < 5 ? 'met' : 'missed',
      ...(p50 < 5 ? {} : { by: `${ms(p50 - 5, 2)} over` }),
    });
  } else
    goals.push({
      goal: POSTGRES_GOALS.latency,
      measured: results.latencyPostgresSkipped ? `skipped: ${results.latencyPostgresSkipped}` : '–',
      status: 'not measured',
    });
  return goals;
}

/** Round trips and CPU time per unit (202 or job) of a database window. */
function perUnit(window: DatabaseWindow, units: number) {
  const statements = Object.entries(window.byStatement)
    .map(([statement, count]) => ({ statement, perUnit: count / units, meanMs: (window.queryMs?.[statement] ?? Number.NaN) / count }))
    .sort((a, b) => b.perUnit - a.perUnit);
  const totalMs = Object.values(window.queryMs ?? {}).reduce((sum, value) => sum + value, 0);
  return {
    roundTrips: window.queries / units,
    statements,
    /** Mean milliseconds from sending a query to its answer. */
    meanRoundTripMs: window.queries && window.queryMs ? totalMs / window.queries : Number.NaN,
    commits: (window.byStatement.COMMIT ?? 0) / units,
    notifications: window.notifications === undefined ? undefined : window.notifications / units,
    processUs: (window.processCpuSeconds * 1e6) / units,
    backendUs: (window.backendCpuSeconds * 1e6) / units,
    /** Cores in use over the window. */
    processCores: window.processCpuSeconds / window.seconds,
    backendCores: window.backendCpuSeconds / window.seconds,
  };
}

/** "asyncfirst_accept_jobs 0.09 (4.1 ms), …": per unit, with each statement's mean round trip. */
function statementList(window: DatabaseWindow, units: number, count = 8): string {
  const listed = perUnit(window, units)
    .statements.slice(0, count)
    .map(
      (entry) =>
        `${entry.statement} ${formatFixed(entry.perUnit, entry.perUnit < 0.01 ? 4 : 2)}${Number.isFinite(entry.meanMs) ? ` at ${formatFixed(entry.meanMs, 1)} ms` : ''}`,
    );
  return listed.length ? listed.join(', ') : 'none';
}

/** The busiest frames of a profile, idle left out (it is said separately). */
function topFrames(run: ProfileRun, count = 5): string {
  return run.summary.functions
    .filter((entry) => entry.name !== '(idle)')
    .slice(0, count)
    .map((entry) => `\`${entry.name}\` ${pct(entry.percent)}`)
    .join(', ');
}

function moduleShare(run: ProfileRun, test: (name: string) => boolean): number {
  return run.summary.modules.filter((entry) => test(entry.name)).reduce((sum, entry) => sum + entry.percent, 0);
}

function functionShare(run: ProfileRun, names: string[]): number {
  return run.summary.functions.filter((entry) => names.includes(entry.name)).reduce((sum, entry) => sum + entry.percent, 0);
}

const isNodePostgres = (name: string) => name === 'pg' || name === 'pg-protocol' || name === 'pg-pool' || name === 'pg-types';
/** The native frames of a socket write (node-postgres's messages and the HTTP answers). */
const SOCKET_WRITES = ['writev (native)', 'writeBuffer (native)', 'writeUtf8String (native)'];
/** The thread is waiting more than working past this share of idle time. */
const WAITING = 25;

type Measured = ProfileRun & { database: DatabaseWindow; units: number };

function measured(run: ProfileRun | undefined): Measured | undefined {
  return run?.database && run.units ? { ...run, database: run.database, units: run.units } : undefined;
}

/** What the process and the database did per unit. */
function costSentences(run: Measured, unit: string): string {
  const cost = perUnit(run.database, run.units);
  const notified =
    cost.notifications === undefined
      ? ''
      : `, and ${formatFixed(cost.notifications, 3)} notifications on asyncfirst's channel (one per committed transaction that NOTIFYs)`;
  return `Per ${unit} the process sent ${formatFixed(cost.roundTrips, cost.roundTrips < 0.1 ? 3 : 2)} round trips (by statement, each at its mean time from sending to answer: ${statementList(run.database, run.units)}), ${formatFixed(cost.commits, 3)} COMMITs of explicit transactions${notified}; it used ${formatInt(cost.processUs)} µs of CPU per ${unit}, the PostgreSQL backends serving it ${formatInt(cost.backendUs)} µs. Its main thread was idle ${pct(functionShare(run, ['(idle)']))} of the time, in node-postgres ${pct(moduleShare(run, isNodePostgres))}, in socket writes ${pct(functionShare(run, SOCKET_WRITES))} (on loopback the sender's write also does the receiving side's TCP work); the busiest frames: ${topFrames(run)}.`;
}

/** Where the machine's cores went over the window, and whether they were the limit. */
function machineSentence(run: Measured, cores: number): { text: string; saturated: boolean } {
  const cost = perUnit(run.database, run.units);
  const busy = run.database.machineBusyCores;
  if (busy === undefined) return { text: '', saturated: false };
  const generator = run.loadGeneratorCores;
  const rest = busy - cost.processCores - cost.backendCores - (generator ?? 0);
  const saturated = busy >= 0.9 * cores;
  return {
    text: ` The machine's ${cores} cores were ${formatFixed(busy, 2)} busy over the window, every process counted: the process ${formatFixed(cost.processCores, 2)}, its PostgreSQL backends ${formatFixed(cost.backendCores, 2)}${generator === undefined ? '' : `, the load generator ${formatFixed(generator, 2)}`}, everything else (other PostgreSQL processes, the kernel, other users' work) ${formatFixed(Math.max(0, rest), 2)}.`,
    saturated,
  };
}

/** PostgreSQL's own commit rates, as a sentence. */
function probeSentence(probe: CommitProbe | undefined): string {
  if (!probe) return '';
  const rate = (shape: keyof CommitProbe['rates']) => formatInt(probe.rates[shape].median);
  return ` For scale, PostgreSQL alone on this machine (the probe below) commits ${rate('insert')} one-row INSERTs/s on ${probe.connections} connections, ${rate('insert + notify')}/s when each also NOTIFYs (the commits of notifying transactions are serialized: each takes one cluster-wide lock before its commit and holds it until its commit record is flushed), and ${rate('transaction')} four-round-trip transactions/s, ${rate('transaction + notify')}/s with NOTIFY.`;
}

/**
 * What the worker's round trips allow if they run one after another (a claim, then the finishes
 * of what it claimed): jobs per claim over (round trips per claim × their mean time), against
 * what was measured.
 */
function cycleSentence(window: DatabaseWindow, jobs: number, measuredRate: number): string {
  const claims = window.byStatement.asyncfirst_claim_queued;
  const meanMs = perUnit(window, jobs).meanRoundTripMs;
  if (!claims || !Number.isFinite(meanMs)) return '';
  const roundTripsPerClaim = window.queries / claims;
  const predicted = jobs / claims / ((roundTripsPerClaim * meanMs) / 1000);
  const near = Math.abs(Math.log(predicted / measuredRate)) < Math.log(1.6);
  return `A claim and the finishes of what it claimed took ${formatFixed(roundTripsPerClaim, 1)} round trips, at ${formatFixed(meanMs, 2)} ms each on average; one after another they would allow ${formatInt(predicted)} jobs/s, ${near ? `near the ${formatInt(measuredRate)} measured: the latency of those round trips in sequence is the bound` : `against ${formatInt(measuredRate)} measured (so they overlapped, or something else bounds it)`}.`;
}

/** A window without the acceptance statements: what the worker sent. */
function workerWindow(window: DatabaseWindow): DatabaseWindow {
  const isAcceptance = (statement: string) => statement.includes('accept');
  const keep = (record: Record<string, number> | undefined) =>
    Object.fromEntries(Object.entries(record ?? {}).filter(([statement]) => !isAcceptance(statement)));
  const byStatement = keep(window.byStatement);
  return { ...window, byStatement, queryMs: keep(window.queryMs), queries: Object.values(byStatement).reduce((sum, count) => sum + count, 0) };
}

/** A bullet for each PostgreSQL goal this run missed. */
export function postgresBounds(results: BenchResults, missed: (goal: string) => boolean): string[] {
  const out: string[] = [];
  const runs = results.profile?.runs ?? [];
  const probe = results.profile?.commits;
  const cores = results.machine.cores;

  const accept = measured(runs.find((run) => run.name === 'acceptance-pg'));
  if (accept && missed(POSTGRES_GOALS.acceptance)) {
    const ours = httpRow(results, 'asyncfirst-pg');
    const boss = httpRow(results, 'pgboss');
    const cost = perUnit(accept.database, accept.units);
    const machine = machineSentence(accept, cores);
    const connections = results.http?.connections ?? 50;
    // Little's law: with every connection waiting for its answer, the mean time a request spends in the system.
    const inSystemMs = (1000 * connections) / accept.rate;
    const batch = cost.statements[0];
    const perStatement = batch && batch.perUnit > 0 ? 1 / batch.perUnit : Number.NaN;
    const verdict = machine.saturated
      ? "The machine's cores were the limit: the server, its backends and the load generator (and whatever else ran) shared two cores, so a faster server alone would not raise this rate by much."
      : functionShare(accept, ['(idle)']) >= WAITING
        ? `The server was not out of CPU (its thread idle ${pct(functionShare(accept, ['(idle)']))}) and neither was the machine: each request spent about ${formatFixed(inSystemMs, 1)} ms in the system (${connections} connections / ${formatInt(accept.rate)} req/s), of which its batch's statement${batch ? ` (${batch.statement}, about ${formatFixed(perStatement, 1)} acceptances per statement)` : ''} took ${formatFixed(batch?.meanMs, 1)} ms: the rest is waiting for a turn on the event loop, for a pooled connection, and for the load generator.`
        : `The server's own CPU was the nearer bound: ${formatInt(cost.processUs)} µs per 202, its one thread busy ${pct(100 - functionShare(accept, ['(idle)']))} of the time (${formatFixed(cost.processCores, 2)} of a core)${accept.database.machineBusyCores !== undefined && accept.database.machineBusyCores >= 0.75 * cores ? `, with the machine itself ${formatFixed(accept.database.machineBusyCores, 2)} of ${cores} cores busy` : ''}; the largest single part of it is the socket writes (the 202s to the load generator, the batches to PostgreSQL).`;
    out.push(
      `- **Acceptance on PostgreSQL.** ${formatInt(ours?.rps)} req/s against pg-boss's ${formatInt(boss?.rps)} (medians: ${x((ours?.rps ?? Number.NaN) / (boss?.rps ?? Number.NaN))}). Profiled at ${accept.throughput}. ${costSentences(accept, '202')}${machine.text} ${verdict}${probeSentence(probe)} pg-boss's send() is one INSERT per job in its own transaction, without NOTIFY.`,
    );
  }

  const drain = measured(runs.find((run) => run.name === 'drain-pg'));
  if (drain && missed(POSTGRES_GOALS.drain)) {
    const machine = machineSentence(drain, cores);
    const claims = drain.database.byStatement.asyncfirst_claim_queued;
    const graphile = drainRunAt(results, 'graphile', COMPARABLE);
    const batched = drainRow(results, 'graphile')?.runs.find((run) => run.config !== COMPARABLE && run.database);
    const rows = drainRow(results, 'asyncfirst-pg')?.runs ?? [];
    const bestOurs = drainRow(results, 'asyncfirst-pg')?.best;
    const bestTheirs = drainRow(results, 'graphile')?.best;
    const theirs = (run: DrainRun | undefined) =>
      run?.database
        ? `${formatFixed(run.database.queries / run.jobs, run.database.queries / run.jobs < 0.1 ? 4 : 2)} round trips, ${formatInt((run.database.processCpuSeconds * 1e6) / run.jobs)} µs of its process's CPU and ${formatInt((run.database.backendCpuSeconds * 1e6) / run.jobs)} µs of backend CPU per job (${statementList(run.database, run.jobs, 3)})`
        : 'not counted';
    // The best runs: the drain process's CPU over the drain, in cores (one thread: near 1 is a saturated event loop).
    const processCores = (run: DrainRun | undefined) => (run?.database ? run.database.processCpuSeconds / run.database.seconds : Number.NaN);
    const cycle = claims
      ? ` At this concurrency the worker claims up to ${COMPARABLE_CONCURRENCY} jobs (${formatFixed(drain.units / claims, 1)} per claim here), runs them and finishes them in a batch before it can claim that many again. ${cycleSentence(drain.database, drain.units, drain.rate)}${rows.length > 1 ? ` With more jobs at once (${rows.map((run) => `${run.config}: ${formatInt(run.jobsPerSec)}`).join('; ')}) more of them overlap.` : ''}`
      : '';
    out.push(
      `- **Drain on PostgreSQL.** Profiled at ${drain.throughput} (concurrency ${COMPARABLE_CONCURRENCY}). ${costSentences(drain, 'job')}${machine.text}${cycle} graphile-worker at ${COMPARABLE} sent ${theirs(graphile)}, each its own transaction, without NOTIFY (it notifies when jobs are added)${batched ? `; with its local queue, ${theirs(batched)}: it locks a batch of jobs with one statement and completes many with one` : ''}.${bestTheirs && bestOurs ? ` Best against best, graphile-worker's ${formatInt(bestTheirs.jobsPerSec)} jobs/s (${bestTheirs.config}) is ${x(bestTheirs.jobsPerSec / bestOurs.jobsPerSec)} asyncfirst's ${formatInt(bestOurs.jobsPerSec)} (${bestOurs.config}), where asyncfirst sent ${theirs(bestOurs)} and its process was busy ${formatFixed(processCores(bestOurs), 2)} of a core over the drain${processCores(bestOurs) >= 0.85 ? ': its one thread was the bound there, at its CPU per job' : ''}.${bestOurs.database ? ` ${cycleSentence(bestOurs.database, bestOurs.jobs, bestOurs.jobsPerSec)}` : ''}` : ''}${probeSentence(probe)}`,
    );
  }

  const latency = results.latencyPostgres;
  if (latency && latency.fromResponse.count > 0 && missed(POSTGRES_GOALS.latency)) {
    const started = latency.fromResponse.count / latency.durationS;
    // A backlog: jobs started more slowly than they were offered, or the last third waited far longer than the first.
    const backlog = started < 0.9 * latency.rate || latency.p50LastThird > 2 * latency.p50FirstThird;
    let cycle = '';
    const claims = latency.cost?.byStatement.asyncfirst_claim_queued;
    if (latency.cost && claims) {
      // The worker's own round trips: everything but the acceptance batches.
      const worker = workerWindow(latency.cost);
      cycle = ` Over the run the worker made ${formatInt(claims / latency.cost.seconds)} claims/s of ${formatFixed(latency.fromResponse.count / claims, 1)} jobs each (per job: ${statementList(worker, latency.fromResponse.count, 8)}). ${cycleSentence(worker, latency.fromResponse.count, started)}${backlog ? ` That is under the ${latency.rate} jobs/s offered.` : ''}`;
    }
    const wide = results.latencyPostgresConcurrent;
    const wider = wide
      ? ` With ${wide.workerConcurrency} concurrent jobs under the same load, jobs started at p50 ${ms(wide.fromResponse.p50, 2)} (p99 ${ms(wide.fromResponse.p99, 2)}; first third ${ms(wide.p50FirstThird, 2)}, last third ${ms(wide.p50LastThird, 2)}; ${wide.fromResponse.count} of ${wide.accepted} started)${wide.fromResponse.p50 < 5 ? ': under the goal once the worker has room' : `: with room to keep up, what remains is the delay per job — a job accepted while a claim is in flight waits for it to commit and for the next claim's round trips`}.`
      : '';
    out.push(
      `- **202 → handler start on PostgreSQL.** p50 ${ms(latency.fromResponse.p50, 2)} at ${latency.rate} req/s with the default ${latency.workerConcurrency} concurrent jobs; the first third of the jobs started at p50 ${ms(latency.p50FirstThird, 2)}, the last third at ${ms(latency.p50LastThird, 2)}, and ${latency.fromResponse.count} of the ${latency.accepted} accepted in the window had started when it ended (${formatInt(started)} jobs/s)${backlog ? ': a backlog that grew while the load ran — at this concurrency the worker started fewer jobs per second than were accepted — rather than a fixed delay per job' : ''}. A job starts only after a claim (a transaction of the worker's own, after the acceptance's commit) and frees its slot only after its finish commits; with ${latency.workerConcurrency} slots, each claim takes the few jobs that fit.${cycle}${wider}`,
    );
  }
  return out;
}

/** The database side of a PostgreSQL profile: round trips by statement and CPU per unit. */
export function databaseCostTable(run: ProfileRun): string[] {
  if (!run.database || !run.units) return [];
  const cost = perUnit(run.database, run.units);
  const unit = run.name === 'drain-pg' ? 'job' : '202';
  return [
    `Round trips counted in the process (every node-postgres query on asyncfirst's connections; ${formatInt(run.units)} ${unit === 'job' ? 'jobs' : '202s'} in the window): ${formatFixed(cost.roundTrips, 2)} per ${unit}${cost.notifications === undefined ? '' : `; notifications heard on asyncfirst's channel: ${formatFixed(cost.notifications, 2)} per ${unit}`}. CPU per ${unit}: ${formatInt(cost.processUs)} µs in the process, ${formatInt(cost.backendUs)} µs in the ${run.database.backends} PostgreSQL backends serving it (from /proc).`,
    '',
    table(
      ['Statement', `Per ${unit}`],
      cost.statements.map((entry) => [entry.statement, formatFixed(entry.perUnit, 3)]),
    ),
  ];
}

/** PostgreSQL's own commit rates, as a section. */
export function commitProbeSection(probe: CommitProbe): string[] {
  return [
    "## PostgreSQL's own commit rates",
    '',
    `Without asyncfirst: ${probe.callers} callers on a pool of ${probe.connections} connections, in a schema of the probe's own, with one connection LISTENing on the channel; each shape for ${probe.seconds} s, the shapes taking turns for ${probe.rounds} round(s) (medians). "+ notify" calls pg_notify in the transaction, as asyncfirst's driver does in every change.`,
    '',
    table(
      ['Shape', 'Commits/s', 'Each round'],
      Object.entries(probe.rates).map(([shape, rate]) => [shape, formatInt(rate.median), rate.runs.map((value) => formatInt(value)).join(', ')]),
    ),
  ];
}
