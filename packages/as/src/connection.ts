/**
 * What the authorization server knows about the TLS connection a request arrived on: core's
 * connection context (certificate, thumbprint, whether OpenSSL verified the chain, protocol, the
 * exporter; the same object the resource-server verifier uses), plus which trust anchor the chain
 * ends at, for tls_client_auth. Read once per connection (renegotiation is disabled, so the
 * certificate cannot change).
 */
import { X509Certificate } from 'node:crypto';
import type { TLSSocket, DetailedPeerCertificate } from 'node:tls';
import type { TlsVersion } from '@tether/core';
import { tlsConnectionContext, type ConnectionContext } from '@tether/core/verifier';

export interface Peer extends ConnectionContext {
  /** DER of the chain's top certificate, as Node reports it (the trust anchor when `authorized`). */
  readonly anchor: Buffer | undefined;
}

const cache = new WeakMap<ConnectionContext, Peer>();

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
 * Describe the connection of a request. `lifetime` identifies the connection: the TLS socket for
 * HTTP/1.1, the HTTP/2 session for HTTP/2.
 */
export function peerOf(socket: TLSSocket, lifetime: Parameters<typeof tlsConnectionContext>[1], tlsVersions: readonly TlsVersion[]): Peer {
  const context = tlsConnectionContext(socket, lifetime, tlsVersions);
  let peer = cache.get(context);
  if (peer === undefined) {
    const { id, protocol, authorized, certificate, thumbprint } = context;
    peer = {
      id,
      protocol,
      authorized,
      certificate,
      thumbprint,
      anchor: certificate !== undefined && authorized ? chainTop(socket) : undefined,
      get publicKey() {
        return context.publicKey;
      },
      get closed() {
        return context.closed;
      },
      exporter: () => context.exporter(),
      onClose: (listener) => context.onClose(listener),
    };
    cache.set(context, peer);
  }
  return peer;
}

/** True when the certificate is inside its validity period at `nowSeconds`. */
export function certificateCurrent(certificate: X509Certificate, nowSeconds: number): boolean {
  const from = Date.parse(certificate.validFrom) / 1000;
  const to = Date.parse(certificate.validTo) / 1000;
  return Number.isFinite(from) && Number.isFinite(to) && nowSeconds >= from && nowSeconds <= to;
}

export { X509Certificate };
