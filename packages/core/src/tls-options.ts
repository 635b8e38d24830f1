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
}

/**
 * TLS server options for a session-binding resource server: client certificates requested,
 * TLS 1.3 only unless `allowTls12`, and renegotiation disabled (a renegotiation could change the
 * client certificate under a cached binding; NOTES decision 1). Spread into `https.createServer`,
 * `http2.createSecureServer` or `tls.createServer`.
 */
export function sessionBoundTlsOptions(options: SessionBoundTlsOptions): TlsOptions {
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
  };
}
