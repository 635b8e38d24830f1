/**
 * PROXY protocol version 2 (HAProxy's "The PROXY protocol", section 2.2) in front of a TLS server. An L4 load balancer
 * (HAProxy `send-proxy-v2`, a cloud network load balancer) prepends the client's address to the TCP connection and
 * then relays bytes untouched, so the TLS handshake, the client certificate and the exporter, and with them session
 * binding, stay end to end between the client and this server.
 *
 * A listener that requires the header refuses, before reading any TLS byte: a connection whose first bytes are not a
 * v2 header (a client that bypassed the balancer, or a v1 text header), a malformed or oversized header, and a
 * connection that sends no complete header within the deadline. The header's source address then stands for the
 * connection's `remoteAddress` / `remotePort` (and so for `X-Forwarded-For` and logs). The `LOCAL` command (the
 * balancer's own health checks) keeps the real peer address.
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const FIXED_LENGTH = 16;
/** Addresses take at most 216 bytes (AF_UNIX); TLVs (ALPN, authority, SSL info) rarely more than a few hundred. */
const MAX_HEADER_BYTES = 4096;

export interface ProxiedAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

export type ProxyHeader =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /** `length`: bytes the header took; `source`: the client's address (absent for LOCAL and non-IP families). */
  | { kind: 'complete'; length: number; source?: ProxiedAddress };

/** RFC 5952 text (`::1`), as the WHATWG URL serializer writes IPv6 hosts. */
function ipv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

function addresses(family: number, body: Buffer): ProxiedAddress | undefined | 'short' {
  if (family === 0x1) {
    if (body.length < 12) return 'short';
    return { address: `${body[0]}.${body[1]}.${body[2]}.${body[3]}`, port: body.readUInt16BE(8), family: 'IPv4' };
  }
  if (family === 0x2) {
    if (body.length < 36) return 'short';
    return { address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32), family: 'IPv6' };
  }
  return undefined; // AF_UNSPEC or AF_UNIX: no IP address to report
}

/** Parse the start of a connection as a PROXY protocol v2 header. */
export function parseProxyHeaderV2(buf: Buffer): ProxyHeader {
  const head = buf.subarray(0, Math.min(buf.length, SIGNATURE.length));
  if (!head.equals(SIGNATURE.subarray(0, head.length))) {
    return { kind: 'invalid', reason: buf.subarray(0, 6).toString('latin1') === 'PROXY ' ? 'proxy_v1_not_accepted' : 'no_proxy_header' };
  }
  if (buf.length < FIXED_LENGTH) return { kind: 'incomplete' };
  const versionCommand = buf[12] as number;
  if (versionCommand >> 4 !== 0x2) return { kind: 'invalid', reason: 'unsupported_version' };
  const command = versionCommand & 0x0f;
  if (command > 0x1) return { kind: 'invalid', reason: 'unsupported_command' };
  const length = FIXED_LENGTH + buf.readUInt16BE(14);
  if (length > MAX_HEADER_BYTES) return { kind: 'invalid', reason: 'header_too_large' };
  if (buf.length < length) return { kind: 'incomplete' };
  if (command === 0x0) return { kind: 'complete', length }; // LOCAL
  const transport = (buf[13] as number) & 0x0f;
  if (transport !== 0x1 && transport !== 0x0) return { kind: 'invalid', reason: 'not_a_stream' };
  const source = addresses((buf[13] as number) >> 4, buf.subarray(FIXED_LENGTH, length));
  if (source === 'short') return { kind: 'invalid', reason: 'malformed_addresses' };
  return source === undefined ? { kind: 'complete', length } : { kind: 'complete', length, source };
}

export interface ProxyProtocolOptions {
  /** Longest wait for a complete header after the connection opened, ms (default 5000). */
  headerTimeoutMs?: number;
  /** Called once per refused connection, with the reason (for metrics and logs; never with connection data). */
  onRefused?: (reason: string) => void;
}

const sources = new WeakMap<Socket, ProxiedAddress>();

/**
 * A TCP listener that reads the PROXY v2 header of each connection, then hands the connection to `server` (a
 * `tls`, `https` or `http2` secure server, which is not listening itself). Listen on the returned server; close both.
 */
export function proxyProtocolListener(server: TlsServer, options: ProxyProtocolOptions = {}): NetServer {
  const timeoutMs = options.headerTimeoutMs ?? 5000;
  // Before the server's own listeners (an http2 server makes its session in one), so they all see the client's address.
  server.prependListener('secureConnection', (tls: TLSSocket) => {
    // Node's TLS server keeps the TCP socket it wrapped as `_parent`; this is the only place tether reads it.
    const source = sources.get((tls as unknown as { _parent?: Socket })._parent as Socket);
    if (source === undefined) return;
    Object.defineProperties(tls, {
      remoteAddress: { value: source.address },
      remotePort: { value: source.port },
      remoteFamily: { value: source.family },
    });
  });
  return createNetServer({ allowHalfOpen: false }, (socket) => readHeader(socket, server, timeoutMs, options.onRefused));
}

function readHeader(socket: Socket, server: TlsServer, timeoutMs: number, onRefused: ((reason: string) => void) | undefined): void {
  let received: Buffer = Buffer.alloc(0);
  const refuse = (reason: string) => {
    cleanup();
    onRefused?.(reason);
    socket.destroy();
  };
  const timer = setTimeout(() => refuse('header_timeout'), timeoutMs);
  const onData = (chunk: Buffer) => {
    received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
    const header = parseProxyHeaderV2(received);
    if (header.kind === 'incomplete') return;
    if (header.kind === 'invalid') return refuse(header.reason);
    cleanup();
    socket.pause();
    if (header.source !== undefined) sources.set(socket, header.source);
    if (received.length > header.length) socket.unshift(received.subarray(header.length));
    server.emit('connection', socket);
  };
  const cleanup = () => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
  };
  const onError = () => cleanup();
  socket.on('data', onData);
  socket.once('error', onError);
  socket.once('close', cleanup);
}
