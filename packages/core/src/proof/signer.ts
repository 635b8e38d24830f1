import type { ProofAlgorithm } from './algorithms.js';

/**
 * A private key that signs outside this process's memory (a PKCS#11 token, an HSM, a KMS): it
 * signs a JWS signing input and returns the signature in JOSE form (RFC 7518: `r || s` for ECDSA,
 * the raw signature for EdDSA and RSA). `@tether/pkcs11` provides one; a `KeyObject` is the
 * in-memory default and needs no signer.
 */
export interface JwsSigner {
  /** Sign `signingInput` (ASCII `BASE64URL(header).BASE64URL(payload)`) with `alg`. */
  sign(alg: ProofAlgorithm, signingInput: Uint8Array): Promise<Uint8Array>;
}

/**
 * Compact-serialize a JWS signed by `signer`. jose's `CompactSign` signs only with a `KeyObject` or
 * a `CryptoKey`, and a token-held key is neither, so the three segments are joined here; the
 * `header` and `payload` are the same objects the jose path signs.
 */
export async function signCompactJws(signer: JwsSigner, alg: ProofAlgorithm, header: Record<string, unknown>, payload: Uint8Array): Promise<string> {
  const signingInput = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(payload).toString('base64url')}`;
  const signature = await signer.sign(alg, Buffer.from(signingInput, 'ascii'));
  return `${signingInput}.${Buffer.from(signature).toString('base64url')}`;
}

/** Whether `key` is a {@link JwsSigner} rather than a `KeyObject`. */
export function isJwsSigner(key: unknown): key is JwsSigner {
  return typeof key === 'object' && key !== null && typeof (key as { sign?: unknown }).sign === 'function' && !('asymmetricKeyType' in key);
}
