/**
 * Reloadable TLS credentials for the sidecars: certificate, key and CA files followed on disk
 * (rename-into-place, Kubernetes `..data` swaps, polling fallback) and on SIGHUP, validated before
 * use, one generation at a time. See README.md, "Certificate rotation".
 */
export {
  ReloadableCredentials,
  type CredentialsEvents,
  type CredentialsLog,
  type CredentialsSnapshot,
  type FileCredentialsOptions,
  type PemCredentials,
  type ReloadResult,
} from './reloadable.js';
export {
  CredentialsError,
  validateCredentials,
  type CredentialsMaterial,
  type CredentialsPaths,
  type CredentialsRefusal,
  type CredentialsRefusalReason,
  type ValidatedCredentials,
  type ValidationOptions,
  type ValidationResult,
} from './validate.js';
export { tlsContextFor, type CredentialsHolder, type TlsContextOptions } from './tls-context.js';
export { onSighup } from './sighup.js';
export { fileSignature } from './watch.js';
