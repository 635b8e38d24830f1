/**
 * Per-connection bookkeeping of the client side: requests in flight and served on each connection
 * (the HTTP/2 session, or the TLS socket of HTTP/1.1), for the idle timeout and for connection
 * rotation (`maxRequestsPerConnection`).
 *
 * Idle timeout: a connection with no request in flight for `idleTimeoutMs` is closed. HTTP/1.1:
 * the socket is ended (TLS close_notify and FIN); HTTP/2: the session is closed (GOAWAY NO_ERROR,
 * Node then ends it once nothing is pending). Either is destroyed after {@link IDLE_GRACE_MS} if the
 * client has not closed its side by then. One timer per connection, re-armed with `refresh()`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, Http2Session, ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';

/** How long a connection closed for idleness gets to close its side before it is destroyed. */
export const IDLE_GRACE_MS = 1000;

interface Connection {
  /** Requests whose response has not closed yet. */
  inflight: number;
  /** Requests counted for rotation (metadata requests are not). */
  served: number;
  timer: NodeJS.Timeout | undefined;
  /** The connection has closed: its timer must never be re-armed. */
  closed: boolean;
}

export interface ClientConnectionsOptions {
  /** 0 = never close idle connections. */
  idleTimeoutMs: number;
  /** Infinity = no rotation. */
  maxRequestsPerConnection: number;
  /** Called when a connection is closed for idleness. */
  onIdleClose?: (protocol: 'h2' | 'http/1.1') => void;
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

export class ClientConnections {
  readonly #options: ClientConnectionsOptions;
  /** Keyed by HTTP/2 session or HTTP/1.1 TLS socket. */
  readonly #connections = new WeakMap<object, Connection>();

  constructor(options: ClientConnectionsOptions) {
    this.#options = options;
  }

  /** A new TLS connection (`secureConnection`): HTTP/1.1 ones are tracked here, HTTP/2 ones by their session. */
  addSocket(socket: TLSSocket): void {
    if (socket.alpnProtocol === 'h2') return;
    this.#add(socket, 'http/1.1', () => endSocket(socket));
  }

  /** A new HTTP/2 session. */
  addSession(session: ServerHttp2Session): void {
    this.#add(session, 'h2', () => closeSession(session));
  }

  /**
   * A request starts: it counts as in flight on its connection until its response closes. Returns
   * the connection's HTTP/2 session (undefined for HTTP/1.1), captured now: a finished stream no
   * longer knows its session.
   */
  begin(req: Req, res: Res): Http2Session | undefined {
    const session = 'stream' in req ? req.stream.session : undefined;
    const key = session ?? req.socket;
    const c = this.#connections.get(key);
    if (c === undefined) return session; // a connection that closed already
    c.inflight++;
    res.once('close', () => {
      c.inflight--;
      // A stream can report its close after its session's: re-arming then would keep the closed
      // connection (and all it references) alive until the timer fires.
      if (c.inflight === 0 && !c.closed) c.timer?.refresh();
    });
    return session;
  }

  /**
   * Connection rotation: when this request is the connection's last allowed one, answer it and close
   * the connection gracefully (GOAWAY once the stream is done, or `Connection: close`).
   */
  rotate(req: Req, res: Res, session: Http2Session | undefined): void {
    const limit = this.#options.maxRequestsPerConnection;
    if (limit === Infinity) return;
    const c = this.#connections.get(session ?? req.socket);
    if (c === undefined || ++c.served < limit) return;
    if (session !== undefined) res.once('close', () => session.close());
    else res.setHeader('connection', 'close');
  }

  #add(key: TLSSocket | ServerHttp2Session, protocol: 'h2' | 'http/1.1', close: () => void): void {
    const c: Connection = { inflight: 0, served: 0, timer: undefined, closed: false };
    const idleMs = this.#options.idleTimeoutMs;
    if (idleMs > 0) {
      c.timer = setTimeout(() => {
        if (c.inflight > 0) return; // re-armed when the last request closes
        this.#options.onIdleClose?.(protocol);
        close();
      }, idleMs);
      c.timer.unref();
    }
    this.#connections.set(key, c);
    key.once('close', () => {
      c.closed = true;
      clearTimeout(c.timer);
    });
  }
}

/** End an idle HTTP/1.1 connection; destroy it if the client has not closed its side after the grace. */
function endSocket(socket: TLSSocket): void {
  if (socket.destroyed) return;
  socket.end();
  setTimeout(() => socket.destroy(), IDLE_GRACE_MS).unref();
}

/** GOAWAY to an idle HTTP/2 session; destroy it if it is still open after the grace. */
function closeSession(session: ServerHttp2Session): void {
  if (session.destroyed) return;
  session.close();
  setTimeout(() => {
    if (!session.destroyed) session.destroy();
  }, IDLE_GRACE_MS).unref();
}
