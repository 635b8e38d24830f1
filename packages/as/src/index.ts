/**
 * @tether/as: an OAuth 2.0 authorization server for TLS-session-bound access tokens
 * (draft-mw-oauth-tls-session-bound-tokens): mTLS client authentication (RFC 8705) and
 * private_key_jwt (RFC 7523), client_credentials and token exchange (RFC 8693) with actor chains,
 * RFC 9068 JWT access tokens bound to the requester's certificate (and TLS session), deferred key
 * binding (`tmb`), introspection (RFC 7662), revocation (RFC 7009), metadata (RFC 8414), JWKS with
 * scheduled key rotation, storage on SQLite or PostgreSQL (several instances on one database),
 * Prometheus metrics.
 */
export { startAuthorizationServer, type AuthorizationServer, type StartOptions } from './server.js';
export { runAuthorizationServerCommand, asCommandHelp, type AsCommandContext } from './cli.js';
export {
  resolveConfig,
  loadConfigFile,
  resolveRegisteredClient,
  configSchema,
  GRANT_CLIENT_CREDENTIALS,
  GRANT_TOKEN_EXCHANGE,
  AUTH_METHODS,
  BINDING_LEVELS,
  SIGNING_ALGORITHMS,
  type AuthorizationServerConfig,
  type ResolvedConfig,
  type ResolvedClient,
  type ResolvedTrustedIssuer,
  type ClientMetadata,
  type AuthMethod,
  type BindingLevel,
  type SigningAlgorithm,
} from './config.js';
export { devConfig, type DevConfigOptions } from './dev.js';
export {
  StoreError,
  SqlStore,
  SqliteDriver,
  PostgresDriver,
  KeyEncryptionKey,
  openStore,
  migrate,
  SCHEMA_VERSION,
  type Store,
  type StoredKey,
  type KeySetChange,
  type SqlDriver,
  type SqlSession,
  type StoreLocation,
} from './store/index.js';
export { OAuthError, ConfigError, type OAuthErrorCode } from './errors.js';
export { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, PATHS, type TokenResponse, type OwnTokenClaims, type ActClaim } from './engine.js';
export { JWT_BEARER_ASSERTION } from './client-auth.js';
export { decideExchange, decideExternalExchange, type ExchangeRequester, type ExternalExchangeRequester, type SubjectBinding, type T6Decision } from './t6.js';
export { parseRfc4514, parseNodeSubject, dnEquals, subjectMatches, normalizeValue, DnSyntaxError, type NormalizedDn } from './dn.js';
export { parseSubjectAltName, sanDnsMatches, sanUriMatches, sanIpMatches, sanEmailMatches } from './san.js';
export { TokenClient, type TokenClientOptions, type TokenRequestResult } from './token-client.js';
