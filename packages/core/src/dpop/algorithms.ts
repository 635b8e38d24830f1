import type { KeyObject } from 'node:crypto';
import { algorithmsForKey, type ProofAlgorithm } from '../proof/algorithms.js';

/**
 * JWS algorithms a DPoP proof may use: asymmetric only (RFC 9449 sections 4.2 and 11.6), the same
 * set and key sizes as Session-Binding Proofs (P-256, P-384, Ed25519, RSA >= 2048 bits).
 */
export type DpopAlgorithm = ProofAlgorithm;

/** Every DPoP algorithm accepted by default, in the order advertised in `algs`. */
export const DPOP_ALGORITHMS: readonly DpopAlgorithm[] = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'];

/** The DPoP algorithms consistent with `key` (public or private); `[]` for keys that cannot sign proofs. */
export function dpopAlgorithmsForKey(key: KeyObject): DpopAlgorithm[] {
  return algorithmsForKey(key);
}
