import { X509Certificate, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { encodeBase64url } from '../encoding.js';
import { ConfigurationError } from '../errors.js';
import { EXPORTER_LENGTH } from '../exporter.js';
import { accessTokenHash, certificateThumbprint, type CertificateInput } from '../thumbprint.js';
import { signingAlgorithmForKey, type ProofAlgorithm } from './algorithms.js';
import { PROOF_TYP } from './constants.js';
import { isJwsSigner, signCompactJws, type JwsSigner } from './signer.js';

export interface CreateProofOptions {
  /**
   * The mTLS private key (the key of the client certificate used on this connection): in memory,
   * or a {@link JwsSigner} for a key held in a token (then `alg` is required).
   */
  privateKey: KeyObject | JwsSigner;
  /** The client certificate presented on this connection (for `x5t#S256`). */
  certificate: CertificateInput;
  /** The access token the proof binds. */
  accessToken: string;
  /** This connection's exporter value, from `deriveSessionExporter`. */
  ekm: Uint8Array;
  /** Issue time in seconds; defaults to now. */
  iat?: number;
  /** Optional per-request claims (draft section 2.3.2.2). */
  jti?: string;
  htm?: string;
  htu?: string;
  /** Override the algorithm derived from the key (must still match the key type). */
  alg?: ProofAlgorithm;
}

/**
 * Create a Session-Binding Proof: a JWS with header `{typ, alg, x5t#S256}` and claims
 * `{ath, ekm, iat[, jti, htm, htu]}`, signed with the mTLS private key.
 *
 * Checks the inputs it is given (exporter length, key type) but not that `privateKey` belongs to
 * `certificate`; use {@link assertKeyMatchesCertificate} once when the key is loaded.
 */
export async function createSessionBindingProof(options: CreateProofOptions): Promise<string> {
  if (options.ekm.byteLength !== EXPORTER_LENGTH) {
    throw new TypeError(`ekm must be ${EXPORTER_LENGTH} bytes`);
  }
  const { privateKey } = options;
  if (isJwsSigner(privateKey) && options.alg === undefined) throw new TypeError('alg is required with a JwsSigner');
  const alg = options.alg ?? signingAlgorithmForKey(privateKey as KeyObject);
  const claims: Record<string, string | number> = {
    ath: accessTokenHash(options.accessToken),
    ekm: encodeBase64url(options.ekm),
    iat: options.iat ?? Math.floor(Date.now() / 1000),
  };
  if (options.jti !== undefined) claims.jti = options.jti;
  if (options.htm !== undefined) claims.htm = options.htm;
  if (options.htu !== undefined) claims.htu = options.htu;
  const header = { typ: PROOF_TYP, alg, 'x5t#S256': certificateThumbprint(options.certificate) };
  const payload = Buffer.from(JSON.stringify(claims));
  if (isJwsSigner(privateKey)) return signCompactJws(privateKey, alg, header, payload);
  return new CompactSign(payload).setProtectedHeader(header).sign(privateKey);
}

/** Throw {@link ConfigurationError} unless `privateKey` is the private half of `certificate`'s key. */
export function assertKeyMatchesCertificate(privateKey: KeyObject, certificate: X509Certificate): void {
  if (privateKey.type !== 'private' || !certificate.checkPrivateKey(privateKey)) {
    throw new ConfigurationError('the private key does not belong to the certificate');
  }
}
