/**
 * Compact JWS signing and JWK export with node:crypto only (the CLI has no JOSE dependency of its
 * own). Used by the development issuer; the resource server verifies with @tether/core.
 */
import { createHash, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { usageError } from './errors.js';

export type IssuerAlgorithm = 'ES256' | 'ES384' | 'EdDSA' | 'RS256';

/** The JWS algorithm for a signing key: ES256 (P-256), ES384 (P-384), EdDSA (Ed25519), RS256 (RSA >= 2048). */
export function issuerAlgorithm(key: KeyObject): IssuerAlgorithm {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details?.namedCurve === 'prime256v1') return 'ES256';
      if (details?.namedCurve === 'secp384r1') return 'ES384';
      break;
    case 'ed25519':
      return 'EdDSA';
    case 'rsa':
      if ((details?.modulusLength ?? 0) >= 2048) return 'RS256';
      break;
    default:
      break;
  }
  throw usageError(`issuer key type ${String(key.asymmetricKeyType)}${details?.namedCurve ? ` (${details.namedCurve})` : ''} is not supported; use P-256, P-384, Ed25519 or RSA >= 2048 bits`);
}

/** The public JWK of a key (private members never included). */
export function publicJwk(key: KeyObject): Record<string, string> {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' }) as Record<string, string>;
  return Object.fromEntries(Object.entries(jwk).filter(([k]) => ['kty', 'crv', 'x', 'y', 'n', 'e'].includes(k)));
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of a key's public part. */
export function jwkThumbprint(key: KeyObject): string {
  const jwk = publicJwk(key);
  const members = jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : jwk.kty === 'OKP' ? ['crv', 'kty', 'x'] : ['e', 'kty', 'n'];
  const canonical = `{${members.map((m) => `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`).join(',')}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}

/** Sign a compact JWS with `key`. */
export function signCompactJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const alg = issuerAlgorithm(key);
  const input = `${Buffer.from(JSON.stringify({ ...header, alg })).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const digest = alg === 'EdDSA' ? null : alg === 'ES384' ? 'sha384' : 'sha256';
  const signature = sign(digest, Buffer.from(input), alg.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${signature.toString('base64url')}`;
}
