import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { certificateThumbprint } from '../thumbprint.js';

/** A client certificate parsed once, with its `x5t#S256`. */
export interface PeerCertificate {
  readonly certificate: X509Certificate;
  readonly thumbprint: string;
}

/** Distinct client certificates kept parsed (a few KiB each). */
const MAX_ENTRIES = 256;
const parsed = new Map<string, PeerCertificate>();

/**
 * The peer's leaf certificate, from the DER of `getPeerCertificate(false)`. Not
 * `getPeerX509Certificate()`: when the client sends more than its leaf (a Node client given `ca`
 * sends the CA too), Node's X509Certificate::GetPeerCert copies the chain and lifts the originals
 * out of the TLS session's own peer chain (`sk_X509_delete`) without releasing them, so the
 * session's free never does: ~4.5 KiB of parsed certificates leaked per connection on Node 20
 * (bench/results/soak-first-hour.md, root cause; bench/churn-memory.ts). The abbreviated
 * `getPeerCertificate` reads the leaf only and leaves the chain alone.
 *
 * Parsing the DER again costs ~0.2 ms on Node 20 (OpenSSL 3 decoders), ~30 µs for
 * `getPeerCertificate` itself; a client reconnects with the same certificate, so parsed ones are
 * kept by DER (least recently used go first beyond MAX_ENTRIES). The same DER is the same
 * certificate, and whether the chain was verified stays per connection (`socket.authorized`).
 */
export function peerCertificate(socket: TLSSocket): PeerCertificate | undefined {
  // `{}` when the peer sent no certificate, null once the socket is destroyed.
  const raw = (socket.getPeerCertificate(false) as { raw?: Buffer } | null)?.raw;
  if (raw === undefined) return undefined;
  const key = raw.toString('base64');
  let entry = parsed.get(key);
  if (entry === undefined) {
    const certificate = new X509Certificate(raw);
    entry = { certificate, thumbprint: certificateThumbprint(certificate) };
    if (parsed.size >= MAX_ENTRIES) parsed.delete(parsed.keys().next().value as string);
  } else {
    parsed.delete(key);
  }
  parsed.set(key, entry);
  return entry;
}
