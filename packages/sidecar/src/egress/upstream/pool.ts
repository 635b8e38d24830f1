/**
 * One mTLS destination: HTTP/2 sessions when the server speaks h2 (ALPN), otherwise a keep-alive
 * HTTP/1.1 pool. A request goes on the first session with a free stream slot (its streams below the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS); when every session is full another connection is
 * opened, so one agent holding streams open cannot make everyone else's requests wait (queued in
 * nghttp2) behind them. Every upstream TLS connection is opened with one certificate generation
 * (generations.ts) and registered with that generation's proof signer (exporter and proof cache per
 * connection, dropped when it closes). After a rotation new requests get connections of the new
 * generation; those of older ones finish what they carry and close (h2: `session.close()` once no
 * request is between acquiring the session and opening its stream; h1: the old agent keeps no idle
 * socket).
 *
 * Not shared with the client's `Http2SessionPool` (@tether/core): that pool speaks HTTP/2 only and
 * one TLS configuration for its life, while this one probes ALPN and falls back to HTTP/1.1,
 * retries refused connects, keeps sessions that received GOAWAY until their streams finish, and
 * opens connections per certificate generation. Folding those into core would put sidecar policy
 * into the package every verifier installs.
 */
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { Agent as HttpsAgent } from 'node:https';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { SESSION_BOUND_HEADER_TABLE_SIZE, tlsHandshakeDone } from '@tether/core';
import type { Logger } from '../../log.js';
import { errorMessage } from '../../shared/errors.js';
import { egressError } from '../errors.js';
import type { Generation } from '../generations.js';
import { connectFailure } from '../retry.js';
import type { Outbound, SendContext, UpstreamResponse } from './exchange.js';
import { sendH1, type H1Target } from './h1.js';
import { sendH2, type H2Connection } from './h2.js';

/**
 * How long an upstream connection whose HTTP/2 session has closed gracefully (GOAWAY sent, every
 * stream done, our FIN sent) waits for the server to close its side before it is destroyed. Node
 * otherwise keeps a half-open socket, with its session and proof state, until the peer closes it.
 */
const UPSTREAM_CLOSE_GRACE_MS = 1000;

/**
 * The stream limit assumed for a session whose server's SETTINGS have not arrived yet (Node's
 * `peerMaxConcurrentStreams` default, which nghttp2 applies until then), and how many requests may
 * wait for one connection being opened before another is opened.
 */
const ASSUMED_STREAM_LIMIT = 100;

/** A connection to send on, with the generation it was opened with (its signer signs its proofs). */
type H2Conn = H2Connection & { generation: Generation };
type Connection = H2Conn | { kind: 'h1'; generation: Generation; target: H1Target };

/** Tokens bound to a certificate generation (the egress's own, token-source.ts). */
export interface TokenBinder {
  /** `token` when it may travel on a connection of `generation`, otherwise one that may (fetched with its certificate). */
  bind(token: string, generation: Generation): Promise<string>;
}

/** Per HTTP/2 session: its generation, requests between acquiring it and their response, whether it is being retired. */
interface SessionState {
  generation: Generation;
  pending: number;
  /** Requests from acquiring the session until their stream closes (the session's slots in use). */
  streams: number;
  retired: boolean;
}

/** A connection being opened, and how many requests wait for it. */
interface Connecting {
  generation: Generation;
  connection: Promise<Connection>;
  waiting: number;
}

/** Whether `session` has a free stream slot for one more request. */
function hasRoom(session: ClientHttp2Session, state: SessionState): boolean {
  return !session.closed && !session.destroyed && state.streams < (session.remoteSettings?.maxConcurrentStreams ?? ASSUMED_STREAM_LIMIT);
}

export interface PoolOptions {
  /** The generation new connections are opened with. */
  generation(): Generation;
  /** Rebinds the egress's own tokens to the generation of the connection they go on. */
  tokens?: TokenBinder | undefined;
  log: Logger;
  connectTimeoutMs: number;
  upstreamTimeoutMs: number;
  /** An upstream TLS connection opened (true) or closed (false). */
  onConnection(open: boolean): void;
}

/** An HTTP/1.1 agent of an older generation: sockets that become idle are closed, idle ones now. */
function retireAgent(agent: HttpsAgent): void {
  agent.maxFreeSockets = 0;
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
}

export class UpstreamPool {
  #mode: 'probe' | 'h2' | 'h1' = 'probe';
  #connecting: Connecting | undefined;
  /** Sessions of the current generation that take new requests (no GOAWAY, not retired), oldest first. */
  #usable: H2Conn[] = [];
  /** The HTTP/1.1 agent (and transport target) of each generation in use; retired ones are kept until close. */
  readonly #h1 = new Map<Generation, Connection & { kind: 'h1' }>();
  readonly #retiredAgents = new Set<HttpsAgent>();
  readonly #states = new WeakMap<ClientHttp2Session, SessionState>();
  readonly sessions = new Set<ClientHttp2Session>();
  #closed = false;
  readonly #send: SendContext;

  constructor(
    readonly origin: URL,
    private readonly options: PoolOptions,
  ) {
    this.#send = { upstreamTimeoutMs: options.upstreamTimeoutMs };
  }

  get mode(): string {
    return this.#mode;
  }

  /**
   * Send one request on this destination's current connection (opened on demand), signed by the
   * connection's generation, with a token bound to it.
   */
  async send(outbound: Outbound): Promise<UpstreamResponse> {
    const conn = await this.acquire();
    if (conn.kind === 'h1') return sendH1(conn.target, await this.#bind(outbound, conn.generation), conn.generation.signer, this.#send);
    const release = this.#hold(conn);
    let response: UpstreamResponse | undefined;
    try {
      response = await sendH2(conn, this.origin.host, await this.#bind(outbound, conn.generation), conn.generation.signer, this.#send);
      return response;
    } finally {
      release(response?.body);
    }
  }

  /** The egress's own token fetched with another certificate is swapped for one fetched with this connection's. */
  async #bind(outbound: Outbound, generation: Generation): Promise<Outbound> {
    const tokens = this.options.tokens;
    if (outbound.token === undefined || tokens === undefined) return outbound;
    let token: string;
    try {
      token = await tokens.bind(outbound.token, generation);
    } catch (error) {
      this.options.log.warn({ upstream: this.origin.origin, generation: generation.number, err: errorMessage(error) }, 'could not obtain a token for the certificate of the connection');
      throw egressError('ERR_EGRESS_TOKEN_UNAVAILABLE', { cause: error });
    }
    return token === outbound.token ? outbound : { ...outbound, token, headers: { ...outbound.headers, authorization: `Bearer ${token}` } };
  }

  /**
   * Count a request on `conn`'s session: it keeps a session of an older generation open until it
   * has its stream, and holds a stream slot until that stream (the response `body`) closes.
   */
  #hold(conn: H2Conn): (body: Readable | undefined) => void {
    const state = this.#states.get(conn.session);
    if (state === undefined) return () => undefined;
    state.pending++;
    state.streams++;
    return (body) => {
      state.pending--;
      if (body === undefined || body.destroyed) state.streams--;
      else body.once('close', () => state.streams--);
      if (state.retired) this.#closeIfIdle(conn.session, state);
    };
  }

  get host(): string {
    return this.origin.hostname.replace(/^\[|\]$/g, '');
  }

  #servername(): Record<string, string> {
    return isIP(this.host) === 0 ? { servername: this.host } : {};
  }

  #opened(socket: TLSSocket, generation: Generation): void {
    this.options.onConnection(true);
    generation.signer.attach(socket, () => this.options.onConnection(false));
    this.options.log.debug({ upstream: this.origin.origin, alpn: socket.alpnProtocol, tls: socket.getProtocol(), generation: generation.number }, 'upstream connection opened');
  }

  /**
   * The connection for one request: a session of the current generation with a free stream slot,
   * else the connection being opened (up to {@link ASSUMED_STREAM_LIMIT} requests wait for one),
   * else a new one.
   */
  acquire(): Promise<Connection> {
    if (this.#closed) return Promise.reject(new Error('egress is shutting down'));
    const generation = this.options.generation();
    if (this.#mode === 'h1') return Promise.resolve(this.#h1For(generation));
    for (const conn of this.#usable) {
      const state = this.#states.get(conn.session);
      if (state !== undefined && state.generation === generation && hasRoom(conn.session, state)) return Promise.resolve(conn);
    }
    const connecting = this.#connecting;
    if (connecting !== undefined && connecting.generation === generation && connecting.waiting < ASSUMED_STREAM_LIMIT) {
      connecting.waiting++;
      return connecting.connection;
    }
    return this.#open(generation);
  }

  /** Open a connection of `generation`; the requests waiting for it use it even if it is full by then. */
  #open(generation: Generation): Promise<Connection> {
    const done = () => {
      if (this.#connecting === entry) this.#connecting = undefined;
    };
    const connection: Promise<Connection> = this.#connect(generation).then((socket) => {
      done();
      if (socket.alpnProtocol !== 'h2') {
        // The server speaks HTTP/1.1 only: remember that and use a keep-alive pool from now on.
        this.#mode = 'h1';
        socket.destroy();
        // No connection yet: the request gets one of the current generation.
        return this.#h1For(this.options.generation());
      }
      this.#mode = 'h2';
      this.#opened(socket, generation);
      const conn = this.#session(socket, generation);
      // Rotated while connecting: the requests waiting for this connection use it, nobody after them.
      if (generation !== this.options.generation()) this.#retire(conn.session);
      else this.#usable.push(conn);
      return conn;
    });
    connection.catch(done);
    const entry: Connecting = { generation, connection, waiting: 1 };
    this.#connecting = entry;
    return connection;
  }

  /** No new requests on `session` (GOAWAY, closed, retired). */
  #unlist(session: ClientHttp2Session): void {
    const i = this.#usable.findIndex((c) => c.session === session);
    if (i >= 0) this.#usable.splice(i, 1);
  }

  /**
   * The current generation changed: new requests get connections of it. HTTP/2 sessions of older
   * generations are closed gracefully once no request is about to open a stream on them (their
   * streams finish); the older HTTP/1.1 agent closes its sockets as they become idle.
   */
  rotate(): void {
    const generation = this.options.generation();
    if (this.#connecting !== undefined && this.#connecting.generation !== generation) this.#connecting = undefined;
    for (const session of this.sessions) if (this.#states.get(session)?.generation !== generation) this.#retire(session);
    for (const [g, conn] of this.#h1) {
      if (g === generation) continue;
      this.#h1.delete(g);
      const agent = conn.target.agent();
      retireAgent(agent);
      this.#retiredAgents.add(agent);
    }
    for (const agent of this.#retiredAgents) if (Object.keys(agent.sockets).length === 0 && Object.keys(agent.freeSockets).length === 0) this.#retiredAgents.delete(agent);
  }

  #retire(session: ClientHttp2Session): void {
    const state = this.#states.get(session);
    if (state === undefined || state.retired) return;
    state.retired = true;
    this.#unlist(session);
    // After the requests already waiting for this session (promise continuations) have taken it.
    setImmediate(() => this.#closeIfIdle(session, state));
  }

  #closeIfIdle(session: ClientHttp2Session, state: SessionState): void {
    if (state.pending > 0 || session.closed || session.destroyed) return;
    this.options.log.debug({ upstream: this.origin.origin, generation: state.generation.number }, 'closing an upstream session of an earlier certificate');
    session.close();
  }

  /** A secured TLS connection (ALPN h2 preferred) made with `generation`, or a {@link connectFailure}. */
  #connect(generation: Generation): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        ...generation.tls,
        ...this.#servername(),
        host: this.host,
        port: Number(this.origin.port || 443),
        ALPNProtocols: this.#mode === 'h2' ? ['h2'] : ['h2', 'http/1.1'],
      });
      socket.setNoDelay(true);
      socket.setTimeout(this.options.connectTimeoutMs, () => socket.destroy(new Error('upstream connect timed out')));
      const fail = (error: Error) => reject(connectFailure(error));
      socket.once('error', fail);
      socket.once('secureConnect', () => {
        socket.setTimeout(0);
        socket.off('error', fail);
        resolve(socket);
      });
    });
  }

  /** The HTTP/2 session on `socket`; it leaves the usable list on GOAWAY or close. */
  #session(socket: TLSSocket, generation: Generation): H2Conn {
    const log = this.options.log;
    // The proofs it adds stay in the ingress's HPACK table when it advertises room for them.
    const session = http2Connect(this.origin.origin, { createConnection: () => socket, maxDeflateDynamicTableSize: SESSION_BOUND_HEADER_TABLE_SIZE });
    this.sessions.add(session);
    this.#states.set(session, { generation, pending: 0, streams: 0, retired: false });
    const forget = () => this.#unlist(session);
    session.on('error', (error) => log.warn({ upstream: this.origin.origin, err: error.message }, 'upstream session error'));
    session.on('goaway', (code: number, lastStreamID: number) => {
      // No new requests on it. Close it ourselves once the streams the GOAWAY covers (ids up to
      // lastStreamID) are done, rather than wait for the server to close the connection. (Node
      // does the same for NO_ERROR; any other code destroys the session at once.)
      forget();
      log.debug({ upstream: this.origin.origin, code, lastStreamID }, 'upstream GOAWAY: closing the connection once its streams are done');
      if (code === h2.NGHTTP2_NO_ERROR && !session.closed && !session.destroyed) session.close();
    });
    session.on('close', () => {
      forget();
      this.sessions.delete(session);
    });
    socket.on('close', forget);
    // Our side of the connection has ended (the session closed gracefully): a server that does not
    // close its side in turn does not keep the socket, the session and its proof state alive.
    socket.once('finish', () => {
      const timer = setTimeout(() => socket.destroy(), UPSTREAM_CLOSE_GRACE_MS).unref();
      socket.once('close', () => clearTimeout(timer));
    });
    return { kind: 'h2', session, socket, generation };
  }

  /** The keep-alive HTTP/1.1 agent (as a transport target) of `generation`, for a server that does not speak h2. */
  #h1For(generation: Generation): Connection & { kind: 'h1' } {
    let conn = this.#h1.get(generation);
    if (conn === undefined) {
      const agent = new HttpsAgent({ ...generation.tls, ...this.#servername(), keepAlive: true, ALPNProtocols: ['http/1.1'] });
      const target: H1Target = { origin: this.origin, host: this.host, agent: () => agent, ready: (socket) => this.#ready(socket, generation) };
      conn = { kind: 'h1', generation, target };
      this.#h1.set(generation, conn);
    }
    return conn;
  }

  /** Make sure an HTTP/1.1 pool socket is secured and registered before a proof is made for it. */
  #ready(socket: TLSSocket, generation: Generation): Promise<void> {
    if (generation.signer.known(socket)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onSecure = () => {
        socket.off('error', reject);
        this.#opened(socket, generation);
        resolve();
      };
      if (tlsHandshakeDone(socket) === true) onSecure();
      else {
        socket.once('secureConnect', onSecure);
        socket.once('error', reject);
      }
    });
  }

  /** No new requests; close the sessions gracefully (their streams finish). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const conn of this.#h1.values()) conn.target.agent().destroy();
    for (const agent of this.#retiredAgents) agent.destroy();
    await Promise.all([...this.sessions].map((s) => new Promise<void>((resolve) => (s.closed ? resolve() : s.close(() => resolve())))));
  }

  destroy(): void {
    for (const s of this.sessions) s.destroy();
  }
}
