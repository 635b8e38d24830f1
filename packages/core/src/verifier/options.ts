import type { TlsVersion } from '../exporter.js';
import type { ProofAlgorithm } from '../proof/algorithms.js';
import type { AccessTokenValidator } from './access-token.js';
import type { ReplayStore } from './replay-store.js';

/** Options of {@link createSessionBoundVerifier}. Every field is documented; defaults fail closed. */
export interface SessionBoundVerifierOptions {
  /** How access tokens are validated: `jwtAccessTokenValidator(...)` or `introspectionValidator(...)`. */
  tokens: AccessTokenValidator;
  /**
   * Weakest binding accepted. `session` (default): only tokens with `cnf.tls_exp`. `certificate`:
   * RFC 8705 certificate-bound tokens too. `none`: bearer tokens too (for migration and baselines).
   * Whatever this says, a token that carries a binding is always held to it.
   */
  minimumBinding?: 'session' | 'certificate' | 'none';
  /** TLS versions accepted for session binding (default `['TLSv1.3']`). */
  tlsVersions?: readonly TlsVersion[];
  /** Oldest acceptable proof `iat` at first verification, seconds (default 300). */
  proofMaxAge?: number;
  /** Clock skew tolerated for `iat`, seconds (default 30). */
  clockSkew?: number;
  /** Longest a verified binding is reused from the cache, counted from the proof's `iat`, seconds (default 3600). */
  maxBindingAge?: number;
  /** Proof algorithms accepted (default: all that match the certificate key). */
  proofAlgorithms?: readonly ProofAlgorithm[];
  /** Replay store for `jti` (default: an in-memory store). */
  replayStore?: ReplayStore;
  /** Scopes every request must carry; otherwise 403 `insufficient_scope`. */
  requiredScopes?: readonly string[];
  /** Binding cache bounds. */
  cache?: { maxEntriesPerConnection?: number; maxEntries?: number };
  /**
   * Require the client certificate to chain to the server's configured CAs (`socket.authorized`)
   * before a bound token is accepted (default true). Set false only for RFC 8705
   * self-signed client certificates, where the thumbprint in `cnf` is the trust anchor.
   */
  requireTrustedCertificate?: boolean;
  /** Clock in epoch seconds (default: the system clock). */
  now?: () => number;
}

export interface ResolvedVerifierOptions {
  tokens: AccessTokenValidator;
  minimumBinding: 'session' | 'certificate' | 'none';
  tlsVersions: readonly TlsVersion[];
  proofMaxAge: number;
  clockSkew: number;
  maxBindingAge: number;
  proofAlgorithms: readonly ProofAlgorithm[] | undefined;
  replayStore: ReplayStore;
  requiredScopes: readonly string[];
  requireTrustedCertificate: boolean;
  now: () => number;
}
