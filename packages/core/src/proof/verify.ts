import { timingSafeEqual, type KeyObject, type X509Certificate } from 'node:crypto';
import { verifyJwsSignature } from './jws-signature.js';
import { carriesKey, decodeCompactJws, hasPayloadExtension, hasTyp } from '../compact-jws.js';
import { decodeBase64url, decodeJsonObject } from '../encoding.js';
import { InvalidProofError } from '../errors.js';
import { EXPORTER_LENGTH } from '../exporter.js';
import { accessTokenHash, certificateThumbprint } from '../thumbprint.js';
import { algorithmsForKey, type ProofAlgorithm } from './algorithms.js';
import { MAX_PROOF_LENGTH, PROOF_TYP } from './constants.js';

/** Header parameters that name or carry a key. The proof key is always the connection's certificate. */
const HTTP_METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_CLAIM_LENGTH = 2048;

export interface VerifyProofOptions {
  /** The client certificate of *this* connection. The signature is checked against its key only. */
  certificate: X509Certificate;
  /**
   * `certificate.publicKey` and `x5t#S256` of `certificate`, when the caller has them already (a
   * connection derives them once; `X509Certificate` computes both afresh on every access).
   */
  publicKey?: KeyObject;
  thumbprint?: string;
  /** This connection's exporter value (`deriveSessionExporter`). */
  ekm: Uint8Array;
  /** The access token presented with the proof, or its precomputed `ath`. */
  accessToken?: string;
  ath?: string;
  /** Current time in seconds (default: the system clock). */
  now?: number;
  /** Oldest acceptable `iat`, as seconds before now (default 300). */
  maxAge?: number;
  /** Allowed clock skew in seconds, both directions (default 30). */
  clockSkew?: number;
  /** Narrow the algorithms accepted (they must still match the key type). */
  algorithms?: readonly ProofAlgorithm[];
}

export interface SessionBindingProofClaims {
  ath: string;
  ekm: string;
  iat: number;
  jti?: string;
  htm?: string;
  htu?: string;
}

export interface VerifiedSessionBindingProof {
  header: { typ: string; alg: ProofAlgorithm; 'x5t#S256': string } & Record<string, unknown>;
  claims: SessionBindingProofClaims;
}

function fail(reason: string, description: string, detail?: string, cause?: unknown): never {
  throw new InvalidProofError({
    reason,
    description: `Session-Binding Proof verification failed: ${description}`,
    ...(detail === undefined ? {} : { detail }),
    ...(cause === undefined ? {} : { cause }),
  });
}

function parseJsonObject(bytes: Uint8Array | undefined, what: string): Record<string, unknown> {
  return decodeJsonObject(bytes) ?? fail('malformed', `malformed ${what}`);
}


function optionalString(claims: Record<string, unknown>, name: string): string | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_CLAIM_LENGTH) {
    fail('claims', `invalid ${name} claim`);
  }
  return value;
}

function equal32(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

/**
 * Verify a Session-Binding Proof against the certificate and exporter value of the connection it
 * arrived on (draft section 3.3, steps e to h).
 *
 * Checks: compact serialization and size; `typ`; `alg` consistent with the certificate's key type
 * (never `none`, never HMAC); no key-carrying header (`jwk`, `jku`, `x5c`, `x5u`) and no `crit`;
 * header `x5t#S256` equal to the certificate's; signature with the certificate's public key; claim
 * types and encodings (`ath` and `ekm` are 32-byte base64url); `ekm` and `ath` in constant time;
 * `iat` inside `[now - maxAge - clockSkew, now + clockSkew]`.
 *
 * Does NOT check: `htm`/`htu` against the request or `jti` against a replay store (step i, the
 * caller has the request), the access token itself, or the certificate chain (the TLS stack's job).
 *
 * @throws {InvalidProofError} with a `reason` naming the failed check.
 */
export async function verifySessionBindingProof(
  proof: string,
  options: VerifyProofOptions,
): Promise<VerifiedSessionBindingProof> {
  if (typeof proof !== 'string' || proof.length === 0 || proof.length > MAX_PROOF_LENGTH) {
    fail('malformed', 'malformed proof');
  }
  const jws = decodeCompactJws(proof);
  if (!jws.ok) fail('malformed', jws.defect === 'header' ? 'malformed proof header' : 'malformed proof');
  const { header } = jws;
  if (!hasTyp(header, PROOF_TYP)) fail('typ', 'wrong typ');
  if (hasPayloadExtension(header)) fail('crit', 'unsupported header parameter');
  // The certificate is the connection's: only its thumbprint may be named.
  if (carriesKey(header, ['x5t', 'x5t#S256'])) fail('header_key', 'key parameters are not allowed in the proof header');
  const publicKey = options.publicKey ?? options.certificate.publicKey;
  let allowed: readonly ProofAlgorithm[] = algorithmsForKey(publicKey);
  if (options.algorithms !== undefined) allowed = allowed.filter((a) => options.algorithms?.includes(a));
  if (typeof header.alg !== 'string' || !(allowed as readonly string[]).includes(header.alg)) {
    fail('alg', 'alg does not match the certificate key');
  }
  if (header['x5t#S256'] !== (options.thumbprint ?? certificateThumbprint(options.certificate))) {
    fail('x5t_mismatch', 'certificate thumbprint mismatch');
  }

  if (!verifyJwsSignature(header.alg, publicKey, jws.signingInput, jws.signature)) fail('signature', 'invalid signature');
  const claims = parseJsonObject(jws.payload, 'proof payload');

  const { ath, ekm, iat } = claims;
  if (typeof ath !== 'string' || typeof ekm !== 'string') fail('claims', 'ath and ekm claims are required');
  if (typeof iat !== 'number' || !Number.isFinite(iat) || iat < 0) fail('claims', 'iat claim is required');
  const ekmBytes = decodeBase64url(ekm);
  const athBytes = decodeBase64url(ath);
  if (ekmBytes?.length !== EXPORTER_LENGTH) fail('claims', 'invalid ekm claim');
  if (athBytes?.length !== 32) fail('claims', 'invalid ath claim');
  const jti = optionalString(claims, 'jti');
  const htm = optionalString(claims, 'htm');
  const htu = optionalString(claims, 'htu');
  if (htm !== undefined && !HTTP_METHOD.test(htm)) fail('claims', 'invalid htm claim');

  if (!equal32(ekmBytes, options.ekm)) fail('ekm_mismatch', 'exporter mismatch');
  const expectedAth = options.ath ?? (options.accessToken === undefined ? undefined : accessTokenHash(options.accessToken));
  if (expectedAth === undefined) throw new TypeError('accessToken or ath is required');
  const expectedAthBytes = decodeBase64url(expectedAth);
  if (expectedAthBytes === undefined || !equal32(athBytes, expectedAthBytes)) fail('ath_mismatch', 'access token hash mismatch');

  const now = options.now ?? Date.now() / 1000;
  const skew = options.clockSkew ?? 30;
  const maxAge = options.maxAge ?? 300;
  if (iat > now + skew) fail('iat_future', 'iat is in the future');
  if (iat < now - maxAge - skew) fail('iat_stale', 'iat is too old');

  const out: SessionBindingProofClaims = { ath, ekm, iat };
  if (jti !== undefined) out.jti = jti;
  if (htm !== undefined) out.htm = htm;
  if (htu !== undefined) out.htu = htu;
  return { header: header as VerifiedSessionBindingProof['header'], claims: out };
}
