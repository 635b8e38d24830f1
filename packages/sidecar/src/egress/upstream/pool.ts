/**
 * One mTLS destination: an HTTP/2 session when the server speaks h2 (ALPN), otherwise a keep-alive
 * HTTP/1.1 pool. Every upstream TLS connection is registered with the proof signer (exporter and
 * proof cache per connection, dropped when it closes).
 */
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { Agent as HttpsAgent } from 'node:https';
import { isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { ConnectionProofSigner } from '@tether/core';
import type { Logger } from '../../log.js';
import { connectFailure } from '../retry.js';
import type { Outbound, SendContext, UpstreamResponse } from './exchange.js';
import { sendH1 } from './h1.js';
import { sendH2, type H2Connection } from './h2.js';

/**
 * How long an upstream connection whose HTTP/2 session has closed gracefully (GOAWAY sent, every
 * stream done, our FIN sent) waits for the server to close its side before it is destroyed. Node
 * otherwise keeps a half-open socket, with its session and proof state, until the peer closes it.
 */
const UPSTREAM_CLOSE_GRACE_MS = 1000;

type Connection = H2Connection | { kind: 'h1' };

export interface PoolOptions {
  tls: ConnectionOptions;
  signer: ConnectionProofSigner;
  log: Logger;
  connectTimeoutMs: number;
  upstreamTimeoutMs: number;
  /** An upstream TLS connection opened (true) or closed (false). */
  onConnection(open: boolean): void;
}

export class UpstreamPool {
  #mode: 'probe' | 'h2' | 'h1' = 'probe';
  #current: Promise<Connection> | undefined;
  #live: ClientHttp2Session | undefined;
  #agent: HttpsAgent | undefined;
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

  /** Send one request on this destination's current connection (opened on demand). */
  async send(outbound: Outbound): Promise<UpstreamResponse> {
    const conn = await this.acquire();
    return conn.kind === 'h2' ? sendH2(conn, this.origin.host, outbound, this.options.signer, this.#send) : sendH1(this, outbound, this.options.signer, this.#send);
  }

  get host(): string {
    return this.origin.hostname.replace(/^\[|\]$/g, '');
  }

  #servername(): Record<string, string> {
    return isIP(this.host) === 0 ? { servername: this.host } : {};
  }

  #opened(socket: TLSSocket): void {
    this.options.onConnection(true);
    this.options.signer.attach(socket, () => this.options.onConnection(false));
    this.options.log.debug({ upstream: this.origin.origin, alpn: socket.alpnProtocol, tls: socket.getProtocol() }, 'upstream connection opened');
  }

  acquire(): Promise<Connection> {
    if (this.#closed) return Promise.reject(new Error('egress is shutting down'));
    if (this.#mode === 'h1') return Promise.resolve({ kind: 'h1' });
    if (this.#current !== undefined && this.#live !== undefined && (this.#live.closed || this.#live.destroyed)) this.#current = undefined;
    if (this.#current !== undefined) return this.#current;
    this.#live = undefined;
    const pending: Promise<Connection> = this.#connect().then((socket) => {
      if (socket.alpnProtocol !== 'h2') {
        // The server speaks HTTP/1.1 only: remember that and use a keep-alive pool from now on.
        this.#mode = 'h1';
        if (this.#current === pending) this.#current = undefined;
        socket.destroy();
        return { kind: 'h1' };
      }
      this.#mode = 'h2';
      this.#opened(socket);
      return this.#session(socket, () => {
        if (this.#current === pending) this.#current = undefined;
      });
    });
    pending.catch(() => {
      if (this.#current === pending) this.#current = undefined;
    });
    this.#current = pending;
    return pending;
  }

  /** A secured TLS connection (ALPN h2 preferred), or a {@link connectFailure}. */
  #connect(): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        ...this.options.tls,
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

  /** The HTTP/2 session on `socket`; `forget` takes it out of the pool (no new requests on it). */
  #session(socket: TLSSocket, forget: () => void): H2Connection {
    const log = this.options.log;
    const session = http2Connect(this.origin.origin, { createConnection: () => socket });
    this.sessions.add(session);
    this.#live = session;
    session.on('error', (error) => log.warn({ upstream: this.origin.origin, err: error.message }, 'upstream session error'));
    session.on('goaway', (code: number, lastStreamID: number) => {
      // No new requests on it. Close it ourselves once the streams the GOAWAY covers (ids up to
      // lastStreamID) are done, rather than wait for the server to close the connection. (Node
      // does the same for NO_ERROR; any other code destroys the session at once.)
      forget();
      if (this.#live === session) this.#live = undefined;
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
    return { kind: 'h2', session, socket };
  }

  /** The keep-alive HTTP/1.1 agent of a server that does not speak h2. */
  agent(): HttpsAgent {
    this.#agent ??= new HttpsAgent({ ...this.options.tls, ...this.#servername(), keepAlive: true, ALPNProtocols: ['http/1.1'] });
    return this.#agent;
  }

  /** Make sure an HTTP/1.1 pool socket is secured and registered before a proof is made for it. */
  ready(socket: TLSSocket): Promise<void> {
    if (this.options.signer.known(socket)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onSecure = () => {
        socket.off('error', reject);
        this.#opened(socket);
        resolve();
      };
      if ((socket as { _secureEstablished?: boolean })._secureEstablished === true) onSecure();
      else {
        socket.once('secureConnect', onSecure);
        socket.once('error', reject);
      }
    });
  }

  /** No new requests; close the sessions gracefully (their streams finish). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#agent?.destroy();
    await Promise.all([...this.sessions].map((s) => new Promise<void>((resolve) => (s.closed ? resolve() : s.close(() => resolve())))));
  }

  destroy(): void {
    for (const s of this.sessions) s.destroy();
  }
}
