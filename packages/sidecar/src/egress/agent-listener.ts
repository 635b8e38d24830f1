/**
 * The agent-facing listener: one TCP or Unix socket that speaks plain HTTP/1.1 and h2c with prior
 * knowledge. The first bytes of each connection are compared with the HTTP/2 connection preface
 * and the socket is handed to the matching server. Agent connections are counted, tracked for
 * draining, and closed after `idleTimeoutMs` without a request in flight.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createH2cServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DEFAULT_MAX_CONCURRENT_STREAMS, guardHttp2Session, resetOversizedHttp2Request } from '@tether/core/node';
import { describeEndpoint, type Endpoint } from '../config.js';
import { closeServer, listen, type ConnectionTracker } from '../servers.js';
import type { AnyResponse as AgentResponse } from '../shared/respond.js';
import { IdleConnections } from './agent-idle.js';
import type { AgentRequest } from './upstream/exchange.js';

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * Largest agent request header section, in bytes, on both agent transports (Node's HTTP/1.1
 * default). h2c would otherwise take 64 KiB, or more before the agent acknowledges SETTINGS, and
 * forward it to an upstream that refuses it: the agent would get a 502 blaming the upstream.
 */
export const AGENT_MAX_HEADER_BYTES = 16 * 1024;

export interface AgentListenerOptions {
  at: Endpoint;
  socketMode: number;
  /** Close agent connections with no request in flight for this long, ms (0 = never). */
  idleTimeoutMs: number;
  tracker: ConnectionTracker;
  onRequest(req: AgentRequest, res: AgentResponse): void;
  /**
   * A request refused before it reached `onRequest`: an h2c header section over
   * {@link AGENT_MAX_HEADER_BYTES} (reset: `status` 0), or an HTTP/1.1 request the parser refused
   * (431, 400, 408). `reason` is the failure reason counted.
   */
  onRefused(status: number, reason: string): void;
  /** The number of open agent connections changed. */
  onConnections(open: number): void;
}

export interface AgentListener {
  endpoint: Endpoint;
  /** Stop accepting; resolves when the listener is closed (connections are drained separately). */
  stop(): Promise<void>;
  /** Close idle HTTP/1.1 keep-alive connections (draining). */
  closeIdle(): void;
}

/** Hand `socket` to `h2c` or `h1` once its first bytes tell which protocol it speaks. */
function sniff(socket: Socket, h1: HttpServer, h2c: Http2Server, handedToH2c: () => void): void {
  let seen = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, HTTP2_PREFACE.length);
    const prefix = seen.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
    if (prefix && seen.length < HTTP2_PREFACE.length) return; // could still be either: wait for more
    socket.off('data', onData);
    socket.pause();
    socket.unshift(seen);
    if (prefix) {
      handedToH2c();
      h2c.emit('connection', socket);
    } else {
      h1.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
}

/** Status line and failure reason of an HTTP/1.1 parser or timeout error; undefined for socket errors (no request). */
function parserRefusal(code: string | undefined): { status: number; line: string; reason: string } | undefined {
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, line: '431 Request Header Fields Too Large', reason: 'header_too_large' };
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, line: '408 Request Timeout', reason: 'request_timeout' };
  if (code?.startsWith('HPE_') === true) return { status: 400, line: '400 Bad Request', reason: 'bad_request' };
  return undefined;
}

/**
 * What Node does by default with HTTP/1.1 requests its parser refuses (a bare 431, 408 or 400 when
 * nothing was sent on the connection yet, then the socket is destroyed), plus counting them.
 */
function clientErrorHandler(options: AgentListenerOptions): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    const refusal = parserRefusal(error.code);
    if (refusal !== undefined) {
      options.onRefused(refusal.status, refusal.reason);
      if (socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) socket.write(`HTTP/1.1 ${refusal.line}\r\nConnection: close\r\n\r\n`);
    }
    socket.destroy();
  };
}

/** The HTTP/1.1 and h2c servers behind the front socket, with idle tracking per connection. */
function agentServers(options: AgentListenerOptions, idle: IdleConnections): { h1: HttpServer; h2c: Http2Server } {
  const onRequest = (req: AgentRequest, res: AgentResponse) => {
    if (resetOversizedHttp2Request(req, AGENT_MAX_HEADER_BYTES)) {
      options.onRefused(0, 'header_too_large');
      return;
    }
    const connection: object | undefined = 'stream' in req ? req.stream.session : req.socket;
    if (connection !== undefined) {
      idle.begin(connection);
      res.once('close', () => idle.end(connection));
    }
    options.onRequest(req, res);
  };
  // Agent connections are local: no request timeout, so long uploads and streams are not cut.
  // keepAliveTimeout follows the idle timeout (Node advertises it in `Keep-Alive: timeout=N`).
  const h1 = createHttpServer({ requestTimeout: 0, maxHeaderSize: AGENT_MAX_HEADER_BYTES, keepAliveTimeout: options.idleTimeoutMs }, onRequest);
  const h2c = createH2cServer({ settings: { maxHeaderListSize: AGENT_MAX_HEADER_BYTES, maxConcurrentStreams: DEFAULT_MAX_CONCURRENT_STREAMS } }, onRequest);
  h1.on('clientError', clientErrorHandler(options));
  h2c.on('session', (session: ServerHttp2Session) => {
    options.tracker.trackSession(session);
    // Rapid reset and sessions nghttp2 stopped reading end at once; idleness is ours (below).
    guardHttp2Session(session, { idleTimeoutMs: 0 });
    idle.watch(session, () => {
      if (!session.closed && !session.destroyed) session.close(); // GOAWAY: the agent opens a new connection
    });
    session.once('close', () => idle.unwatch(session));
  });
  return { h1, h2c };
}

/** Listen for agents on `options.at`. */
export async function listenForAgents(options: AgentListenerOptions): Promise<AgentListener> {
  const idle = new IdleConnections(options.idleTimeoutMs);
  const { h1, h2c } = agentServers(options, idle);
  const front: NetServer = createNetServer((socket: Socket) => {
    options.tracker.track(socket, options.onConnections);
    socket.on('error', () => undefined);
    // The http / http2 servers would set this on sockets they accept themselves; these are handed
    // over. Without it, Nagle + delayed ACK hold back the body written after the headers (~40 ms).
    socket.setNoDelay(true);
    // Idle from the start: a connection that never sends a request is closed too.
    idle.watch(socket, () => socket.destroy());
    socket.once('close', () => idle.unwatch(socket));
    sniff(socket, h1, h2c, () => idle.unwatch(socket));
  });
  const endpoint = await listen(front, options.at, options.socketMode).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on ${describeEndpoint(options.at)}: ${error.code ?? error.message}`, { cause: error });
  });
  return {
    endpoint,
    stop: () => closeServer(front),
    closeIdle: () => h1.closeIdleConnections(),
  };
}
