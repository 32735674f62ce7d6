/** One message of a Server-Sent Events stream: `event` undefined for one that only moves the cursor (an `id:` line alone). */
export interface ServerSentEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/**
 * The messages of a text/event-stream body, as the HTML standard's parser reads them: blocks
 * separated by a blank line, fields `id`, `event` and `data` (several data lines joined by a line
 * feed), comment lines (`:`) skipped. A block with an id but no data is still yielded (asyncfirst
 * sends one to say where the stream starts, and after events its filters left out).
 */
export async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = '';
  let message: { id?: string; event?: string; data: string[] } = { data: [] };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline = buffer.search(/\r\n|\r|\n/);
      // A CR at the end may be the first half of a CRLF: wait for what follows.
      while (newline >= 0 && !(newline === buffer.length - 1 && buffer.endsWith('\r'))) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        newline = buffer.search(/\r\n|\r|\n/);
        if (line === '') {
          if (message.id !== undefined || message.data.length > 0) {
            yield { id: message.id, event: message.data.length > 0 ? (message.event ?? 'message') : undefined, data: message.data.join('\n') };
          }
          message = { data: [] };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (name === 'id') message.id = value;
        else if (name === 'event') message.event = value;
        else if (name === 'data') message.data.push(value);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
