import type { TLSSocket } from 'node:tls';
import { TlsExporterError } from './errors.js';

/** TLS exporter label registered by the draft (section 7.4). */
export const EXPORTER_LABEL = 'EXPORTER-oauth-tls-session-bound';
/** Exporter output length in octets (draft section 2.2). */
export const EXPORTER_LENGTH = 32;

// A zero-length context passed explicitly. On TLS 1.3 "no context" and "empty context" derive the
// same value (RFC 8446 section 7.5); on TLS 1.2 they differ (RFC 5705), and the draft says "empty".
const EMPTY_CONTEXT = Buffer.alloc(0);

/** TLS versions for which exporter derivation is defined here. */
export type TlsVersion = 'TLSv1.3' | 'TLSv1.2';

/**
 * Whether the TLS handshake of `socket` has completed, as Node records it: `true`, `false`, or
 * `undefined` when the object does not say (the HTTP/2 session's socket proxy). Node has no public
 * "handshake done" flag; `_secureEstablished` (set just before 'secure'/'secureConnect') is the one
 * it keeps. This is the one place tether reads it.
 */
export function tlsHandshakeDone(socket: object): boolean | undefined {
  const flag = (socket as { _secureEstablished?: unknown })._secureEstablished;
  return typeof flag === 'boolean' ? flag : undefined;
}

/**
 * Derive the Session-Binding exporter value (EKM) of a TLS connection.
 *
 * Fails with {@link TlsExporterError} when:
 * - `socket` is not an encrypted TLS socket;
 * - the handshake has not completed (Node's `_secureEstablished` is false, or OpenSSL refuses);
 * - the negotiated version is not in `allowedVersions` (default: TLS 1.3 only);
 * - OpenSSL refuses the derivation.
 *
 * Works on the raw `TLSSocket` and on the socket proxy that `node:http2` sessions expose.
 */
export function deriveSessionExporter(
  socket: TLSSocket,
  allowedVersions: readonly TlsVersion[] = ['TLSv1.3'],
): Buffer {
  if (socket === null || typeof socket !== 'object' || typeof socket.exportKeyingMaterial !== 'function') {
    throw new TlsExporterError('not a TLS socket');
  }
  if (socket.destroyed) throw new TlsExporterError('the TLS connection is closed');
  // getProtocol() reports a version before the handshake ends. OpenSSL also refuses to export
  // before the handshake, so an object without the flag still fails closed below.
  if (tlsHandshakeDone(socket) === false) {
    throw new TlsExporterError('TLS handshake not complete');
  }
  const protocol = socket.getProtocol();
  if (protocol !== 'TLSv1.3' && protocol !== 'TLSv1.2') {
    throw new TlsExporterError(`TLS handshake not complete (protocol: ${String(protocol)})`);
  }
  if (!allowedVersions.includes(protocol)) {
    throw new TlsExporterError(`${protocol} is not allowed for session binding`);
  }
  try {
    const ekm = socket.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, EMPTY_CONTEXT);
    if (ekm.length !== EXPORTER_LENGTH) throw new Error(`exporter returned ${ekm.length} bytes`);
    return ekm;
  } catch (cause) {
    throw new TlsExporterError('TLS exporter derivation failed', { cause });
  }
}
