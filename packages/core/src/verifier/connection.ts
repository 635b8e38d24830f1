import type { KeyObject, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { deriveSessionExporter, type TlsVersion } from '../exporter.js';
import { peerCertificate } from './peer-certificate.js';

/**
 * What the verifier needs to know about the TLS connection a request arrived on. Adapters build it
 * from a `TLSSocket`; tests and other stacks can implement it directly.
 */
export interface ConnectionContext {
  /** Process-unique connection number; the binding cache is keyed on it. */
  readonly id: number;
  /** Negotiated TLS version (`TLSv1.3`, `TLSv1.2`), or null when unknown. */
  readonly protocol: string | null;
  /** True when the TLS stack verified the client certificate chain against the configured CAs. */
  readonly authorized: boolean;
  /** The client's leaf certificate, if one was presented. */
  readonly certificate: X509Certificate | undefined;
  /** `x5t#S256` of `certificate`. */
  readonly thumbprint: string | undefined;
  /**
   * The public key of `certificate`, derived once per connection (optional for other
   * implementations: the verifier then derives it from `certificate` on each first verification).
   */
  readonly publicKey?: KeyObject | undefined;
  /** The connection's exporter value; derived once and cached. Throws `TlsExporterError`. */
  exporter(): Buffer;
  /** Run `listener` once when the connection closes (immediately if it already has). */
  onClose(listener: () => void): void;
  readonly closed: boolean;
}

let nextConnectionId = 1;

interface Lifetime {
  once(event: 'close', listener: () => void): unknown;
  readonly destroyed: boolean;
}

class TlsConnectionContext implements ConnectionContext {
  readonly id = nextConnectionId++;
  readonly protocol: string | null;
  readonly authorized: boolean;
  readonly certificate: X509Certificate | undefined;
  readonly thumbprint: string | undefined;
  #ekm: Buffer | undefined;
  #publicKey: KeyObject | undefined;
  #closed = false;
  #listeners: Array<() => void> = [];

  constructor(
    private readonly socket: TLSSocket,
    lifetime: Lifetime,
    private readonly allowedVersions: readonly TlsVersion[],
  ) {
    // A plaintext socket has no TLS methods: it gets protocol null and no certificate, and step a refuses it.
    const tls = typeof socket.getProtocol === 'function';
    this.protocol = tls ? socket.getProtocol() : null;
    this.authorized = tls && socket.authorized === true;
    // Read once: with renegotiation disabled the peer certificate cannot change on this connection.
    // Not getPeerX509Certificate(): it leaks the client's chain (see peerCertificate).
    const peer = tls ? peerCertificate(socket) : undefined;
    this.certificate = peer?.certificate;
    this.thumbprint = peer?.thumbprint;
    if (lifetime.destroyed) this.#closed = true;
    else lifetime.once('close', () => this.#close());
  }

  get publicKey(): KeyObject | undefined {
    this.#publicKey ??= this.certificate?.publicKey;
    return this.#publicKey;
  }

  get closed(): boolean {
    return this.#closed;
  }

  exporter(): Buffer {
    this.#ekm ??= deriveSessionExporter(this.socket, this.allowedVersions);
    return this.#ekm;
  }

  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#listeners.push(listener);
  }

  #close(): void {
    this.#closed = true;
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const l of listeners) l();
  }
}

const contexts = new WeakMap<object, ConnectionContext>();

/**
 * The connection context of a TLS connection, created on first use and memoized on `lifetime`
 * (the `TLSSocket` for HTTP/1.1, the `Http2Session` for HTTP/2, whose `close` ends the connection).
 */
export function tlsConnectionContext(
  socket: TLSSocket,
  lifetime: Lifetime & object = socket,
  allowedVersions: readonly TlsVersion[] = ['TLSv1.3'],
): ConnectionContext {
  let ctx = contexts.get(lifetime);
  if (ctx === undefined) {
    ctx = new TlsConnectionContext(socket, lifetime, allowedVersions);
    contexts.set(lifetime, ctx);
  }
  return ctx;
}
