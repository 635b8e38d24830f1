/**
 * What every connection of the matrix load generator shares: the client's credentials, the target,
 * the per-connection state the credential modes read (bench/load/signer.ts), and the TLS options of
 * both transports (bench/load/h2.ts, bench/load/h1.ts).
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { DpopPublicJwk } from '@tether/core/dpop';

export interface LoadCredentials {
  /** Client certificate and key (PEM) for mTLS, and the same as objects for signing. */
  certPem: string;
  keyPem: string;
  caPem: string;
  privateKey: KeyObject;
  certificate: X509Certificate;
  dpopKey: KeyObject;
  dpopJwk: DpopPublicJwk;
}

export interface Target {
  host: string;
  port: number;
  path: string;
}

/** Per-connection state: exporter and the (token -> proof) cache of the `session` mode. */
export interface ConnState {
  socket: TLSSocket;
  ekm: Buffer | undefined;
  proofs: Map<string, Promise<string>>;
}

export function tlsOptions(creds: LoadCredentials, target: Target, alpn: string, session: Buffer | undefined) {
  return {
    host: target.host,
    port: target.port,
    ca: creds.caPem,
    cert: creds.certPem,
    key: creds.keyPem,
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ALPNProtocols: [alpn],
    // Requests are written in one go; without this, Nagle + delayed ACK can stall a request whose
    // headers span two segments (large proofs) by ~40 ms on loopback.
    noDelay: true,
    ...(session === undefined ? {} : { session }),
  };
}
