/**
 * What the authorization server knows about the TLS connection a request arrived on: the client
 * certificate, whether OpenSSL verified its chain, which trust anchor it chains to, and the
 * exporter. Read once per connection (renegotiation is disabled, so the certificate cannot change).
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket, DetailedPeerCertificate } from 'node:tls';
import { certificateThumbprint, deriveSessionExporter, type TlsVersion } from '@tether/core';

export interface Peer {
  /** The TLS socket (or the HTTP/2 session's socket proxy). */
  socket: TLSSocket;
  certificate: X509Certificate | undefined;
  thumbprint: string | undefined;
  /** OpenSSL verified the chain against the listener's CA bundle. */
  authorized: boolean;
  /** DER of the chain's top certificate, as Node reports it (the trust anchor when `authorized`). */
  anchor: Buffer | undefined;
  protocol: string | null;
  /** The connection's exporter (draft section 2.2). Throws `TlsExporterError`. */
  exporter(): Buffer;
}

const cache = new WeakMap<object, Peer>();

function chainTop(socket: TLSSocket): Buffer | undefined {
  let cert: DetailedPeerCertificate | undefined;
  try {
    cert = socket.getPeerCertificate(true);
  } catch {
    return undefined;
  }
  if (cert === undefined || cert === null || cert.raw === undefined) return undefined;
  // Node links each certificate to its issuer; the top one links to itself.
  let current: DetailedPeerCertificate = cert;
  for (let i = 0; i < 16; i++) {
    const issuer: DetailedPeerCertificate | undefined = current.issuerCertificate;
    if (issuer === undefined || issuer === null || issuer === current || issuer.raw === undefined || issuer.raw.equals(current.raw)) return current.raw;
    current = issuer;
  }
  return undefined;
}

/**
 * Describe the connection of a request. `key` identifies the connection for caching: the TLS socket
 * for HTTP/1.1, the HTTP/2 session for HTTP/2.
 */
export function peerOf(socket: TLSSocket, key: object, tlsVersions: readonly TlsVersion[]): Peer {
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const tls = typeof socket.getPeerX509Certificate === 'function';
  let certificate: X509Certificate | undefined;
  try {
    certificate = tls ? (socket.getPeerX509Certificate() ?? undefined) : undefined;
  } catch {
    certificate = undefined;
  }
  const authorized = tls && socket.authorized === true;
  let ekm: Buffer | undefined;
  const peer: Peer = {
    socket,
    certificate,
    thumbprint: certificate === undefined ? undefined : certificateThumbprint(certificate),
    authorized,
    anchor: certificate !== undefined && authorized ? chainTop(socket) : undefined,
    protocol: tls ? socket.getProtocol() : null,
    exporter() {
      ekm ??= deriveSessionExporter(socket, tlsVersions);
      return ekm;
    },
  };
  cache.set(key, peer);
  return peer;
}

/** True when the certificate is inside its validity period at `nowSeconds`. */
export function certificateCurrent(certificate: X509Certificate, nowSeconds: number): boolean {
  const from = Date.parse(certificate.validFrom) / 1000;
  const to = Date.parse(certificate.validTo) / 1000;
  return Number.isFinite(from) && Number.isFinite(to) && nowSeconds >= from && nowSeconds <= to;
}

export { X509Certificate };
