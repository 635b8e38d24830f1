import { createPublicKey, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { ConfigurationError } from '../errors.js';
import { accessTokenHash } from '../thumbprint.js';
import { dpopAlgorithmsForKey, type DpopAlgorithm } from './algorithms.js';
import { DPOP_TYP } from './constants.js';
import { importDpopJwk, publicJwkOf, type DpopPublicJwk } from './jwk.js';

export interface CreateDpopProofOptions {
  /** The DPoP private key (P-256, P-384, Ed25519 or RSA >= 2048 bits). */
  privateKey: KeyObject;
  /**
   * The public JWK of `privateKey` for the `jwk` header (default: derived from the key). When given
   * it must be the public half of `privateKey`; only its public members are sent.
   */
  publicJwk?: DpopPublicJwk | JsonWebKey;
  /** HTTP method of the request. */
  htm: string;
  /** Target URI of the request; query and fragment are dropped. */
  htu: string | URL;
  /** The access token sent with the request; adds `ath` (RFC 9449 section 7). */
  accessToken?: string;
  /** The server-provided nonce (RFC 9449 sections 8 and 9). */
  nonce?: string;
  /** Issue time in seconds; defaults to now. */
  iat?: number;
  /** Unique identifier; defaults to 128 random bits, base64url. */
  jti?: string;
  /** Override the algorithm derived from the key (must still match the key type). */
  alg?: DpopAlgorithm;
}

/**
 * Create a DPoP proof (RFC 9449 section 4.2): a JWS with header `{typ: "dpop+jwt", alg, jwk}` and
 * claims `{jti, htm, htu, iat[, ath][, nonce]}`, signed with `privateKey`. One call, one signature.
 *
 * @throws {ConfigurationError} for a key that cannot sign DPoP proofs, an `alg` that does not match
 * it, or a `publicJwk` that is not its public half.
 */
export async function createDpopProof(options: CreateDpopProofOptions): Promise<string> {
  const { privateKey } = options;
  if (privateKey.type !== 'private') throw new ConfigurationError('DPoP proofs are signed with a private key');
  const algs = dpopAlgorithmsForKey(privateKey);
  const alg = options.alg ?? algs[0];
  if (alg === undefined || !algs.includes(alg)) throw new ConfigurationError('the key cannot sign DPoP proofs with this algorithm');
  let jwk: DpopPublicJwk;
  if (options.publicJwk !== undefined) {
    const given = importDpopJwk(options.publicJwk);
    if (!given.ok || !given.key.equals(createPublicKey(privateKey))) throw new ConfigurationError('publicJwk is not the public half of privateKey');
    jwk = given.jwk;
  } else {
    try {
      jwk = publicJwkOf(privateKey);
    } catch (cause) {
      throw new ConfigurationError('the key cannot sign DPoP proofs', { cause });
    }
  }
  const target = new URL(options.htu);
  const claims: Record<string, string | number> = {
    jti: options.jti ?? randomBytes(16).toString('base64url'),
    htm: options.htm,
    htu: `${target.protocol}//${target.host}${target.pathname}`,
    iat: options.iat ?? Math.floor(Date.now() / 1000),
  };
  if (options.accessToken !== undefined) claims.ath = accessTokenHash(options.accessToken);
  if (options.nonce !== undefined) claims.nonce = options.nonce;
  return new CompactSign(Buffer.from(JSON.stringify(claims))).setProtectedHeader({ typ: DPOP_TYP, alg, jwk }).sign(privateKey);
}
