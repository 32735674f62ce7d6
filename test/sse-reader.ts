import type { ClientRequest, IncomingMessage } from 'node:http';
import { expect } from 'vitest';

/*
 * Reading Server-Sent Events in tests, over node:http (so a test can drop a connection the way a
 * client does: an aborted fetch leaves undici opening a spare connection that holds
 * server.close() for its 4 s keep-alive).
 */

/** One parsed SSE item: an event (id, event, data) or a comment line. */
export type SseItem = { kind: 'event'; id: string | undefined; event: string | undefined; data: string } | { kind: 'comment'; text: string };

/**
 * A minimal SSE parser over a node:http response: splits the stream on blank lines and reads the
 * id, event and data fields (and comment lines) of each block. close() drops the connection.
 */
export class SseReader {
  private readonly chunks: AsyncIterator<string>;
  private buffer = '';
  private readonly pending: SseItem[] = [];
  private ended = false;

  constructor(
    private readonly response: IncomingMessage,
    private readonly request: ClientRequest,
  ) {
    response.setEncoding('utf8');
    this.chunks = response[Symbol.asyncIterator]();
  }

  /** The next item, or undefined once the response body has completed. */
  async next(): Promise<SseItem | undefined> {
    for (;;) {
      const item = this.pending.shift();
      if (item) return item;
      if (this.ended) return undefined;
      const { done, value } = await this.chunks.next();
      if (done) {
        this.ended = true;
        expect(this.response.complete).toBe(true);
        if (this.buffer.trim() !== '') this.parseBlock(this.buffer);
        this.buffer = '';
        continue;
      }
      this.buffer = (this.buffer + String(value)).replace(/\r\n?/g, '\n');
      let boundary = this.buffer.indexOf('\n\n');
      while (boundary >= 0) {
        this.parseBlock(this.buffer.slice(0, boundary));
        this.buffer = this.buffer.slice(boundary + 2);
        boundary = this.buffer.indexOf('\n\n');
      }
    }
  }

  /** Events (comments skipped) until `stop` says so (inclusive), or the stream ends. */
  async eventsUntil(stop: (event: SseEvent) => boolean): Promise<SseEvent[]> {
    const events: SseEvent[] = [];
    for (;;) {
      const item = await this.next();
      if (!item) return events;
      if (item.kind !== 'event') continue;
      events.push(item);
      if (stop(item)) return events;
    }
  }

  /** Every remaining event, until the response body completes. */
  rest(): Promise<SseEvent[]> {
    return this.eventsUntil(() => false);
  }

  /** The client goes away: the connection is destroyed mid-stream. */
  close(): void {
    this.request.destroy();
  }

  private parseBlock(block: string): void {
    let id: string | undefined;
    let event: string | undefined;
    const data: string[] = [];
    let fields = 0;
    for (const line of block.split('\n')) {
      if (line === '') continue;
      if (line.startsWith(':')) {
        this.pending.push({ kind: 'comment', text: line.slice(1).trim() });
        continue;
      }
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      fields++;
      if (name === 'id') id = value;
      else if (name === 'event') event = value;
      else if (name === 'data') data.push(value);
    }
    if (fields > 0) this.pending.push({ kind: 'event', id, event, data: data.join('\n') });
  }
}

export type SseEvent = Extract<SseItem, { kind: 'event' }>;
