export { PROOF_HEADER, PROOF_TYP, MAX_PROOF_LENGTH } from './constants.js';
export { algorithmsForKey, signingAlgorithmForKey, MIN_RSA_BITS, type ProofAlgorithm } from './algorithms.js';
export { createSessionBindingProof, assertKeyMatchesCertificate, type CreateProofOptions } from './sign.js';
export {
  verifySessionBindingProof,
  type VerifyProofOptions,
  type SessionBindingProofClaims,
  type VerifiedSessionBindingProof,
} from './verify.js';
export { verifyJwsSignature } from './jws-signature.js';
export { signCompactJws, isJwsSigner, type JwsSigner } from './signer.js';
export { isCanonicalCompactJws } from '../encoding.js';
export { decodeCompactJws, jwsTyp, hasTyp, hasPayloadExtension, carriesKey, type DecodedCompactJws, type CompactJwsDefect } from '../compact-jws.js';
