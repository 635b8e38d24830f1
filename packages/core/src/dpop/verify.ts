import { timingSafeEqual, type KeyObject } from 'node:crypto';
import { verifyJwsSignature } from '../proof/jws-signature.js';
import { carriesKey, decodeCompactJws, hasPayloadExtension, hasTyp } from '../compact-jws.js';
import { decodeBase64url, decodeJsonObject, sha256Base64url } from '../encoding.js';
import { InvalidDpopProofError, UseDpopNonceError } from '../errors.js';
import { accessTokenHash } from '../thumbprint.js';
import type { ReplayStore } from '../verifier/replay-store.js';
import { DPOP_ALGORITHMS, type DpopAlgorithm } from './algorithms.js';
import { DPOP_TYP, MAX_DPOP_PROOF_LENGTH, MAX_JTI_LENGTH, MAX_NONCE_LENGTH } from './constants.js';
import { dpopHtuMatches } from './htu.js';
import type { DpopPublicJwk } from './jwk.js';
import { DpopKeyCache } from './key-cache.js';

const HTTP_METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9449 section 8.1: nonce = 1*NQCHAR (%x21 / %x23-5B / %x5D-7E). */
const NONCE = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
/**
 * Server-provided nonces (RFC 9449 sections 8 and 9). `issue` returns a fresh, unpredictable
 * nonce (for the `DPoP-Nonce` header); `check` says whether a nonce from a proof is still
 * acceptable. A `check` that throws fails the proof closed.
 */
export interface DpopNonceSource {
  issue(): string;
  check(nonce: string): boolean | Promise<boolean>;
}

export interface VerifyDpopProofOptions {
  /** HTTP method of the request the proof arrived with. */
  htm: string;
  /** Target URI of the request (absolute); compared with `htu` after normalization, query and fragment ignored. */
  htu: string;
  /** The access token presented with the proof: `ath` is then required and must match (RFC 9449 section 7). */
  accessToken?: string;
  /** `ath` of `accessToken` when the caller has it already (the verifier computes it once per token). */
  ath?: string;
  /** Nonce required in the proof: an exact value, or a source that checks and issues nonces. */
  nonce?: string | DpopNonceSource;
  /** Current time in seconds (default: the system clock). */
  now?: number;
  /** Oldest acceptable `iat`, as seconds before now (default 60). */
  maxAge?: number;
  /** Clock skew tolerated for `iat`, seconds, both directions (default 30). */
  clockSkew?: number;
  /** Algorithms accepted (default {@link DPOP_ALGORITHMS}); they must still match the `jwk`. */
  algorithms?: readonly DpopAlgorithm[];
  /**
   * Imported keys by exact JWK (default: one process-wide cache of
   * 1024 keys). Pass `new DpopKeyCache(0)` to import every `jwk` afresh.
   */
  keyCache?: DpopKeyCache;
  /** Where `jti` values are recorded (key `dpop:` + base64url SHA-256 of the jti). Fails closed when it throws. */
  replayStore: ReplayStore;
}

export interface DpopProofClaims {
  jti: string;
  htm: string;
  htu: string;
  iat: number;
  ath?: string;
  nonce?: string;
}

export interface VerifiedDpopProof {
  header: { typ: string; alg: DpopAlgorithm; jwk: DpopPublicJwk } & Record<string, unknown>;
  claims: DpopProofClaims;
  /** The proof's public key. */
  key: KeyObject;
  /** RFC 7638 thumbprint of `jwk`: compare with the token's `cnf.jkt`. */
  jkt: string;
}

/** The cache behind `verifyDpopProof` calls that bring none. */
const sharedKeyCache = new DpopKeyCache();

function parseJsonObject(bytes: Uint8Array | undefined, what: string, fail: Fail): Record<string, unknown> {
  return decodeJsonObject(bytes) ?? fail('malformed', `malformed ${what}`);
}

type Fail = (reason: string, description: string, cause?: unknown) => never;

/** Whether the decoded `ath` claim equals the base64url hash `expected`, in constant time. */
function athEquals(athBytes: Buffer, expected: string): boolean {
  const y = decodeBase64url(expected);
  return y !== undefined && athBytes.length === y.length && timingSafeEqual(athBytes, y);
}

/** The replay-store key of a DPoP `jti`: namespaced, and hashed so stored keys have a fixed size. */
export function dpopReplayKey(jti: string): string {
  return `dpop:${sha256Base64url(jti)}`;
}

/**
 * Verify a DPoP proof (RFC 9449 section 4.3, checks 2 to 12 except the key binding to the access
 * token, which the caller compares with the returned `jkt`).
 *
 * Checks: compact serialization, canonical base64url and size; `typ` is `dpop+jwt`; no `crit` or
 * `b64`; a `jwk` (and no `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256`) holding a valid public key with no
 * private members (see `importDpopJwk`); `alg` accepted and consistent with the key (never `none`
 * or HMAC; `jwk.alg`, if present, equal); signature with that key; `jti`, `htm`, `htu`, `iat`
 * present and well-typed; `htm` equal; `htu` equal after normalization; `ath` equal to the hash of
 * `accessToken` when one is given; the nonce when one is required (`UseDpopNonceError` otherwise);
 * `iat` inside `[now - maxAge - clockSkew, now + clockSkew]`; and last, `jti` unused (recorded
 * until the proof could no longer be accepted).
 *
 * @throws {InvalidDpopProofError} with a `reason` naming the failed check.
 * @throws {UseDpopNonceError} when the nonce is missing or not accepted; its `headers` carry the nonce to use.
 */
export async function verifyDpopProof(proof: string, options: VerifyDpopProofOptions): Promise<VerifiedDpopProof> {
  const accepted = options.algorithms ?? DPOP_ALGORITHMS;
  const fail: Fail = (reason, description, cause) => {
    throw new InvalidDpopProofError({
      reason,
      description: `DPoP proof verification failed: ${description}`,
      algs: accepted,
      ...(cause === undefined ? {} : { cause }),
    });
  };
  if (typeof proof !== 'string' || proof.length === 0 || proof.length > MAX_DPOP_PROOF_LENGTH) fail('malformed', 'malformed proof');
  const jws = decodeCompactJws(proof);
  if (!jws.ok) fail('malformed', jws.defect === 'header' ? 'malformed proof header' : 'malformed proof');
  const { header } = jws;
  if (!hasTyp(header, DPOP_TYP)) fail('typ', 'wrong typ');
  if (hasPayloadExtension(header)) fail('crit', 'unsupported header parameter');
  if (carriesKey(header, ['jwk'])) fail('header_key', 'the key must be given as jwk only');
  if (!('jwk' in header)) fail('jwk_missing', 'jwk header parameter is required');
  if (typeof header.alg !== 'string' || !(accepted as readonly string[]).includes(header.alg)) fail('alg', 'alg not accepted');
  const alg = header.alg as DpopAlgorithm;
  const keyCache = options.keyCache ?? sharedKeyCache;
  const imported = keyCache.get(header.jwk) ?? (await keyCache.import(header.jwk));
  if (!imported.ok) fail(imported.reason, imported.description);
  if (!imported.algorithms.includes(alg)) fail('alg', 'alg does not match the jwk');
  const jwkAlg = (header.jwk as Record<string, unknown>).alg;
  if (jwkAlg !== undefined && jwkAlg !== alg) fail('alg', 'alg does not match the jwk');

  if (!verifyJwsSignature(alg, imported.key, jws.signingInput, jws.signature)) fail('signature', 'invalid signature');
  const claims = parseJsonObject(jws.payload, 'proof payload', fail);
  const { jti, htm, htu, iat, ath, nonce } = claims;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) fail('claims', 'invalid jti claim');
  if (typeof htm !== 'string' || !HTTP_METHOD.test(htm)) fail('claims', 'invalid htm claim');
  if (typeof htu !== 'string' || htu.length === 0 || htu.length > 4096) fail('claims', 'invalid htu claim');
  if (typeof iat !== 'number' || !Number.isFinite(iat) || iat < 0) fail('claims', 'invalid iat claim');
  // Decoded once: checked here, compared below.
  const athBytes = typeof ath === 'string' ? decodeBase64url(ath) : undefined;
  if (ath !== undefined && (typeof ath !== 'string' || athBytes?.length !== 32)) fail('claims', 'invalid ath claim');
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce.length > MAX_NONCE_LENGTH || !NONCE.test(nonce))) fail('claims', 'invalid nonce claim');

  if (htm !== options.htm) fail('htm_mismatch', 'htm mismatch');
  if (!dpopHtuMatches(htu, options.htu)) fail('htu_mismatch', 'htu mismatch');
  if (options.accessToken !== undefined) {
    if (athBytes === undefined) fail('ath_missing', 'ath claim is required with an access token');
    if (!athEquals(athBytes, options.ath ?? accessTokenHash(options.accessToken))) fail('ath_mismatch', 'access token hash mismatch');
  }

  const required = options.nonce;
  if (required !== undefined) {
    let ok: boolean;
    if (typeof required === 'string') ok = nonce === required;
    else if (nonce === undefined) ok = false;
    else {
      try {
        ok = (await required.check(nonce)) === true;
      } catch (cause) {
        fail('nonce_check_unavailable', 'nonce check unavailable', cause);
      }
    }
    if (!ok) {
      throw new UseDpopNonceError({
        reason: nonce === undefined ? 'nonce_missing' : 'nonce_mismatch',
        description: 'Resource server requires nonce in DPoP proof',
        nonce: typeof required === 'string' ? required : required.issue(),
        algs: accepted,
      });
    }
  }

  const now = options.now ?? Date.now() / 1000;
  const skew = options.clockSkew ?? 30;
  const maxAge = options.maxAge ?? 60;
  if (iat > now + skew) fail('iat_future', 'iat is in the future');
  if (iat < now - maxAge - skew) fail('iat_stale', 'iat is too old');

  let fresh: boolean;
  try {
    // Through iat + maxAge + skew inclusive, the last second the iat check above still passes.
    const used = options.replayStore.use(dpopReplayKey(jti), iat + maxAge + skew + 1);
    fresh = used instanceof Promise ? await used : used;
  } catch (cause) {
    fail('replay_store_unavailable', 'replay check unavailable', cause);
  }
  if (fresh !== true) fail('jti_replay', 'jti reuse');

  const out: DpopProofClaims = { jti, htm, htu, iat };
  if (ath !== undefined) out.ath = ath;
  if (nonce !== undefined) out.nonce = nonce;
  return {
    header: { ...header, typ: header.typ as string, alg, jwk: imported.jwk },
    claims: out,
    key: imported.key,
    jkt: imported.jkt,
  };
}
