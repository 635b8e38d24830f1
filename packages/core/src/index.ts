/**
 * @tether/core: TLS-Session-Bound Access Tokens for OAuth 2.0
 * (draft-mw-oauth-tls-session-bound-tokens). Subpath exports: `/proof`, `/errors`, `/verifier`,
 * `/client`, `/dpop` (RFC 9449), `/node`, `/express`, `/fastify`.
 */
export * from './errors.js';
export * from './proof/index.js';
export { EXPORTER_LABEL, EXPORTER_LENGTH, deriveSessionExporter, tlsHandshakeDone, type TlsVersion } from './exporter.js';
export { certificateThumbprint, accessTokenHash, type CertificateInput } from './thumbprint.js';
export { sessionBoundConfirmation, certificateBoundConfirmation, bindingRequirement, isThumbprint, type Confirmation, type BindingRequirement } from './cnf.js';
export {
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  GRANT_TYPE_TOKEN_EXCHANGE,
  SCOPE_TOKEN,
  SCOPE_LIST,
  BINDING_RANK,
  strongestBinding,
  type BindingStrength,
} from './oauth-syntax.js';
export { parseWwwAuthenticate, parseAuthorization, type Challenge, type Credentials } from './challenge.js';
export { SESSION_BOUND_HEADER_TABLE_SIZE, sessionBoundTlsOptions, type SessionBoundTlsOptions, type SessionBoundServerOptions } from './tls-options.js';
export * from './verifier/index.js';
export * from './client/index.js';
