import { createPublicKey, KeyObject, type JsonWebKey } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { decodeBase64url } from '../encoding.js';
import { dpopAlgorithmsForKey, type DpopAlgorithm } from './algorithms.js';

/** The public members of a DPoP key, as put in the proof header (RFC 7517 / RFC 7518 / RFC 8037). */
export type DpopPublicJwk =
  | { kty: 'EC'; crv: 'P-256' | 'P-384'; x: string; y: string }
  | { kty: 'OKP'; crv: 'Ed25519'; x: string }
  | { kty: 'RSA'; n: string; e: string };

/** Members that only a private (or symmetric) JWK carries (RFC 7518 section 6). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'r', 't'] as const;
const COORDINATE_BYTES = { 'P-256': 32, 'P-384': 48 } as const;
const MAX_RSA_MODULUS_BYTES = 1024; // 8192 bits

export type JwkImportResult =
  | { ok: true; jwk: DpopPublicJwk; key: KeyObject; algorithms: DpopAlgorithm[] }
  | { ok: false; reason: string; description: string };

function bytesOf(value: unknown): Buffer | undefined {
  return typeof value === 'string' ? decodeBase64url(value) : undefined;
}

function reject(reason: string, description: string): JwkImportResult {
  return { ok: false, reason, description };
}

/**
 * The checks on a `jwk` object's members other than the key itself: no private or symmetric
 * member, `use` absent or `sig`. The refusal, or `undefined` when they pass.
 */
export function refuseNonKeyMembers(jwk: Record<string, unknown>): (JwkImportResult & { ok: false }) | undefined {
  for (const member of PRIVATE_MEMBERS) {
    if (member in jwk) return { ok: false, reason: 'jwk_private', description: 'jwk header contains private key material' };
  }
  if ('use' in jwk && jwk.use !== 'sig') return { ok: false, reason: 'jwk', description: 'jwk use is not sig' };
  return undefined;
}

/**
 * Validate and import the `jwk` header parameter of a DPoP proof. Refuses: anything but an object;
 * any private or symmetric member; `kty` other than EC (P-256, P-384), OKP (Ed25519) or RSA;
 * coordinates that are not canonical base64url of the curve's size; a point that is not on the
 * curve (node:crypto validates EC points on import); RSA moduli under 2048 bits; `use` other than
 * `sig`. Never throws.
 */
export function importDpopJwk(value: unknown): JwkImportResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return reject('jwk', 'jwk header is not a JSON object');
  const jwk = value as Record<string, unknown>;
  const refused = refuseNonKeyMembers(jwk);
  if (refused !== undefined) return refused;
  let pub: DpopPublicJwk;
  switch (jwk.kty) {
    case 'EC': {
      if (jwk.crv !== 'P-256' && jwk.crv !== 'P-384') return reject('jwk', 'unsupported curve');
      const size = COORDINATE_BYTES[jwk.crv];
      if (bytesOf(jwk.x)?.length !== size || bytesOf(jwk.y)?.length !== size) return reject('jwk', 'malformed EC coordinates');
      pub = { kty: 'EC', crv: jwk.crv, x: jwk.x as string, y: jwk.y as string };
      break;
    }
    case 'OKP':
      if (jwk.crv !== 'Ed25519') return reject('jwk', 'unsupported curve');
      if (bytesOf(jwk.x)?.length !== 32) return reject('jwk', 'malformed OKP key');
      pub = { kty: 'OKP', crv: 'Ed25519', x: jwk.x as string };
      break;
    case 'RSA': {
      const n = bytesOf(jwk.n);
      const e = bytesOf(jwk.e);
      if (n === undefined || e === undefined || n.length === 0 || n.length > MAX_RSA_MODULUS_BYTES || e.length === 0 || e.length > 8) {
        return reject('jwk', 'malformed RSA key');
      }
      pub = { kty: 'RSA', n: jwk.n as string, e: jwk.e as string };
      break;
    }
    default:
      return reject('jwk', 'unsupported key type');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pub as JsonWebKey, format: 'jwk' });
  } catch {
    return reject('jwk', 'jwk is not a valid public key');
  }
  const algorithms = dpopAlgorithmsForKey(key);
  if (algorithms.length === 0) return reject('jwk_weak', 'jwk key type or size is not accepted');
  return { ok: true, jwk: pub, key, algorithms };
}

/**
 * The public JWK of `key` (public or private) with only the members RFC 7638 hashes, for the DPoP
 * proof header. Throws `TypeError` for a key that cannot sign DPoP proofs.
 */
export function publicJwkOf(key: KeyObject): DpopPublicJwk {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const result = importDpopJwk(publicKey.export({ format: 'jwk' }));
  if (!result.ok) throw new TypeError(`key cannot sign DPoP proofs: ${result.description}`);
  return result.jwk;
}

/**
 * RFC 7638 JWK SHA-256 thumbprint (base64url), the value of `cnf.jkt` (RFC 9449 section 6.1).
 * Accepts a public JWK or a key object (public or private; only the public part is hashed).
 */
export async function jwkThumbprint(key: JWK | DpopPublicJwk | KeyObject): Promise<string> {
  const jwk = key instanceof KeyObject ? publicJwkOf(key) : (key as JWK);
  return calculateJwkThumbprint(jwk as JWK, 'sha256');
}
