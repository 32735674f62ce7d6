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
export class PostgresListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private reconnectDelayMs = 100;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;

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
      const client = new pg.Client({ connectionString: this.options.connectionString, keepAlive: true, application_name: 'asyncfirst-listener' });
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

  /** The connection can be half-dead without an error: ask the server which channels it listens to. */
  private async check(): Promise<void> {
    const client = this.client;
    if (!client || this.stopped) return;
    try {
      const { rows } = await client.query<{ channel: string }>('SELECT pg_listening_channels() AS channel');
      if (!rows.some((row) => row.channel === this.options.channel)) await client.query(`LISTEN ${quoteChannel(this.options.channel)}`);
    } catch (error) {
      this.lost(client, error);
    }
  }
}

function quoteChannel(channel: string): string {
  return `"${channel.replaceAll('"', '""')}"`;
}
