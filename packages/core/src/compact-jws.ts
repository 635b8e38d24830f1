import { decodeBase64urlAlphabetChecked, decodeJsonObject } from './encoding.js';

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

/** Three non-empty base64url segments: the alphabet of the whole serialization checked in one pass. */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Split and decode a JWS compact serialization (RFC 7515 section 7.1), each segment decoded once:
 * exactly three non-empty segments, each canonical base64url (no padding or stray low bits, which
 * lenient decoders accept, letting one signed value be respelled at will), and a header that is a
 * UTF-8 JSON object. The header's contents and the signature are the caller's to check.
 */
export function decodeCompactJws(value: string): DecodedCompactJws | CompactJwsDefect {
  // One scan for the structure and the alphabet, instead of one per segment and again per decode
  // (on every Session-Binding-Proof and DPoP proof verification, issue 13).
  if (!COMPACT.test(value)) return { ok: false, defect: 'serialization' };
  const first = value.indexOf('.');
  const second = value.indexOf('.', first + 1);
  const headerBytes = decodeBase64urlAlphabetChecked(value.slice(0, first));
  const payload = decodeBase64urlAlphabetChecked(value.slice(first + 1, second));
  const signature = decodeBase64urlAlphabetChecked(value.slice(second + 1));
  if (headerBytes === undefined || payload === undefined || signature === undefined) return { ok: false, defect: 'serialization' };
  const header = decodeJsonObject(headerBytes);
  if (header === undefined) return { ok: false, defect: 'header' };
  return { ok: true, header, payload, signature, signingInput: Buffer.from(value.slice(0, second), 'latin1') };
}

/*
 * The header rules every JWS tether reads shares (Session-Binding Proofs, DPoP proofs, access
 * tokens at resource servers and at the AS, subject and actor tokens, client assertions), in one
 * place so they cannot drift apart.
 */

/** `typ` as RFC 7515 section 4.1.9 compares it: lowercase, without the optional `application/` prefix. */
export function jwsTyp(header: Record<string, unknown>): string | undefined {
  if (typeof header.typ !== 'string') return undefined;
  const lower = header.typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
}

/** Whether `typ` names `expected` (given lowercase, without `application/`). */
export function hasTyp(header: Record<string, unknown>, expected: string): boolean {
  return jwsTyp(header) === expected;
}

/**
 * `crit` (an extension tether does not implement) or `b64` (RFC 7797: an unencoded payload, which
 * jose honours when `crit` lists it and ignores otherwise, so two parsers read two payloads).
 * Refused in every JWS.
 */
export function hasPayloadExtension(header: Record<string, unknown>): boolean {
  return 'crit' in header || 'b64' in header;
}

/** Header parameters that carry or point to a key or certificate (RFC 7515 sections 4.1.2-4.1.8). */
const KEY_PARAMETERS = ['jwk', 'jku', 'x5c', 'x5u', 'x5t', 'x5t#S256'] as const;

/** Whether the header carries or points to a key through a parameter other than those `allowed`. */
export function carriesKey(header: Record<string, unknown>, allowed: ReadonlyArray<(typeof KEY_PARAMETERS)[number]> = []): boolean {
  for (const name of KEY_PARAMETERS) if (name in header && !allowed.includes(name)) return true;
  return false;
}
