/**
 * Errors of `@tether/pkcs11`, one class with a stable `code` per failure a user can act on. Messages
 * name the URI attribute, file or module concerned; they never contain a PIN (not even a wrong one)
 * nor key material.
 */

export type Pkcs11ErrorCode =
  /** The `pkcs11:` URI does not parse (RFC 7512) or asks for something this package does not do. */
  | 'ERR_PKCS11_URI'
  /** No module configured, or the module cannot be loaded or initialised. */
  | 'ERR_PKCS11_MODULE'
  /** No token (or several) matches the URI's token attributes. */
  | 'ERR_PKCS11_TOKEN_NOT_FOUND'
  /** No PIN given, the PIN file is unreadable, or the token refused the PIN. */
  | 'ERR_PKCS11_PIN'
  /** No private key (or several) matches the URI's object attributes. */
  | 'ERR_PKCS11_KEY_NOT_FOUND'
  /** The token's key is not the key of the certificate. */
  | 'ERR_PKCS11_KEY_MISMATCH'
  /** Key type or algorithm the token or this package cannot sign with. */
  | 'ERR_PKCS11_UNSUPPORTED_KEY'
  /** The OpenSSL pkcs11 engine is missing or cannot use the key for TLS. */
  | 'ERR_PKCS11_ENGINE'
  /** A signature failed (the token answered with an error). */
  | 'ERR_PKCS11_SIGN'
  /** A signature did not finish before its deadline. */
  | 'ERR_PKCS11_TIMEOUT'
  /** The key was closed. */
  | 'ERR_PKCS11_CLOSED';

export class Pkcs11KeyError extends Error {
  readonly code: Pkcs11ErrorCode;
  constructor(code: Pkcs11ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Pkcs11KeyError';
    this.code = code;
  }
}

/** The `CKR_*` name of a pkcs11js error (e.g. `CKR_PIN_INCORRECT`), or undefined. */
export function ckr(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : '';
  return /^CKR_[A-Z0-9_]+/.exec(message)?.[0];
}
