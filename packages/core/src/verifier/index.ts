export { createSessionBoundVerifier, type SessionBoundVerifier } from './create-verifier.js';
export type { SessionBoundVerifierOptions, ResolvedVerifierOptions } from './options.js';
export type { RequestInput } from './request.js';
export type { VerifiedPrincipal } from './principal.js';
export type { VerifierStats } from './stats.js';
export type { AccessTokenClaims, AccessTokenValidator, ActorClaim } from './access-token.js';
export { jwtAccessTokenValidator, DEFAULT_ACCESS_TOKEN_ALGORITHMS, type JwtAccessTokenValidatorOptions } from './jwt-access-token.js';
export {
  introspectionValidator,
  type IntrospectionValidatorOptions,
  type IntrospectionClientAuth,
  type IntrospectionAuthMethod,
  type IntrospectionFailure,
  type IntrospectionFailureReason,
} from './introspection.js';
export { localJwks, jwksFromFile, remoteJwks, type RemoteJwksOptions, type RemoteJwksResolver, type RemoteJwksStats } from './jwks.js';
export { BindingCache, type BindingEntry, type BindingCacheOptions } from './binding-cache.js';
export { MemoryReplayStore, type ReplayStore, type MemoryReplayStoreOptions } from './replay-store.js';
export { tlsConnectionContext, type ConnectionContext } from './connection.js';
export { VERIFICATION_STEPS, type VerificationStep } from './steps.js';
export { htuMatches, verifyPerRequestClaims, type ProofRequest, type ProofWindow } from './checks/per-request-claims.js';
export type { PerRequestClaims } from './context.js';
