import { createHash } from 'node:crypto';

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Strict base64url decode: rejects padding, foreign characters and non-canonical trailing bits. */
export function decodeBase64url(value: string): Buffer | undefined {
  if (!BASE64URL.test(value) || value.length % 4 === 1) return undefined;
  const bytes = Buffer.from(value, 'base64url');
  // Buffer's decoder ignores stray low bits in the final character; a canonical encoding round-trips.
  if (bytes.toString('base64url') !== value) return undefined;
  return bytes;
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

export function sha256(data: Uint8Array | string): Buffer {
  return createHash('sha256').update(data).digest();
}

/** RFC 6750 section 2.1 b64token: the only characters a Bearer token may contain. */
export const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** UTF-8 JSON that must be an object (a JOSE header or claims set); `undefined` for anything else. */
export function decodeJsonObject(bytes: Uint8Array | undefined): Record<string, unknown> | undefined {
  if (bytes === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
