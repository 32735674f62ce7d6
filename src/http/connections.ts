import { createServer, maxHeaderSize, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyInstance, FastifyServerFactory } from 'fastify';
import { type ProblemDetails, problem } from '../core/problems.js';

/** How long a connection may take to send a request, stay idle, and how many may be open at once. */
export interface ConnectionLimits {
  /** Time to receive a whole request, headers and body. */
  requestTimeoutMs: number;
  /** Time to receive a request's headers; at most requestTimeoutMs. */
  headersTimeoutMs: number;
  /** How long an idle connection waits for its next request. */
  keepAliveTimeoutMs: number;
  /** Open connections at most; the operating system's file descriptors are the resource they hold. */
  maxConnections: number;
}

/** The longest Node may wait between two looks for requests past their timeout. */
const MAX_CHECK_INTERVAL_MS = 1000;

/** Fastify's serverFactory: a node:http server that cuts off slow and idle clients and refuses connections past the cap. */
export function limitedServerFactory(limits: ConnectionLimits): FastifyServerFactory<Server> {
  const headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  return (handler) => {
    const server = createServer(
      {
        requestTimeout: limits.requestTimeoutMs,
        headersTimeout,
        keepAliveTimeout: limits.keepAliveTimeoutMs,
        // Node looks for expired requests every 30 s by default, which would let a 10 s timeout run to 40 s.
        connectionsCheckingInterval: Math.max(10, Math.min(MAX_CHECK_INTERVAL_MS, Math.floor(headersTimeout / 4))),
        // Checked below instead: node:http's own check answers with an empty 400.
        requireHostHeader: false,
      },
      (request, response) => {
        if (request.headers.host === undefined && request.httpVersion === '1.1') {
          const body = JSON.stringify(problem('badRequest', 'An HTTP/1.1 request must have a Host header (RFC 9112).'));
          const headers = { 'content-type': 'application/problem+json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' };
          response.writeHead(400, headers).end(body);
          return;
        }
        handler(request, response);
      },
    );
    // Past the cap Node closes a new connection as soon as it is accepted.
    server.maxConnections = limits.maxConnections;
    // An Expect other than 100-continue never reaches a request handler either (node:http answers an empty 417).
    server.on('checkExpectation', (request, response) => {
      const body = JSON.stringify(problem('expectationFailed', `Expect: ${request.headers.expect} is not supported; only 100-continue is.`));
      response
        .writeHead(417, { 'content-type': 'application/problem+json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' })
        .end(body);
    });
    // CONNECT never reaches a request handler (node:http emits it apart, and without a listener
    // closes the socket unanswered): answer it as a method this server does not serve.
    server.on('connect', (request, socket) => {
      const details = problem('methodNotAllowed', `${request.method} is not served here; no path of this server tunnels.`);
      socket.end(rawProblemResponse(details));
      socket.destroy();
    });
    return server;
  };
}

/** A socket's in-flight response, which node:http keeps on it while a request is being answered. */
type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

/**
 * Fastify's clientErrorHandler: a request that failed below HTTP parsing (too-large headers, a bad
 * Content-Length, a timeout, …) gets a complete problem+json response and the connection is closed,
 * unless a response has already begun on it, in which case it is only closed.
 */
export function clientErrorAnswerer(limits: ConnectionLimits) {
  const headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs);
  return function answerClientError(this: FastifyInstance, error: ConnectionError, socket: Socket): void {
    const details = clientErrorProblem(error, headersTimeout, limits.requestTimeoutMs);
    if (!details || !socket.writable) {
      socket.destroy();
      return;
    }
    const earlier = (socket as HttpSocket)._httpMessage;
    // A response already under way (an event stream) cannot have another spliced in: only close.
    if (earlier?.headersSent) {
      socket.destroy();
      return;
    }
    const answer = () => {
      // Not the error itself: its rawPacket holds the bytes received, up to the whole oversized header.
      this.log.debug({ code: error.code, status: details.status }, 'answered a request that could not be read');
      if (socket.writable) socket.end(rawProblemResponse(details));
      socket.destroy();
    };
    // A request received whole before this one is still being answered (a submission waiting for
    // its commit): its answer goes first, then this one, so a client reading them in order never
    // takes the 400 for the 202 of a job that was stored. (A request whose own body or time ran
    // out is the one failing here: it is answered at once.)
    if (earlier && !earlier.writableFinished && (earlier as ServerResponse & { req?: { complete?: boolean } }).req?.complete === true) {
      const giveUp = setTimeout(() => socket.destroy(), limits.requestTimeoutMs);
      giveUp.unref();
      earlier.once('finish', () => {
        clearTimeout(giveUp);
        answer();
      });
      earlier.once('close', () => {
        clearTimeout(giveUp);
        if (!earlier.writableFinished) socket.destroy();
      });
      return;
    }
    answer();
  };
}

/** The problem a client error is answered with; undefined for a connection error, which has nobody to answer. */
function clientErrorProblem(error: ConnectionError, headersTimeoutMs: number, requestTimeoutMs: number): ProblemDetails | undefined {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return problem(
      'requestTimeout',
      `The request was not received in time (headers within ${headersTimeoutMs} ms, all of it within ${requestTimeoutMs} ms); the connection is closed.`,
    );
  }
  if (error.code === 'HPE_HEADER_OVERFLOW') return problem('headersTooLarge', `The request line and headers are larger than ${maxHeaderSize} bytes.`);
  if (error.code?.startsWith('HPE_')) {
    const reason = (error as ConnectionError & { reason?: string }).reason ?? 'it cannot be parsed';
    return problem('badRequest', `The request is not valid HTTP/1.1: ${reason}.`);
  }
  return undefined;
}

/** A whole HTTP/1.1 response carrying problem details, for a socket that has no Fastify reply; it closes the connection. */
function rawProblemResponse(details: ProblemDetails): string {
  const body = JSON.stringify(details);
  return (
    `HTTP/1.1 ${details.status} ${STATUS_CODES[details.status] ?? ''}\r\n` +
    'Content-Type: application/problem+json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}
