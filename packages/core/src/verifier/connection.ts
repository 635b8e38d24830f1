import { X509Certificate, type KeyObject } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { deriveSessionExporter, type TlsVersion } from '../exporter.js';
import { certificateThumbprint } from '../thumbprint.js';

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

/**
 * The peer's leaf certificate, parsed from the DER of `getPeerCertificate(false)`. Not
 * `getPeerX509Certificate()`: when the client sends more than its leaf (a Node client given `ca`
 * sends the CA too), Node's X509Certificate::GetPeerCert copies the chain and lifts the originals
 * out of the TLS session's own peer chain (`sk_X509_delete`) without releasing them, so the
 * session's free never does: ~4.5 KiB of parsed certificates leaked per connection on Node 20
 * (bench/results/soak.md, diagnosis; bench/churn-memory.ts). The abbreviated
 * `getPeerCertificate` reads the leaf only and leaves the chain alone.
 */
function peerCertificate(socket: TLSSocket): X509Certificate | undefined {
  // `{}` when the peer sent no certificate, null once the socket is destroyed.
  const raw = (socket.getPeerCertificate(false) as { raw?: Buffer } | null)?.raw;
  return raw === undefined ? undefined : new X509Certificate(raw);
}

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
    this.certificate = tls ? peerCertificate(socket) : undefined;
    this.thumbprint = this.certificate === undefined ? undefined : certificateThumbprint(this.certificate);
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
