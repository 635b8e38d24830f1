/**
 * JWS algorithm -> PKCS#11 mechanism and the bytes given to `C_Sign`, and the check that the
 * result is already in JOSE form (RFC 7518):
 * - ES256 / ES384: `CKM_ECDSA` signs a digest we compute (SHA-256 / SHA-384) and returns `r || s`,
 *   each as long as the curve order (PKCS#11 v2.40 section 2.3.1), which is JOSE's form; the
 *   tests verify it with `node:crypto` in `ieee-p1363` form and with the resource server's verifier.
 * - EdDSA / Ed25519: `CKM_EDDSA` (PKCS#11 3.0) over the message itself.
 * - PS256: `CKM_SHA256_RSA_PKCS_PSS`, MGF1-SHA-256, salt 32 bytes. RS256: `CKM_SHA256_RSA_PKCS`.
 */
import { createHash } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { ProofAlgorithm } from '@tether/core';
import { Pkcs11KeyError } from './errors.js';

/** PKCS#11 3.0 values pkcs11js does not name. */
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;

export interface SignStep {
  mechanism: pkcs11js.Mechanism;
  /** What C_Sign receives. */
  data: Buffer;
  /** Length of the JOSE signature, when fixed. */
  length: number | undefined;
}

export function signStep(alg: ProofAlgorithm, signingInput: Uint8Array): SignStep {
  const input = Buffer.from(signingInput.buffer, signingInput.byteOffset, signingInput.byteLength);
  switch (alg) {
    case 'ES256':
      return { mechanism: { mechanism: pkcs11js.CKM_ECDSA }, data: createHash('sha256').update(input).digest(), length: 64 };
    case 'ES384':
      return { mechanism: { mechanism: pkcs11js.CKM_ECDSA }, data: createHash('sha384').update(input).digest(), length: 96 };
    case 'EdDSA':
    case 'Ed25519':
      return { mechanism: { mechanism: CKM_EDDSA }, data: input, length: 64 };
    case 'PS256': {
      const parameter: pkcs11js.RsaPSS = { type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256, saltLen: 32 };
      return {
        mechanism: {
          mechanism: pkcs11js.CKM_SHA256_RSA_PKCS_PSS,
          parameter,
        },
        data: input,
        length: undefined,
      };
    }
    case 'RS256':
      return { mechanism: { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS }, data: input, length: undefined };
    default:
      throw new Pkcs11KeyError('ERR_PKCS11_UNSUPPORTED_KEY', `algorithm ${String(alg)} is not supported with a PKCS#11 key`);
  }
}

/** The largest signature C_Sign may return (RSA 8192 bits). */
export const MAX_SIGNATURE_BYTES = 1024;
