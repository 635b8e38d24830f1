import { decodeBase64url, decodeJsonObject } from './encoding.js';

/** A JWS compact serialization decoded once: its JSON object header, payload bytes, signature and signing input. */
export interface DecodedCompactJws {
  ok: true;
  header: Record<string, unknown>;
  /** Payload bytes, not parsed (the signature is checked first). */
  payload: Buffer;
  signature: Buffer;
  /** ASCII bytes of `header.payload`, what the signature covers. */
  signingInput: Buffer;
}

/** Why a value is not a compact JWS: its serialization, or its header (not a UTF-8 JSON object). */
export type CompactJwsDefect = { ok: false; defect: 'serialization' | 'header' };

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Split and decode a JWS compact serialization (RFC 7515 section 7.1), each segment decoded once:
 * exactly three non-empty segments, each canonical base64url (no padding or stray low bits, which
 * lenient decoders accept, letting one signed value be respelled at will), and a header that is a
 * UTF-8 JSON object. The header's contents and the signature are the caller's to check.
 */
export function decodeCompactJws(value: string): DecodedCompactJws | CompactJwsDefect {
  const first = value.indexOf('.');
  const second = first < 0 ? -1 : value.indexOf('.', first + 1);
  if (second < 0 || value.indexOf('.', second + 1) >= 0) return { ok: false, defect: 'serialization' };
  const headerSegment = value.slice(0, first);
  const payloadSegment = value.slice(first + 1, second);
  const signatureSegment = value.slice(second + 1);
  if (!SEGMENT.test(headerSegment) || !SEGMENT.test(payloadSegment) || !SEGMENT.test(signatureSegment)) return { ok: false, defect: 'serialization' };
  const headerBytes = decodeBase64url(headerSegment);
  const payload = decodeBase64url(payloadSegment);
  const signature = decodeBase64url(signatureSegment);
  if (headerBytes === undefined || payload === undefined || signature === undefined) return { ok: false, defect: 'serialization' };
  const header = decodeJsonObject(headerBytes);
  if (header === undefined) return { ok: false, defect: 'header' };
  return { ok: true, header, payload, signature, signingInput: Buffer.from(value.slice(0, second), 'latin1') };
}
