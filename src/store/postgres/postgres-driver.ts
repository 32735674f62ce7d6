import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { isFinished, type JobState } from '../../core/job-states.js';
import type { Settled } from '../../engine/turn-batcher.js';
import type {
  AcceptResult,
  AcceptWrite,
  Driver,
  DriverClaim,
  DriverEvents,
  DriverHooks,
  EventLogPage,
  EventLogRead,
  EventPosition,
  Finish,
  FinishedBefore,
  JobListing,
  LimitedClaim,
  ListedJob,
  MinuteCount,
  Requeue,
  ScheduleAdvance,
  ScheduleAdvanced,
} from '../driver.js';
import { listingScans, newestFirst } from '../listing-scans.js';
import {
  type DeliveryRow,
  type IdempotencyRow,
  type ScheduleRow,
  toClaimedJob,
  toDelivery,
  toIdempotencyRecord,
  toJobRecord,
  toLoggedEvent,
  toScheduleRecord,
  traceContextColumn,
  withDeliveries,
} from '../rows.js';
import {
  type CancelOutcome,
  type ClaimedJob,
  type DeclaredSchedule,
  type DeliveryClaim,
  type DeliveryOutcome,
  type IdempotencyRecord,
  type JobCount,
  type JobEvent,
  type JobProgress,
  type JobRecord,
  type LeaseState,
  type RetryEndedOutcome,
  type ScheduleRecord,
  StoreUnavailableError,
  type WebhookDelivery,
} from '../store.js';
import { PostgresListener } from './listener.js';
import { migrate } from './migrate.js';
import { type ClaimRow, type EventLogRow, type ListedRow, type PostgresJobRow, SQL, type Statement } from './statements.js';

export interface PostgresDriverOptions {
  connectionString: string;
  /** The schema asyncfirst's tables live in (created if missing), so they can sit beside an application's. */
  schema?: string;
  /** Connections in the pool (the listener holds one more). */
  poolMax?: number;
  /** The longest a statement may run before the server cancels it. */
  statementTimeoutMs?: number;
  /** How long a request waits for a pooled connection before the store is "unavailable". */
  connectTimeoutMs?: number;
}

/** SQLSTATE classes and codes, and client errors, that mean "the database cannot serve now": 503, nothing half-written. */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-5]|57014|58|25006)/;
const UNAVAILABLE_NODE = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)$/;
const UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|not queryable|Connection ended|Client was closed|Cannot use a pool after calling end/i;
/** Serialization failures and deadlocks: the transaction is run again. */
const RETRYABLE_SQLSTATE = /^(40001|40P01)$/;
const TRANSACTION_ATTEMPTS = 3;
/** NOTIFY payloads are limited to 8000 bytes; past this many ids a notification says "look at everything". */
const MAX_NOTIFIED_IDS = 200;

/** What one transaction changed, announced after its commit (here at once, elsewhere by NOTIFY). */
interface Changes {
  jobIds: Set<string>;
  queued: boolean;
  deliveries: boolean;
}

interface Notification {
  /** The sending process's token (its own notifications are skipped: they were announced directly). */
  p: string;
  q?: 1;
  d?: 1;
  j?: string[];
  /** Too many ids to list: every waiter looks. */
  all?: 1;
}

type Query = <Row extends pg.QueryResultRow>(statement: Statement, values: unknown[]) => Promise<Row[]>;

/** Parses bigint (int8) columns as numbers: times in milliseconds and sequence numbers fit. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * The driver for PostgreSQL through node-postgres: a pool for statements, one dedicated
 * connection for LISTEN, claims with FOR UPDATE SKIP LOCKED, leases on the database's clock,
 * acceptance that never rebinds a live key, and NOTIFY at each commit so that every process's
 * workers, dispatchers and waiters wake at once. The 202 is sent after COMMIT returns; with
 * PostgreSQL's default synchronous_commit=on that is after the WAL reached disk.
 */
export class PostgresDriver implements Driver {
  readonly kind = 'postgres';
  readonly announcesOtherProcesses = true;
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly listener: PostgresListener;
  private readonly channel: string;
  private readonly token = randomBytes(6).toString('hex');
  private hooks: DriverHooks | undefined;
  private problems = { canceledWhileRunning: '', canceledBeforeRunning: '', abandoned: '' };
  private closed = false;
  /** The last failure of the database, until a statement succeeds again (reported once). */
  private failing = false;

  constructor(options: PostgresDriverOptions) {
    this.schema = options.schema ?? 'asyncfirst';
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(this.schema)) throw new Error(`DATABASE_SCHEMA "${this.schema}" must be a plain SQL identifier`);
    this.channel = `asyncfirst_${this.schema}`;
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolMax ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'asyncfirst',
      statement_timeout: options.statementTimeoutMs ?? 10_000,
      options: `-c search_path=${this.schema}`,
      types,
    });
    // An idle connection that breaks (a restart of the server) must not crash the process.
    this.pool.on('error', (error) => this.reportFailure(error));
    this.listener = new PostgresListener({
      connectionString: options.connectionString,
      channel: this.channel,
      onNotification: (payload) => this.received(payload),
      onReconnect: () => this.lookAtEverything(),
      // Writes are unaffected: a warning, not a store failure (and no suppression of the next real one).
      onError: (error) => {
        if (this.closed) return;
        this.hooks?.events.fault({
          kind: 'notifications-lost',
          error: new StoreUnavailableError(error instanceof Error ? error.message : String(error), { cause: error }),
        });
      },
    });
  }

  async start(hooks: DriverHooks): Promise<void> {
    this.hooks = hooks;
    this.problems = {
      canceledWhileRunning: JSON.stringify(hooks.problems.canceledWhileRunning),
      canceledBeforeRunning: JSON.stringify(hooks.problems.canceledBeforeRunning),
      abandoned: JSON.stringify(hooks.problems.abandoned),
    };
    const client = await this.pool.connect();
    try {
      await migrate(client, this.schema);
    } finally {
      client.release();
    }
    await this.listener.start();
  }

  private get events(): DriverEvents {
    if (!this.hooks) throw new Error('the PostgreSQL driver was used before start()');
    return this.hooks.events;
  }

  // --- notifications ------------------------------------------------------------------------

  private notification(changes: Changes): string {
    const note: Notification = { p: this.token };
    if (changes.queued) note.q = 1;
    if (changes.deliveries) note.d = 1;
    if (changes.jobIds.size > MAX_NOTIFIED_IDS) note.all = 1;
    else if (changes.jobIds.size > 0) note.j = [...changes.jobIds];
    return JSON.stringify(note);
  }

  /** After a commit of this process: announce it here (other processes hear the NOTIFY). */
  private announce(changes: Changes): void {
    if (changes.jobIds.size > 0) this.events.jobsChanged(changes.jobIds);
    if (changes.queued) this.events.jobsQueued();
    if (changes.deliveries) this.events.deliveriesQueued();
  }

  private received(payload: string): void {
    let note: Notification;
    try {
      note = JSON.parse(payload) as Notification;
    } catch {
      return;
    }
    if (note.p === this.token || !this.hooks) return;
    if (note.all) this.lookAtEverything();
    else if (note.j?.length) this.events.jobsChanged(new Set(note.j));
    if (note.q) this.events.jobsQueued();
    if (note.d) this.events.deliveriesQueued();
  }

  /** Notifications may have been missed, or named too many jobs: wake the worker, the dispatcher and every waiter. */
  private lookAtEverything(): void {
    if (!this.hooks) return;
    this.events.everythingChanged();
    this.events.jobsQueued();
    this.events.deliveriesQueued();
  }

  // --- running statements ---------------------------------------------------------------------

  private reportFailure(error: unknown): void {
    if (this.failing || this.closed) return;
    this.failing = true;
    const unavailable = asUnavailable(error);
    this.hooks?.events.fault({
      kind: 'write-failed',
      error: unavailable instanceof StoreUnavailableError ? unavailable : new StoreUnavailableError(String(error), { cause: error }),
    });
  }

  /** One statement on a pooled connection (its own transaction). */
  private async run<Row extends pg.QueryResultRow>(statement: Statement, values: unknown[]): Promise<Row[]> {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
    try {
      const result = await this.pool.query<Row>({ name: statement.name, text: statement.text, values });
      this.failing = false;
      return result.rows;
    } catch (error) {
      throw this.failure(error);
    }
  }

  private failure(error: unknown): unknown {
    const unavailable = asUnavailable(error);
    if (unavailable instanceof StoreUnavailableError) this.reportFailure(error);
    return unavailable;
  }

  /**
   * Runs `work` in one transaction on one connection, then announces what it changed. A
   * serialization failure or deadlock runs it again; a lost connection is "unavailable" and
   * nothing of the transaction is kept.
   */
  private async transaction<T>(work: (query: Query, changes: Changes) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw this.failure(error);
      }
      // A checked-out connection that breaks between two statements emits 'error', which would
      // crash the process unheard; the failing statement reports it.
      const onError = (error: unknown) => this.reportFailure(error);
      client.on('error', onError);
      const changes: Changes = { jobIds: new Set(), queued: false, deliveries: false };
      const query: Query = async <Row extends pg.QueryResultRow>(statement: Statement, values: unknown[]) =>
        (await client.query<Row>({ name: statement.name, text: statement.text, values })).rows;
      let broken = false;
      try {
        await client.query('BEGIN');
        const value = await work(query, changes);
        await client.query('COMMIT');
        this.failing = false;
        this.announce(changes);
        return value;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        const code = (error as { code?: unknown }).code;
        if (typeof code === 'string' && RETRYABLE_SQLSTATE.test(code) && attempt < TRANSACTION_ATTEMPTS) continue;
        throw this.failure(error);
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    }
  }

  /**
   * Records what the changed rows did: the engine builds each event (and webhook delivery and notifications), and
   * they are inserted with one statement each, which also NOTIFYs (delivered at COMMIT).
   */
  private async record(
    query: Query,
    changes: Changes,
    changed: { row: PostgresJobRow; type: string; children?: string[] }[],
    now: number,
  ): Promise<JobRecord[]> {
    const record = (this.hooks as DriverHooks).recordChange;
    const jobs: JobRecord[] = [];
    const events = { ids: [] as string[], versions: [] as number[], types: [] as string[], data: [] as string[], times: [] as number[] };
    const deliveries = {
      ids: [] as string[],
      jobIds: [] as string[],
      urls: [] as string[],
      notifiers: [] as (string | null)[],
      types: [] as string[],
      payloads: [] as string[],
      attempts: [] as number[],
    };
    for (const { row, type, children } of changed) {
      const job = jobOf(row);
      if (children) job.children = children;
      jobs.push(job);
      const recorded = record(job, type, now);
      events.ids.push(job.id);
      events.versions.push(job.version);
      events.types.push(type);
      events.data.push(recorded.data);
      events.times.push(now);
      changes.jobIds.add(job.id);
      if (recorded.delivery) {
        const delivery = recorded.delivery;
        deliveries.ids.push(delivery.id);
        deliveries.jobIds.push(job.id);
        deliveries.urls.push(delivery.url);
        deliveries.notifiers.push(null);
        deliveries.types.push(delivery.eventType);
        deliveries.payloads.push(delivery.payload);
        deliveries.attempts.push(delivery.maxAttempts);
        changes.deliveries = true;
      }
      for (const notification of recorded.notifications ?? []) {
        deliveries.ids.push(notification.id);
        deliveries.jobIds.push(job.id);
        deliveries.urls.push('');
        deliveries.notifiers.push(notification.notifier);
        deliveries.types.push(notification.eventType);
        deliveries.payloads.push(notification.payload);
        deliveries.attempts.push(notification.maxAttempts);
        changes.deliveries = true;
      }
    }
    if (deliveries.ids.length > 0) {
      await query(SQL.insertDeliveries, [
        deliveries.ids,
        deliveries.jobIds,
        deliveries.urls,
        deliveries.types,
        deliveries.payloads,
        deliveries.attempts,
        now,
        deliveries.notifiers,
      ]);
    }
    if (events.ids.length > 0) {
      const [written] = await query<{ out_of_order: boolean }>(SQL.insertEvents, [
        events.ids,
        events.versions,
        events.types,
        events.data,
        events.times,
        this.channel,
        this.notification(changes),
      ]);
      // Run again under a new transaction id, larger than that of the event this one follows.
      if (written?.out_of_order) throw Object.assign(new Error("an event's transaction id is below its job's previous event's"), { code: '40001' });
    } else if (changes.queued || changes.jobIds.size > 0) {
      await query(SQL.notify, [this.channel, this.notification(changes)]);
    }
    return jobs;
  }

  // --- acceptance and reading -------------------------------------------------------------------

  /**
   * A turn's submissions in one statement. Writes for one key go in once (the first); the others
   * are answered from its outcome. Writes that found their key bound (or whose job was swept) are
   * settled one by one, as a single acceptance would be.
   */
  async acceptJobs(writes: AcceptWrite[]): Promise<Settled<AcceptResult>[]> {
    const keys = new Map(writes.map((write) => [write, JSON.stringify([write.principal, write.operation, write.key])]));
    const keyOf = (write: AcceptWrite) => keys.get(write) as string;
    const first = new Map<string, AcceptWrite>();
    for (const write of writes) if (!first.has(keyOf(write))) first.set(keyOf(write), write);
    const batch = [...first.values()].sort((a, b) => compare(a.principal, b.principal) || compare(a.operation, b.operation) || compare(a.key, b.key));
    const jobIds = new Set(batch.map((write) => write.jobId));
    const notice = this.notification({ jobIds, queued: true, deliveries: false });
    let created: Set<string>;
    try {
      const rows = await this.run<{ id: string }>(SQL.acceptJobs, [acceptBatchJson(batch), this.channel, notice]);
      created = new Set(rows.map((row) => row.id));
    } catch (error) {
      return writes.map(() => ({ ok: false, error }));
    }
    if (created.size > 0) this.announce({ jobIds: created, queued: true, deliveries: false });
    const settled = new Map<string, Promise<Settled<AcceptResult>>>();
    for (const write of batch) {
      const outcome: Promise<AcceptResult> = created.has(write.jobId) ? Promise.resolve({ kind: 'created', jobId: write.jobId }) : this.acceptBound(write);
      settled.set(
        keyOf(write),
        outcome.then(
          (value) => ({ ok: true, value }),
          (error: unknown) => ({ ok: false, error }),
        ),
      );
    }
    return Promise.all(
      writes.map(async (write) => {
        const outcome = await (settled.get(keyOf(write)) as Promise<Settled<AcceptResult>>);
        if (!outcome.ok || first.get(keyOf(write)) === write) return outcome;
        // A second write for the key in the same turn: what bound the key for the first binds it for this one.
        const { value } = outcome;
        const fingerprint = value.kind === 'bound' ? value.fingerprint : (first.get(keyOf(write)) as AcceptWrite).fingerprint;
        return { ok: true, value: { kind: 'bound', jobId: value.jobId, fingerprint } };
      }),
    );
  }

  /** An acceptance whose key the batch found bound: read the record; rebind it if its job was swept. */
  private async acceptBound(write: AcceptWrite): Promise<AcceptResult> {
    const notice = this.notification({ jobIds: new Set([write.jobId]), queued: true, deliveries: false });
    for (let attempt = 0; attempt < 5; attempt++) {
      const [bound] = await this.run<{ fingerprint: string; job_id: string; job_exists: boolean }>(SQL.findKey, [write.principal, write.operation, write.key]);
      if (bound?.job_exists) return { kind: 'bound', jobId: bound.job_id, fingerprint: bound.fingerprint };
      // No record (swept meanwhile), or one that outlived its job: write it, unless another process does first.
      const created = await this.run<{ id: string }>(bound ? SQL.rebindKey : SQL.acceptJob, acceptParameters(write, this.channel, notice, bound?.job_id));
      if (created.length === 1) {
        this.announce({ jobIds: new Set([write.jobId]), queued: true, deliveries: false });
        return { kind: 'created', jobId: write.jobId };
      }
    }
    throw new StoreUnavailableError('the idempotency record kept changing under concurrent submissions; retry');
  }

  async getJob(principal: string, id: string): Promise<JobRecord | undefined> {
    const [row] = await this.run<PostgresJobRow & { children: string[] | null }>(SQL.getJobWithChildren, [id, principal]);
    if (!row) return undefined;
    const job = jobOf(row);
    if (job.callbackUrl || this.hooks?.notifies(job.operation)) withDeliveries(job, (await this.run<DeliveryRow>(SQL.deliveriesOfJob, [id])).map(toDelivery));
    if (job.status === 'succeeded') job.children = row.children ?? [];
    return job;
  }

  async jobPrincipal(id: string): Promise<string | undefined> {
    const [row] = await this.run<{ principal: string }>(SQL.jobPrincipal, [id]);
    return row?.principal;
  }

  async jobVersions(ids: string[]): Promise<Map<string, number>> {
    if (ids.length === 0) return new Map();
    const rows = await this.run<{ id: string; version: number }>(SQL.jobVersions, [ids]);
    return new Map(rows.map((row) => [row.id, row.version]));
  }

  async getJobEvents(principal: string, id: string, afterVersion: number): Promise<{ job: JobRecord; events: JobEvent[] } | undefined> {
    const rows = await this.run<PostgresJobRow & { event_version: number | null; event_type: string | null; event_data: string | null }>(SQL.jobWithEvents, [
      id,
      principal,
      afterVersion,
    ]);
    const first = rows[0];
    if (!first) return undefined;
    const events = rows
      .filter((row) => row.event_version !== null)
      .map((row) => ({ id: row.event_version as number, type: row.event_type as string, data: row.event_data as string }));
    return { job: jobOf(first), events };
  }

  async readEventLog(read: EventLogRead): Promise<EventLogPage> {
    const rows = await this.run<EventLogRow>(SQL.readEventLog, [
      String(read.after.transaction),
      read.after.row,
      read.principal ?? null,
      read.operation ?? null,
      read.types ?? null,
      read.limit,
    ]);
    const first = rows[0];
    if (!first) throw new Error('the event log read returned no row');
    const events = rows.filter((row) => row.xid !== null).map((row) => toLoggedEvent(row, { transaction: BigInt(row.xid as string), row: row.id as number }));
    const last = events.at(-1);
    const horizon: EventPosition = { transaction: BigInt(first.horizon), row: 0 };
    // A full page stops at its last event; a short one has seen every event below the horizon.
    const scannedTo = events.length === read.limit && last ? last.position : laterOf(horizon, read.after);
    return { events, scannedTo, heldBack: first.held_back };
  }

  async eventLogHead(): Promise<EventPosition> {
    const [row] = await this.run<{ horizon: string }>(SQL.eventLogHead, []);
    return { transaction: BigInt(row?.horizon ?? '0'), row: 0 };
  }

  async listJobs(listing: JobListing): Promise<ListedJob[]> {
    const filters = [
      listing.beforePosition ?? Number.MAX_SAFE_INTEGER,
      listing.operation ?? null,
      listing.createdAfter ?? null,
      listing.createdBefore ?? null,
      listing.limit,
    ];
    const statements = {
      every: listing.withInput ? SQL.listEveryJobWithInput : SQL.listEveryJob,
      inState: listing.withInput ? SQL.listJobsInStateWithInput : SQL.listJobsInState,
      ownInState: listing.withInput ? SQL.listOwnJobsInStateWithInput : SQL.listOwnJobsInState,
    };
    // One scan after another: a listing holds one pooled connection at a time, never five.
    const results: ListedJob[][] = [];
    for (const scan of listingScans(listing, { byState: true })) {
      if (scan.scope === 'own') throw new Error('a principal index by state is read one state at a time');
      const scope = scan.scope === 'every' ? [] : scan.scope === 'inState' ? [scan.status] : [scan.status, scan.principal];
      const rows = await this.run<ListedRow>(statements[scan.scope], [...filters, ...scope]);
      results.push(rows.map((row) => ({ position: row.seq, job: listing.withInput ? { ...jobOf(row), input: row.input as string } : jobOf(row) })));
    }
    return newestFirst(results, listing.limit);
  }

  async countJobs(): Promise<JobCount[]> {
    const rows = await this.transaction(async (query) => {
      await query(SQL.lockJobCounts, []);
      return query<{ operation: string; status: string; count: number }>(SQL.countJobs, []);
    });
    return rows.map((row) => ({ operation: row.operation, status: row.status as JobCount['status'], count: row.count }));
  }

  async oldestDueJobs(now: number): Promise<Array<{ operation: string; dueSince: number }>> {
    const rows = await this.run<{ operation: string; due_since: number }>(SQL.oldestDueJobs, [now]);
    return rows.map((row) => ({ operation: row.operation, dueSince: Number(row.due_since) }));
  }

  async jobActivity(since: number, firstIdSince: string): Promise<{ accepted: MinuteCount[]; finished: Array<MinuteCount & { status: JobState }> }> {
    const [accepted, finished] = await Promise.all([
      this.run<{ minute: number; count: number }>(SQL.acceptedPerMinute, [firstIdSince, since]),
      this.run<{ minute: number; status: string; count: number }>(SQL.finishedPerMinute, [since]),
    ]);
    return {
      accepted: accepted.map((row) => ({ minute: Number(row.minute), count: Number(row.count) })),
      finished: finished.map((row) => ({ minute: Number(row.minute), status: row.status as JobState, count: Number(row.count) })),
    };
  }

  async jobInput(principal: string, id: string): Promise<string | undefined> {
    const [row] = await this.run<{ input: string }>(SQL.jobInput, [id, principal]);
    return row?.input;
  }

  async getIdempotencyRecord(principal: string, operation: string, key: string): Promise<IdempotencyRecord | undefined> {
    const [row] = await this.run<IdempotencyRow>(SQL.getIdempotencyRecord, [principal, operation, key]);
    return row ? toIdempotencyRecord(row) : undefined;
  }

  async countIdempotencyRecords(): Promise<number> {
    const [row] = await this.run<{ count: number }>(SQL.countIdempotencyRecords, []);
    return row?.count ?? 0;
  }

  // --- the life of a job ------------------------------------------------------------------------

  cancelJob(principal: string, id: string, now: number): Promise<CancelOutcome> {
    return this.transaction(async (query, changes) => {
      // Each statement sees the newest committed row: a job can move between queued and running
      // in between them (claimed, retried, released), so try again until one matches or it is finished.
      for (let attempt = 0; ; attempt++) {
        const [canceled] = await query<PostgresJobRow>(SQL.cancelQueuedJob, [this.problems.canceledBeforeRunning, now, id, principal]);
        if (canceled) {
          const [job] = await this.record(query, changes, [{ row: canceled, type: 'job.canceled' }], now);
          return { kind: 'canceled', job: job as JobRecord };
        }
        const [signalled] = await query<PostgresJobRow>(SQL.requestCancel, [now, id, principal]);
        if (signalled) return { kind: 'signalled', job: jobOf(signalled) };
        const [row] = await query<PostgresJobRow>(SQL.getJob, [id, principal]);
        if (!row) return { kind: 'not-found' };
        const job = jobOf(row);
        if (isFinished(job.status) || attempt >= 10) return { kind: 'finished', job };
      }
    });
  }

  retryEndedJob(principal: string | undefined, id: string, now: number): Promise<RetryEndedOutcome> {
    return this.transaction(async (query, changes) => {
      const [row] = await query<PostgresJobRow>(SQL.retryEndedJob, [id, principal ?? null, now]);
      if (row) {
        changes.queued = true;
        const [job] = await this.record(query, changes, [{ row, type: 'job.queued' }], now);
        return { kind: 'queued', job: job as JobRecord };
      }
      const [current] = await query<PostgresJobRow>(SQL.getJobOfScope, [id, principal ?? null]);
      return current ? { kind: 'not-retryable', job: jobOf(current) } : { kind: 'not-found' };
    });
  }

  claimJobs(claim: DriverClaim): Promise<ClaimedJob[]> {
    const { owner, limit, now, leaseMs } = claim;
    return this.transaction(async (query, changes) => {
      // One statement ends or takes over abandoned jobs and claims due ones; one more records their events.
      const statement = claim.byPriority ? SQL.claimJobsByPriority : SQL.claimJobs;
      const rows = await query<ClaimRow>(statement, [owner, leaseMs, now, limit, this.problems.canceledWhileRunning, this.problems.abandoned]);
      const claimedRows = rows.filter((row) => row.change === 'job.running').sort(byClaimOrder);
      await this.record(
        query,
        changes,
        rows.map((row) => ({ row, type: row.change })),
        now,
      );
      return claimedRows.map((row) => ({
        ...toClaimedJob(row),
        ...(row.previous_owner ? { takenOverFrom: row.previous_owner } : {}),
      }));
    });
  }

  claimLimitedJobs(claim: LimitedClaim): Promise<ClaimedJob[]> {
    const { owner, limit, now, leaseMs, operation } = claim;
    return this.transaction(async (query, changes) => {
      let [limitRow] = await query<{ recent_starts: string[]; now: number }>(SQL.lockOperationLimit, [operation]);
      if (!limitRow) {
        await query(SQL.addOperationLimit, [operation]);
        [limitRow] = await query<{ recent_starts: string[]; now: number }>(SQL.lockOperationLimit, [operation]);
        if (!limitRow) throw new Error(`the limit row of operation ${operation} vanished inside its own transaction`);
      }
      const [counted] = await query<{ running: number }>(SQL.limitedRunning, [operation]);
      const state = { running: counted?.running ?? 0, recentStarts: limitRow.recent_starts.map(Number), now: Number(limitRow.now) };
      const room = claim.room(state);
      if (room.takeOver <= 0) return [];
      const rows = await query<ClaimRow>(SQL.claimLimitedJobs, [owner, leaseMs, now, operation, Math.min(limit, room.takeOver), room.start]);
      const starts = claim.startsAfter(state, rows.length);
      if (starts !== undefined && rows.length > 0) await query(SQL.writeOperationLimit, [operation, starts]);
      await this.record(
        query,
        changes,
        rows.map((row) => ({ row, type: row.change })),
        now,
      );
      return rows.sort(byClaimOrder).map((row) => ({
        ...toClaimedJob(row),
        ...(row.previous_owner ? { takenOverFrom: row.previous_owner } : {}),
      }));
    });
  }

  async renewLease(id: string, fence: number, leaseMs: number, now: number): Promise<LeaseState> {
    const [row] = await this.run<{ cancel_requested: boolean }>(SQL.renewLease, [leaseMs, now, id, fence]);
    return { held: row !== undefined, cancelRequested: row?.cancel_requested === true };
  }

  reportProgress(id: string, fence: number, progress: JobProgress, now: number): Promise<boolean> {
    return this.transaction(async (query, changes) => {
      const [row] = await query<PostgresJobRow>(SQL.reportProgress, [JSON.stringify(progress), now, id, fence]);
      if (row) await this.record(query, changes, [{ row, type: 'job.progress' }], now);
      return row !== undefined;
    });
  }

  /** A turn's finishes in one transaction: one UPDATE for all of them, one INSERT for their events. */
  async finishJobs(finishes: Finish[]): Promise<Settled<boolean>[]> {
    const sorted = [...finishes].sort((a, b) => compare(a.id, b.id));
    let finished: Set<string>;
    try {
      finished = await this.transaction(async (query, changes) => {
        const rows = await query<PostgresJobRow>(SQL.finishJobs, [
          sorted.map((finish) => finish.id),
          sorted.map((finish) => finish.fence),
          sorted.map((finish) => finish.outcome.status),
          sorted.map((finish) => (finish.outcome.status === 'succeeded' ? finish.outcome.result : null)),
          sorted.map((finish) => (finish.outcome.status === 'succeeded' ? (finish.outcome.location ?? null) : null)),
          sorted.map((finish) => (finish.outcome.status === 'succeeded' ? null : JSON.stringify(finish.outcome.error))),
          sorted.map((finish) => finish.now),
          this.problems.canceledWhileRunning,
        ]);
        // Each row says how its job ended: a cancel asked meanwhile (from any process) wins over the
        // outcome, and then its follow-ups are dropped with it.
        const now = Math.max(...sorted.map((finish) => finish.now));
        const children = await this.storeFollowUps(query, changes, sorted, rows);
        await this.record(
          query,
          changes,
          rows.map((row) => ({ row, type: `job.${row.status}`, ...(children.has(row.id) ? { children: children.get(row.id) } : {}) })),
          now,
        );
        return new Set(rows.map((row) => `${row.id}:${row.fence}`));
      });
    } catch (error) {
      return finishes.map(() => ({ ok: false, error }));
    }
    // Matched by id and fence: a stale finish in the same batch as the current one is refused (false).
    return finishes.map((finish) => ({ ok: true, value: finished.has(`${finish.id}:${finish.fence}`) }));
  }

  /**
   * The follow-ups of the finishes that ended succeeded, in one statement in the finish's
   * transaction (none when no finish has any); per parent, the ids of the children created.
   */
  private async storeFollowUps(query: Query, changes: Changes, finishes: Finish[], rows: PostgresJobRow[]): Promise<Map<string, string[]>> {
    const children = new Map<string, string[]>();
    if (!finishes.some((finish) => finish.followUps?.length)) return children;
    const succeeded = new Set(rows.filter((row) => row.status === 'succeeded').map((row) => `${row.id}:${row.fence}`));
    const parents = finishes.filter((finish) => finish.followUps?.length && succeeded.has(`${finish.id}:${finish.fence}`));
    const writes = parents.flatMap((finish) => finish.followUps ?? []);
    if (writes.length === 0) return children;
    const created = await query<{ id: string }>(SQL.acceptFollowUps, [acceptBatchJson(writes)]);
    const createdIds = new Set(created.map((row) => row.id));
    for (const finish of parents) {
      children.set(
        finish.id,
        (finish.followUps ?? []).filter((write) => createdIds.has(write.jobId)).map((write) => write.jobId),
      );
    }
    for (const id of createdIds) changes.jobIds.add(id);
    if (createdIds.size > 0) changes.queued = true;
    return children;
  }

  requeueJob(id: string, fence: number, requeue: Requeue, now: number): Promise<boolean> {
    return this.transaction(async (query, changes) => {
      const [row] = requeue.countsAttempt
        ? await query<PostgresJobRow>(SQL.retryJob, [requeue.error === undefined ? null : JSON.stringify(requeue.error), requeue.runAt, now, id, fence])
        : await query<PostgresJobRow>(SQL.releaseJob, [requeue.runAt, now, id, fence]);
      if (row) {
        changes.queued = true;
        await this.record(query, changes, [{ row, type: 'job.queued' }], now);
        return true;
      }
      // A job whose cancel was asked (possibly from another process) is not queued again: it ends canceled.
      const [canceled] = await query<PostgresJobRow>(SQL.finishCanceledRequest, [this.problems.canceledWhileRunning, now, id, fence]);
      if (canceled) await this.record(query, changes, [{ row: canceled, type: 'job.canceled' }], now);
      return canceled !== undefined;
    });
  }

  // --- webhook deliveries -------------------------------------------------------------------------

  claimDeliveries(claim: DeliveryClaim): Promise<WebhookDelivery[]> {
    const { owner, limit, now, leaseMs } = claim;
    return this.transaction(async (query) => {
      await query(SQL.failAbandonedDeliveries, [now]);
      const rows = await query<DeliveryRow>(SQL.claimDeliveries, [owner, leaseMs, now, limit, claim.kind !== 'notification']);
      return rows.sort((a, b) => a.next_attempt_at - b.next_attempt_at).map(toDelivery);
    });
  }

  async recordDelivery(delivery: WebhookDelivery, owner: string, outcome: DeliveryOutcome, now: number): Promise<boolean> {
    const nextAttemptAt = outcome.status === 'succeeded' ? now : outcome.nextAttemptAt;
    const error = outcome.status === 'succeeded' ? null : outcome.error;
    if (this.closed) throw new StoreUnavailableError('the store is closed');
    let count: number;
    try {
      const result = await this.pool.query({
        name: SQL.recordDelivery.name,
        text: SQL.recordDelivery.text,
        values: [outcome.status, outcome.httpStatus ?? null, error, nextAttemptAt, now, delivery.id, delivery.attempts, owner],
      });
      count = result.rowCount ?? 0;
    } catch (error) {
      throw this.failure(error);
    }
    if (count === 1) this.events.jobsChanged(new Set([delivery.jobId]));
    return count === 1;
  }

  // --- schedules ---------------------------------------------------------------------------------

  declareSchedules(schedules: DeclaredSchedule[], now: number): Promise<Map<string, number>> {
    // By name, so that processes declaring at once take the rows' locks in one order.
    const sorted = [...schedules].sort((a, b) => compare(a.name, b.name));
    return this.transaction(async (query) => {
      const lastTicks = new Map<string, number>();
      for (const schedule of sorted) {
        const [row] = await query<{ last_tick: number }>(SQL.declareSchedule, [
          schedule.name,
          schedule.operation,
          schedule.cron,
          schedule.timezone,
          schedule.windowMs,
          now,
        ]);
        lastTicks.set(schedule.name, Number(row?.last_tick));
      }
      await query(SQL.retireSchedules, [now, sorted.map((schedule) => schedule.name)]);
      return lastTicks;
    });
  }

  advanceSchedule(advance: ScheduleAdvance): Promise<ScheduleAdvanced> {
    return this.transaction(async (query, changes) => {
      const { name, fromTick, toTick } = advance;
      // Under READ COMMITTED a second process's UPDATE waits for the first's commit, then finds last_tick moved and matches nothing.
      const [moved] = await query(SQL.advanceSchedule, [name, fromTick, toTick]);
      if (!moved) {
        const [row] = await query<{ last_tick: number }>(SQL.scheduleLastTick, [name]);
        return { won: false, lastTick: row ? Number(row.last_tick) : fromTick, jobIds: [] };
      }
      const jobIds: string[] = [];
      for (const write of advance.writes) {
        const notice = this.notification({ jobIds: new Set([write.jobId]), queued: true, deliveries: false });
        const created = await query<{ id: string }>(SQL.acceptJob, acceptParameters(write, this.channel, notice));
        // A key bound already (the tick's job exists): nothing is created, and nothing more is owed.
        if (created.length === 1) {
          if (write.schedule) await query(SQL.markScheduleJob, [write.jobId, JSON.stringify(write.schedule)]);
          jobIds.push(write.jobId);
          changes.jobIds.add(write.jobId);
          changes.queued = true;
        }
      }
      const last = jobIds.at(-1);
      if (last !== undefined) await query(SQL.recordScheduleJob, [name, last]);
      return { won: true, lastTick: toTick, jobIds };
    });
  }

  async listSchedules(): Promise<ScheduleRecord[]> {
    return (await this.run<ScheduleRow>(SQL.listSchedules, [])).map(toScheduleRecord);
  }

  // --- retention and health -----------------------------------------------------------------------

  async sweepBatch(now: number, finishedBefore: FinishedBefore, limit: number): Promise<{ keys: number; jobs: number }> {
    const deleteRows = async (statement: Statement, values: unknown[]) => {
      if (this.closed) throw new StoreUnavailableError('the store is closed');
      try {
        return (await this.pool.query({ name: statement.name, text: statement.text, values })).rowCount ?? 0;
      } catch (error) {
        throw this.failure(error);
      }
    };
    const keys = await deleteRows(SQL.deleteExpiredKeys, [now, limit]);
    if (keys > 0) return { keys, jobs: 0 };
    let jobs = 0;
    for (const { operation } of await this.run<{ operation: string }>(SQL.finishedOperations, [])) {
      if (jobs >= limit) break;
      jobs += await deleteRows(SQL.deleteFinishedJobs, [operation, finishedBefore.byOperation.get(operation) ?? finishedBefore.others, limit - jobs]);
    }
    return { keys: 0, jobs };
  }

  async checkReady(): Promise<void> {
    const [row] = await this.run<{ read_only: string }>(SQL.ping, []);
    if (row?.read_only === 'on') throw new StoreUnavailableError('the PostgreSQL server is read-only (a standby, or a primary being switched over)');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.listener.stop();
    await this.pool.end();
  }
}

/** The record of a row; the lease's time left was measured by the database, on its clock. */
function jobOf(row: PostgresJobRow): JobRecord {
  return toJobRecord(row, row.lease_expires_in);
}

/** The later of two positions of the event log. */
function laterOf(a: EventPosition, b: EventPosition): EventPosition {
  return a.transaction > b.transaction || (a.transaction === b.transaction && a.row >= b.row) ? a : b;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A string as PostgreSQL's text takes it from JSON: a lone UTF-16 surrogate (code can pass one, in
 * a principal or a key; HTTP headers cannot) becomes U+FFFD, as node-postgres's UTF-8 encoding
 * of a text parameter makes it, instead of a \uD800 escape that PostgreSQL refuses, failing the
 * whole batch. (String.prototype.toWellFormed is in Node 20, not in the ES2022 library types.)
 */
const wellFormed = (text: string): string => (text as unknown as { toWellFormed(): string }).toWellFormed();

/**
 * A batch of acceptances as the JSON array SQL.acceptJobs and SQL.acceptFollowUps read with
 * json_to_recordset, one object per write, with its place in the batch (`ord`) and its parent
 * (follow-ups); each statement reads the members it declares.
 */
function acceptBatchJson(batch: AcceptWrite[]): string {
  return JSON.stringify(
    batch.map((write, ord) => ({
      principal: wellFormed(write.principal),
      operation: wellFormed(write.operation),
      key: wellFormed(write.key),
      fingerprint: write.fingerprint,
      job_id: write.jobId,
      now: write.now,
      key_expires_at: write.keyExpiresAt,
      input: write.input,
      max_attempts: write.maxAttempts,
      callback_url: write.callbackUrl ?? null,
      trace_context: traceContextColumn(write.traceContext),
      run_at: write.runAt ?? write.now,
      accepted_event: write.acceptedEvent ?? null,
      priority: write.priority ?? 0,
      limited: write.limited === true,
      parent_id: write.parentId ?? null,
      ord,
    })),
  );
}

/** The parameters of SQL.acceptJob for one write; of SQL.rebindKey with the id of the job the key was bound to. */
function acceptParameters(write: AcceptWrite, channel: string, notice: string, boundJobId?: string): unknown[] {
  return [
    write.principal,
    write.operation,
    write.key,
    write.fingerprint,
    write.jobId,
    write.now,
    write.keyExpiresAt,
    write.input,
    write.maxAttempts,
    write.callbackUrl ?? null,
    traceContextColumn(write.traceContext),
    ...(boundJobId === undefined ? [] : [boundJobId]),
    channel,
    notice,
    write.runAt ?? write.now,
    write.acceptedEvent ?? null,
    write.priority ?? 0,
    write.limited === true,
  ];
}

/** Takeovers first (they waited longest), then due jobs by priority, run time and insertion. */
function byClaimOrder(a: ClaimRow, b: ClaimRow): number {
  const aTaken = a.previous_owner ? 0 : 1;
  const bTaken = b.previous_owner ? 0 : 1;
  return aTaken - bTaken || b.priority - a.priority || a.run_at - b.run_at || a.seq - b.seq;
}

/** Database errors that mean "not now" become StoreUnavailableError; others (bugs) pass through. */
function asUnavailable(error: unknown): unknown {
  if (error instanceof StoreUnavailableError) return error;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const unavailable =
    (typeof code === 'string' && (UNAVAILABLE_SQLSTATE.test(code) || RETRYABLE_SQLSTATE.test(code) || UNAVAILABLE_NODE.test(code))) ||
    UNAVAILABLE_MESSAGE.test(message) ||
    (error instanceof AggregateError && error.errors.some((inner) => asUnavailable(inner) instanceof StoreUnavailableError));
  return unavailable ? new StoreUnavailableError(`${typeof code === 'string' ? `${code}: ` : ''}${message}`, { cause: error }) : error;
}
