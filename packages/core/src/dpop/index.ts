/**
 * `@tether/core/dpop`: DPoP (RFC 9449) proofs, JWK thumbprints for `cnf.jkt`, `htu`
 * normalization, and a DPoP client. The resource-server side is part of the core verifier
 * (`createSessionBoundVerifier({ ..., dpop })`).
 */
export { DPOP_TYP, DPOP_HEADER, DPOP_NONCE_HEADER, MAX_DPOP_PROOF_LENGTH } from './constants.js';
export { DPOP_ALGORITHMS, dpopAlgorithmsForKey, type DpopAlgorithm } from './algorithms.js';
export { importDpopJwk, publicJwkOf, jwkThumbprint, type DpopPublicJwk, type JwkImportResult } from './jwk.js';
export { DpopKeyCache, DEFAULT_DPOP_KEY_CACHE_SIZE, type ImportedDpopKey } from './key-cache.js';
export { normalizeHtu, requestHtu, dpopHtuMatches } from './htu.js';
export { createDpopProof, type CreateDpopProofOptions } from './sign.js';
export {
  verifyDpopProof,
  dpopReplayKey,
  type VerifyDpopProofOptions,
  type VerifiedDpopProof,
  type DpopProofClaims,
  type DpopNonceSource,
} from './verify.js';
export { asDpopRefusal } from './challenge.js';
export { InvalidDpopProofError, UseDpopNonceError, type DpopErrorOptions } from '../errors.js';
export { DpopClient, type DpopClientOptions, type DpopRequest, type DpopResponse, type DpopClientStats } from './client.js';
