/**
 * @tether/sidecar: egress and ingress sidecars for TLS-session-bound access tokens
 * (draft-mw-oauth-tls-session-bound-tokens, Appendix B). See README.md for deployment and the
 * trust boundary.
 */
export {
  startEgress,
  resolveEgressOptions,
  EGRESS_DEFAULTS,
  EGRESS_ERRORS,
  type EgressConfig,
  type EgressErrorCode,
  type EgressOptions,
  type EgressRoute,
  type EgressSidecar,
  type EgressState,
  type EgressStats,
} from './egress/index.js';
export {
  startIngress,
  resolveIngressOptions,
  encodePrincipal,
  decodePrincipal,
  PRINCIPAL_HEADER,
  METADATA_PATH,
  INGRESS_ERRORS,
  INGRESS_DEFAULTS,
  type ForwardedPrincipal,
  type IngressConfig,
  type IngressErrorCode,
  type IngressOptions,
  type IngressSidecar,
  type IngressState,
  type IngressStats,
} from './ingress/index.js';
export { runEgressCommand, runIngressCommand, egressHelp, ingressHelp, type CommandIO } from './commands.js';
export { SidecarConfigError, parseEndpoint, type Endpoint, type LogLevel } from './config.js';
export { IDENTITY_HEADERS, IDENTITY_PREFIXES } from './headers.js';
export type { LogOptions } from './log.js';
export type { MetricsServer } from './servers.js';
export { DISCOVERY_PATH } from './egress/index.js';
export { EgressDirectory, type EgressDirectoryOptions, type UpstreamFetch } from './egress/directory.js';
export { SidecarError, type ErrorDefinition, type ErrorTable } from './shared/errors.js';
export { TokenSource, TokenFetchError, type TokenCredentials, type TokenEndpointConfig } from './token-source.js';
export {
  ReloadableCredentials,
  CredentialsError,
  onSighup,
  tlsContextFor,
  type CredentialsSnapshot,
  type CredentialsLog,
  type FileCredentialsOptions,
  type PemCredentials,
  type ReloadResult,
} from './credentials/index.js';
export type { CertificateInUse } from './credentials/source.js';
