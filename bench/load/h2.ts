/**
 * HTTP/2 transport of the matrix load generator: `tls.connect` + `http2.connect({ createConnection })`,
 * so the client knows the TLS socket (for the exporter) under every stream, as `SessionBoundClient`
 * does.
 *
 * Deadlines: a TLS handshake or a request without a complete answer after `REQUEST_TIMEOUT_MS` is
 * cancelled and counts as a failure (status 0).
 */
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { SESSION_BOUND_HEADER_TABLE_SIZE } from '@tether/core';
import { REQUEST_TIMEOUT_MS, cancelAfter } from '../deadline.js';
import { tlsOptions, type ConnState, type LoadCredentials, type Target } from './connection.js';

export interface H2Conn extends ConnState {
  session: ClientHttp2Session;
  /** Latest TLS session ticket received on this connection. */
  ticket: Buffer | undefined;
  closed: Promise<void>;
}

export function openH2(creds: LoadCredentials, target: Target, resume?: Buffer): Promise<H2Conn> {
  const socket = tlsConnect(tlsOptions(creds, target, 'h2', resume));
  socket.setNoDelay(true);
  // As tether's clients do (SESSION_BOUND_HEADER_TABLE_SIZE); TETHER_BENCH_HPACK overrides it.
  const maxDeflateDynamicTableSize = process.env.TETHER_BENCH_HPACK === undefined ? SESSION_BOUND_HEADER_TABLE_SIZE : Number(process.env.TETHER_BENCH_HPACK);
  const session = http2Connect(`https://${target.host}:${target.port}`, { createConnection: () => socket, maxDeflateDynamicTableSize });
  const conn: H2Conn = {
    socket,
    session,
    ekm: undefined,
    proofs: new Map(),
    ticket: undefined,
    closed: new Promise((resolve) => session.once('close', () => resolve())),
  };
  socket.on('session', (t: Buffer) => (conn.ticket = t));
  session.on('error', () => undefined);
  const handshake = new Promise<H2Conn>((resolve, reject) => {
    socket.once('secureConnect', () => resolve(conn));
    socket.once('error', reject);
  });
  return cancelAfter(handshake, REQUEST_TIMEOUT_MS, () => socket.destroy(new Error(`no TLS handshake within ${REQUEST_TIMEOUT_MS} ms`)));
}

/** Close gracefully; a session that has not closed after REQUEST_TIMEOUT_MS is destroyed. */
export function closeH2(conn: H2Conn): Promise<void> {
  if (!conn.session.closed && !conn.session.destroyed) conn.session.close();
  return cancelAfter(conn.closed, REQUEST_TIMEOUT_MS, () => conn.session.destroy());
}

/** One GET on an HTTP/2 connection; resolves the status (0 on a stream error or after `timeoutMs`, when the stream is cancelled). */
export function h2Get(conn: H2Conn, target: Target, headers: Record<string, string>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<number> {
  if (conn.session.closed || conn.session.destroyed) return Promise.resolve(0);
  const stream = conn.session.request(
    { ...headers, [h2.HTTP2_HEADER_METHOD]: 'GET', [h2.HTTP2_HEADER_PATH]: target.path, [h2.HTTP2_HEADER_AUTHORITY]: `${target.host}:${target.port}` },
    { endStream: true },
  );
  let status = 0;
  let timedOut = false;
  const done = new Promise<number>((resolve) => {
    stream.on('response', (h) => (status = Number(h[h2.HTTP2_HEADER_STATUS])));
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('close', () => resolve(timedOut ? 0 : status));
  });
  return cancelAfter(done, timeoutMs, () => {
    timedOut = true;
    stream.close(h2.NGHTTP2_CANCEL);
  });
}
