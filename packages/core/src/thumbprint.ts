import { X509Certificate } from 'node:crypto';
import { B64TOKEN, sha256Base64url } from './encoding.js';

/** Anything that identifies a leaf certificate: a parsed certificate or its DER bytes. */
export type CertificateInput = X509Certificate | Uint8Array;

function der(certificate: CertificateInput): Uint8Array {
  return certificate instanceof X509Certificate ? certificate.raw : certificate;
}

/** RFC 8705 `x5t#S256`: base64url SHA-256 of the leaf certificate's DER encoding. */
export function certificateThumbprint(certificate: CertificateInput): string {
  return sha256Base64url(der(certificate));
}

/**
 * `ath`: base64url SHA-256 of the ASCII access token (draft section 2.3.2.1, as RFC 9449).
 * Throws `TypeError` for a value that is not an RFC 6750 b64token.
 */
export function accessTokenHash(accessToken: string): string {
  if (!B64TOKEN.test(accessToken)) throw new TypeError('access token is not an RFC 6750 b64token');
  return sha256Base64url(accessToken);
}
