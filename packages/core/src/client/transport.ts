import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { connect as http2Connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders as Http2IncomingHeaders } from 'node:http2';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { SESSION_BOUND_HEADER_TABLE_SIZE } from '../tls-options.js';

/** A response read whole. */
export interface BufferedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** An HTTP/2 session and the raw TLS socket under it (whose exporter and certificate we need). */
export interface PooledSession {
  session: ClientHttp2Session;
  socket: TLSSocket;
  /** Resolves once the handshake completed with ALPN `h2`; rejects on failure or after the deadline. */
  ready: Promise<void>;
}

/**
 * One multiplexed HTTP/2 session per origin, over a TLS socket this pool creates itself, so callers
 * always know which connection carries a request. Sessions that close, fail or receive GOAWAY are
 * forgotten and the next request opens a new one.
 */
export class Http2SessionPool {
  readonly #sessions = new Map<string, PooledSession>();

  constructor(
    private readonly tls: ConnectionOptions,
    private readonly handshakeTimeoutMs: number,
    private readonly onConnect: () => void = () => undefined,
  ) {}

  get(url: URL): PooledSession {
    const origin = url.origin;
    const existing = this.#sessions.get(origin);
    if (existing !== undefined && !existing.session.closed && !existing.session.destroyed) return existing;
    const socket = tlsConnect({ ...this.tls, host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 443), ALPNProtocols: ['h2'] });
    this.onConnect();
    // Proofs stay in the server's HPACK table when it advertises room for them (tls-options.ts).
    const session = http2Connect(origin, { createConnection: () => socket, maxDeflateDynamicTableSize: SESSION_BOUND_HEADER_TABLE_SIZE });
    const ready = new Promise<void>((resolve, reject) => {
      // A peer that accepts TCP but never finishes the handshake must not hang the caller.
      const deadline = setTimeout(() => {
        reject(new Error('TLS handshake timed out'));
        session.destroy();
        socket.destroy();
      }, this.handshakeTimeoutMs);
      deadline.unref();
      socket.once('close', () => clearTimeout(deadline));
      socket.once('secureConnect', () => {
        clearTimeout(deadline);
        if (socket.alpnProtocol !== 'h2') {
          reject(new Error('server did not negotiate HTTP/2'));
          session.destroy();
        } else resolve();
      });
      session.once('error', reject);
      socket.once('error', reject);
    });
    ready.catch(() => undefined);
    const entry = { session, socket, ready };
    const forget = () => {
      if (this.#sessions.get(origin) === entry) this.#sessions.delete(origin);
    };
    session.on('close', forget);
    session.on('goaway', forget);
    session.on('error', forget);
    this.#sessions.set(origin, entry);
    return entry;
  }

  /** Close every session and wait for them to close. */
  async close(): Promise<void> {
    const closing = [...this.#sessions.values()].map(
      ({ session }) =>
        new Promise<void>((resolve) => {
          // A destroyed session never calls close()'s callback; its 'close' event may already be queued.
          if (session.closed || session.destroyed) return resolve();
          session.once('close', () => resolve());
          session.close();
        }),
    );
    this.#sessions.clear();
    await Promise.all(closing);
  }
}

/** Send one request on an HTTP/2 session and read the whole response. Never resolves status 0. */
export function exchangeHttp2(
  session: ClientHttp2Session,
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | Uint8Array | undefined,
  timeoutMs: number,
): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request(
      {
        ...headers,
        [h2.HTTP2_HEADER_METHOD]: method,
        [h2.HTTP2_HEADER_PATH]: `${url.pathname}${url.search}`,
        [h2.HTTP2_HEADER_SCHEME]: 'https',
        [h2.HTTP2_HEADER_AUTHORITY]: url.host,
      },
      { endStream: body === undefined },
    );
    stream.setTimeout(timeoutMs, () => stream.close(h2.NGHTTP2_CANCEL));
    let status = 0;
    let responseHeaders: Http2IncomingHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[h2.HTTP2_HEADER_STATUS]);
      responseHeaders = h;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    // A stream can end without a response (e.g. the server refused the client certificate after a
    // TLS 1.3 handshake): leave it to 'close' to reject.
    stream.on('end', () => {
      if (status !== 0) resolve({ status, headers: withoutPseudoHeaders(responseHeaders), body: Buffer.concat(chunks) });
    });
    stream.on('error', reject);
    stream.on('close', () => {
      if (status === 0) reject(new Error(`stream closed without a response (code ${stream.rstCode})`));
    });
    if (body !== undefined) stream.end(body);
  });
}

/** Read a whole HTTP/1.1 response. */
export function readHttp1Response(res: IncomingMessage): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as IncomingHttpHeaders, body: Buffer.concat(chunks) }));
  });
}

function withoutPseudoHeaders(headers: Http2IncomingHeaders): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':')) out[k] = v;
  return out;
}
