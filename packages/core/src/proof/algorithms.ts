import type { KeyObject } from 'node:crypto';
import { ConfigurationError } from '../errors.js';

/** JWS algorithms a Session-Binding Proof may use: asymmetric only, never `none` or HMAC. */
export type ProofAlgorithm = 'ES256' | 'ES384' | 'EdDSA' | 'Ed25519' | 'PS256' | 'RS256';

/** Smallest RSA modulus accepted for proofs (RFC 8725 section 3.5 points at NIST guidance). */
export const MIN_RSA_BITS = 2048;

/**
 * The algorithms consistent with a key's type (draft section 2.3.1: "alg MUST match the key type").
 * Works on public and private keys. Returns `[]` for keys that cannot sign proofs.
 */
export function algorithmsForKey(key: KeyObject): ProofAlgorithm[] {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details?.namedCurve === 'prime256v1') return ['ES256'];
      if (details?.namedCurve === 'secp384r1') return ['ES384'];
      return [];
    case 'ed25519':
      // "EdDSA" (RFC 8037) and the fully specified "Ed25519" (RFC 9864) name the same signature.
      return ['EdDSA', 'Ed25519'];
    case 'rsa':
      return (details?.modulusLength ?? 0) >= MIN_RSA_BITS ? ['PS256', 'RS256'] : [];
    case 'rsa-pss':
      return (details?.modulusLength ?? 0) >= MIN_RSA_BITS ? ['PS256'] : [];
    default:
      return [];
  }
}

/**
 * The algorithm a signer uses for `key`: ES256 for P-256, ES384 for P-384, EdDSA for Ed25519,
 * PS256 for RSA (RS256 when `preferRs256`). Throws {@link ConfigurationError} for other keys.
 */
export function signingAlgorithmForKey(key: KeyObject, preferRs256 = false): ProofAlgorithm {
  const algs = algorithmsForKey(key);
  const first = algs[0];
  if (first === undefined) {
    throw new ConfigurationError(
      `key type ${String(key.asymmetricKeyType)} cannot sign Session-Binding Proofs (P-256, P-384, Ed25519 or RSA >= ${MIN_RSA_BITS} bits)`,
    );
  }
  if (preferRs256 && algs.includes('RS256')) return 'RS256';
  return first;
}
