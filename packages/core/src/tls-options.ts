import { constants } from 'node:crypto';
import type { SecureContextOptions, TlsOptions } from 'node:tls';

export interface SessionBoundTlsOptions extends Pick<SecureContextOptions, 'cert' | 'key' | 'ca' | 'passphrase'> {
  /** Accept TLS 1.2 as well as TLS 1.3 (default false). Renegotiation stays disabled either way. */
  allowTls12?: boolean;
  /**
   * Reject clients whose certificate does not chain to `ca` during the handshake (default true).
   * Set false only to accept RFC 8705 self-signed client certificates, pinned by `cnf.x5t#S256`.
   */
  rejectUnauthorized?: boolean;
  /**
   * Largest request header section accepted, in bytes (default 16384, Node's HTTP/1.1 default).
   * Sets `maxHeaderSize` (HTTP/1.1: larger requests get 431 before any handler runs) and the
   * HTTP/2 setting `maxHeaderListSize` (larger header lists get `RST_STREAM` with
   * `ENHANCE_YOUR_CALM`, the HTTP/2 equivalent). Node enforces the HTTP/2 setting only once the
   * client has acknowledged the server's SETTINGS; before that (the first requests of a
   * connection, or all of them if the client never acknowledges) it applies no header-list limit,
   * and header sections of 100 KiB and more get through. To hold the limit from the first request,
   * the adapters check it themselves: pass the same `maxHeaderBytes` to `sessionBoundHandler` or
   * the Fastify plugin when you change it (other handlers: `resetOversizedHttp2Request(req,
   * maxHeaderBytes)` from `@tether/core/node`, first thing). An access token and a proof
   * together need about 2 KiB. The HTTP/1.1 fallback of `http2.createSecureServer`
   * (`allowHTTP1`) ignores `maxHeaderSize` and keeps Node's process-wide limit
   * (`--max-http-header-size`, 16 KiB by default).
   */
  maxHeaderBytes?: number;
}

/**
 * What {@link sessionBoundTlsOptions} returns: TLS options plus the header-size limits for
 * `https.createServer` (`maxHeaderSize`) and `http2.createSecureServer` (`settings`, with the
 * HPACK table size {@link SESSION_BOUND_HEADER_TABLE_SIZE}). If you pass
 * your own HTTP/2 `settings`, merge them: `settings: { ...opts.settings, ...yours }`.
 */
export interface SessionBoundServerOptions extends TlsOptions {
  maxHeaderSize: number;
  settings: { maxHeaderListSize: number; maxConcurrentStreams: number; headerTableSize: number };
}

/**
 * HPACK dynamic table size in bytes for session-bound HTTP/2 connections (Node's default: 4096).
 * The server advertises it (`settings.headerTableSize`, from {@link sessionBoundTlsOptions}) and
 * tether's clients compress up to it (`maxDeflateDynamicTableSize`). A Session-Binding Proof,
 * about 350 bytes, is sent on every request of its token; in 4 KiB the proofs of 20 tokens on one
 * connection evict each other, so the server Huffman-decodes and validates each proof again on
 * every request (about 14 000 instructions per request, counted by bench/callgrind-rs.ts). In
 * 16 KiB about 40 tokens' proofs stay indexed and travel as one or two bytes. `authorization` is
 * never indexed (Node sends it as a sensitive header), whatever the size.
 */
export const SESSION_BOUND_HEADER_TABLE_SIZE = 16 * 1024;

/** Default request header-section limit, bytes (Node's HTTP/1.1 default). */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/**
 * Streams one HTTP/2 client may have open at once (nginx: 128). Node's default is unlimited: one
 * connection could hold thousands of never-finishing streams, each with its own request state.
 */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 128;

/** Validate a `maxHeaderBytes` option (an integer of at least 1024); `undefined` gives the default. */
export function resolveMaxHeaderBytes(value: number | undefined): number {
  const maxHeaderBytes = value ?? DEFAULT_MAX_HEADER_BYTES;
  if (!Number.isInteger(maxHeaderBytes) || maxHeaderBytes < 1024) {
    throw new TypeError('maxHeaderBytes must be an integer of at least 1024');
  }
  return maxHeaderBytes;
}

/**
 * TLS server options for a session-binding resource server: client certificates requested,
 * TLS 1.3 only unless `allowTls12`, and renegotiation disabled (a renegotiation could change the
 * client certificate under a cached binding; NOTES decision 1), and a bounded request header
 * section (`maxHeaderBytes`). Spread into `https.createServer`, `http2.createSecureServer` or
 * `tls.createServer`.
 */
export function sessionBoundTlsOptions(options: SessionBoundTlsOptions): SessionBoundServerOptions {
  const maxHeaderBytes = resolveMaxHeaderBytes(options.maxHeaderBytes);
  return {
    ...(options.cert === undefined ? {} : { cert: options.cert }),
    ...(options.key === undefined ? {} : { key: options.key }),
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    ...(options.passphrase === undefined ? {} : { passphrase: options.passphrase }),
    minVersion: options.allowTls12 === true ? 'TLSv1.2' : 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
    maxHeaderSize: maxHeaderBytes,
    settings: { maxHeaderListSize: maxHeaderBytes, maxConcurrentStreams: DEFAULT_MAX_CONCURRENT_STREAMS, headerTableSize: SESSION_BOUND_HEADER_TABLE_SIZE },
  };
}
