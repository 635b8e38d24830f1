import type { BindingRequirement } from '../cnf.js';
import type { AccessTokenClaims } from './access-token.js';
import type { ResolvedVerifierOptions } from './options.js';
import type { RequestInput } from './request.js';
import type { VerifierStats } from './stats.js';
import type { BindingCache } from './binding-cache.js';

/** State threaded through the verification steps of one request. */
export interface VerificationContext {
  readonly input: RequestInput;
  readonly options: ResolvedVerifierOptions;
  readonly cache: BindingCache;
  readonly stats: VerifierStats;
  /** Epoch seconds at the start of verification. */
  readonly now: number;
  /** The access token (set by the credential parsing step). */
  token: string;
  /** The single Session-Binding-Proof value, if any. */
  proof: string | undefined;
  /** Authorization scheme of the request (lower-case): `bearer`, or `dpop` (RFC 9449 section 7.1). */
  scheme: 'bearer' | 'dpop';
  /** The single `DPoP` proof value, for the DPoP scheme. */
  dpopProof: string | undefined;
  claims: AccessTokenClaims;
  binding: BindingRequirement;
  /** `ath` of `token`, computed once. */
  ath: string;
  /** Proof-level claims needing per-request checks (step i). */
  perRequest: PerRequestClaims | undefined;
}

/** Optional per-request claims of a proof (draft section 2.3.2.2). */
export interface PerRequestClaims {
  jti?: string;
  /** The proof's `iat`, present with `jti`: how long the `jti` must be remembered follows from it. */
  iat?: number;
  htm?: string;
  htu?: string;
}
