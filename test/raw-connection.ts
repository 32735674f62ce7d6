import { connect, type Socket } from 'node:net';

/** One HTTP/1.1 response as it arrived on the wire. */
export interface RawResponse {
  status: number;
  /** Header names lower-cased; a repeated header keeps its last value. */
  headers: Record<string, string>;
  body: string;
}

/** A TCP connection to the server that writes exactly the bytes a test gives it, complete requests or not. */
export interface RawConnection {
  socket: Socket;
  /** Everything received so far. */
  received(): Buffer;
  /** The responses received so far, in order. */
  responses(): RawResponse[];
  /** True until either side has closed the connection. */
  isOpen(): boolean;
  /** Milliseconds from connecting until the server closed the connection; rejects if it is still open after capMs. */
  closedWithin(capMs: number): Promise<number>;
}

/** Connects to 127.0.0.1:port and writes `bytes` (which may stop in the middle of a request). */
export function openConnection(port: number, bytes: string | Buffer = ''): RawConnection {
  const socket = connect(port, '127.0.0.1');
  const started = performance.now();
  const chunks: Buffer[] = [];
  let open = true;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  // A reset after the server's answer is one way of being closed; the assertions look at what arrived.
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => {
      open = false;
      resolve(performance.now() - started);
    }),
  );
  if (bytes.length > 0) socket.write(bytes);
  return {
    socket,
    received: () => Buffer.concat(chunks),
    responses: () => parseResponses(Buffer.concat(chunks)),
    isOpen: () => open,
    closedWithin(capMs) {
      let timer: NodeJS.Timeout | undefined;
      const cap = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`the server had not closed the connection after ${capMs} ms; received ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
        }, capMs);
      });
      return Promise.race([closed, cap]).finally(() => clearTimeout(timer));
    },
  };
}

/** Splits received bytes into responses; each body is as long as its Content-Length says. */
export function parseResponses(bytes: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const headEnd = bytes.indexOf('\r\n\r\n', offset);
    if (headEnd < 0) throw new Error(`an incomplete response head: ${JSON.stringify(bytes.subarray(offset).toString('latin1'))}`);
    const [statusLine = '', ...headerLines] = bytes.subarray(offset, headEnd).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1];
    if (status === undefined) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const bodyStart = headEnd + 4;
    responses.push({ status: Number(status), headers, body: bytes.subarray(bodyStart, bodyStart + length).toString('utf8') });
    offset = bodyStart + length;
  }
  return responses;
}
