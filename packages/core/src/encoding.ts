import { hash } from 'node:crypto';

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Bits of the last base64url character that carry no data, by `length % 4`: a canonical encoding
 * has them zero (2 characters per byte left over: 4 spare bits; 3 characters per 2 bytes: 2).
 */
const SPARE_BITS_MASK = [0, 0, 0b1111, 0b11] as const;

/** Value (0..63) of a base64url character code, already known to be in the alphabet. */
function sextet(code: number): number {
  if (code >= 97) return code - 71; // a-z: 26..51
  if (code >= 65) return code - 65; // A-Z: 0..25
  if (code >= 48 && code <= 57) return code + 4; // 0-9: 52..61
  return code === 45 ? 62 : 63; // '-' and '_'
}

/** Strict base64url decode: rejects padding, foreign characters and non-canonical trailing bits. */
export function decodeBase64url(value: string): Buffer | undefined {
  return BASE64URL.test(value) ? decodeBase64urlAlphabetChecked(value) : undefined;
}

/**
 * {@link decodeBase64url} for a value whose characters the caller has already checked are all in
 * the base64url alphabet (a compact JWS checks its whole serialization in one pass): the length
 * and trailing-bit rules, then the decode.
 */
export function decodeBase64urlAlphabetChecked(value: string): Buffer | undefined {
  const rest = value.length % 4;
  if (rest === 1) return undefined;
  // Buffer's decoder ignores stray low bits in the final character: only one spelling is accepted.
  if (rest !== 0 && (sextet(value.charCodeAt(value.length - 1)) & (SPARE_BITS_MASK[rest] as number)) !== 0) return undefined;
  return Buffer.from(value, 'base64url');
}

/**
 * Whether `token` is a JWS compact serialization with one spelling: exactly three non-empty
 * segments, each canonical base64url (no padding, whitespace or stray low bits, which lenient
 * decoders such as jose's accept, letting one signed token be respelled at will).
 */
export function isCanonicalCompactJws(token: string): boolean {
  const parts = token.split('.');
  return parts.length === 3 && parts.every((part) => part !== '' && decodeBase64url(part) !== undefined);
}

export function encodeBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * base64url SHA-256 of `data` (a string is hashed as UTF-8). One-shot `crypto.hash` (Node >= 20.12; engines floor 20.19): about 1 µs
 * cheaper per call than `createHash().update().digest()` plus an encoding step (measured, Node 20),
 * and it runs for every new token's `ath`, every DPoP proof's `jti` and every introspected token's cache key.
 */
export function sha256Base64url(data: Uint8Array | string): string {
  return hash('sha256', data, 'base64url');
}

/** RFC 6750 section 2.1 b64token: the only characters a Bearer token may contain. */
export const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 JSON that must be an object (a JOSE header or claims set); `undefined` for anything else. */
export function decodeJsonObject(bytes: Uint8Array | undefined): Record<string, unknown> | undefined {
  if (bytes === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(UTF8.decode(bytes));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
