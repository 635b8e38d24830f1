import type { TlsVersion } from '../exporter.js';
import type { DpopAlgorithm } from '../dpop/algorithms.js';
import type { DpopKeyCache } from '../dpop/key-cache.js';
import type { DpopNonceSource } from '../dpop/verify.js';
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
  /** DPoP (RFC 9449) resource-server support. See {@link DpopVerifierOptions}. */
  dpop?: DpopVerifierOptions;
}

/**
 * `Authorization: DPoP <token>` with a `DPoP` proof, for tokens whose `cnf` has `jkt`. Requests
 * with the Bearer scheme are untouched by these options (a `jkt` token sent as Bearer is always
 * `invalid_token`, RFC 9449 section 7.2).
 *
 * Strength: a DPoP-bound token counts as `certificate`-strength for `minimumBinding` (the presenter
 * proves possession of a key named in the token, as with RFC 8705) and never as `session`
 * strength (its proofs are not tied to the TLS connection and can be pre-generated, RFC 9449
 * section 11.2). So with the default `minimumBinding: 'session'` DPoP tokens are refused with
 * `invalid_token` unless `meetsSessionMinimum` is set.
 */
export interface DpopVerifierOptions {
  /** Recognise the DPoP scheme (default true). When false, `Authorization: DPoP` gets a bare Bearer challenge, as before. */
  enabled?: boolean;
  /** Require a server-provided nonce in every proof (RFC 9449 section 9). Default: no nonce. */
  nonce?: DpopNonceSource | undefined;
  /** Oldest acceptable proof `iat`, seconds before now (default 60). */
  maxAge?: number;
  /** Clock skew tolerated for `iat`, seconds (default: the verifier's `clockSkew`). */
  clockSkew?: number;
  /** Proof algorithms accepted and advertised in `algs` (default: ES256 ES384 EdDSA Ed25519 PS256 RS256). */
  algorithms?: readonly DpopAlgorithm[];
  /** Accept DPoP-bound tokens even when `minimumBinding` is `session` (default false). */
  meetsSessionMinimum?: boolean;
  /**
   * Distinct DPoP keys kept imported (default 1024): a client's key is imported and thumbprinted
   * once, not on every proof. Least recently used keys go first; 0 imports every proof's key afresh.
   */
  keyCacheSize?: number;
}

export interface ResolvedDpopOptions {
  enabled: boolean;
  nonce: DpopNonceSource | undefined;
  maxAge: number;
  clockSkew: number;
  algorithms: readonly DpopAlgorithm[];
  meetsSessionMinimum: boolean;
  keyCache: DpopKeyCache;
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
  dpop: ResolvedDpopOptions;
}
