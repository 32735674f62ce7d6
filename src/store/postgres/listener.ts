import pg from 'pg';

export interface ListenerOptions {
  connectionString: string;
  channel: string;
  /** A notification's payload. */
  onNotification: (payload: string) => void;
  /** The listener (re)connected: notifications sent while it was away are lost, so look at everything. */
  onReconnect: () => void;
  onError: (error: unknown) => void;
  /** How often to check that the channel is still listened to. */
  checkIntervalMs?: number;
}

/**
 * LISTEN on a dedicated connection (never a pool checkout: a pooled connection returns to the
 * pool and its LISTEN with it). Reconnects with backoff when the connection drops, keeps TCP
 * keepalive on, and checks periodically that the channel is still listened to. Notifications
 * are a wake-up, not a record: one can be lost across a reconnect, which is why waiters poll
 * as well (see JobWatch).
 */
/** How long the listening connection may take to answer a check (or to connect). */
const CHECK_TIMEOUT_MS = 5000;

export class PostgresListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private reconnectDelayMs = 100;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;
  private checking = false;

  constructor(private readonly options: ListenerOptions) {}

  /** Connects and listens; resolves once listening (or rejects when the first attempt fails). */
  async start(): Promise<void> {
    await this.connect();
    this.checkTimer = setInterval(() => void this.check(), this.options.checkIntervalMs ?? 30_000);
    this.checkTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.checkTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private connect(): Promise<void> {
    this.connecting ??= (async () => {
      const client = new pg.Client({
        connectionString: this.options.connectionString,
        keepAlive: true,
        // Without an initial delay the OS default applies (often two hours) and a dead peer goes unnoticed.
        keepAliveInitialDelayMillis: 10_000,
        connectionTimeoutMillis: CHECK_TIMEOUT_MS,
        application_name: 'asyncfirst-listener',
      });
      client.on('notification', (message) => {
        if (message.channel === this.options.channel) this.options.onNotification(message.payload ?? '');
      });
      client.on('error', (error) => this.lost(client, error));
      client.on('end', () => this.lost(client, new Error('the listening connection ended')));
      try {
        await client.connect();
        await client.query(`LISTEN ${quoteChannel(this.options.channel)}`);
      } catch (error) {
        await client.end().catch(() => {});
        throw error;
      }
      if (this.stopped) {
        await client.end().catch(() => {});
        return;
      }
      this.client = client;
      this.reconnectDelayMs = 100;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private lost(client: pg.Client, error: unknown): void {
    if (this.client !== client || this.stopped) return;
    this.client = undefined;
    this.options.onError(error);
    void client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(5000, this.reconnectDelayMs * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().then(
        () => this.options.onReconnect(),
        (error: unknown) => {
          this.options.onError(error);
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }

  /**
   * The connection can be half-dead without an error (a peer that vanished without a reset): ask
   * the server which channels it listens to, and count no answer within CHECK_TIMEOUT_MS as lost.
   */
  private async check(): Promise<void> {
    const client = this.client;
    if (!client || this.stopped || this.checking) return;
    this.checking = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answered = client.query<{ channel: string }>('SELECT pg_listening_channels() AS channel');
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the listening connection did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      });
      const { rows } = await Promise.race([answered, timedOut]);
      if (!rows.some((row) => row.channel === this.options.channel)) await client.query(`LISTEN ${quoteChannel(this.options.channel)}`);
    } catch (error) {
      this.lost(client, error);
    } finally {
      clearTimeout(timer);
      this.checking = false;
    }
  }
}

function quoteChannel(channel: string): string {
  return `"${channel.replaceAll('"', '""')}"`;
}
