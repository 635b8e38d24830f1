/**
 * Signing and verifying this server's own access tokens with `node:crypto` directly (about three
 * times cheaper than going through WebCrypto). Only the three algorithms the server signs with
 * are handled, and verification only ever uses this server's published keys, chosen by `kid`.
 * Client assertions and anything else foreign go through jose. Decoding and header rules are
 * core's (decodeCompactJws, hasTyp, hasPayloadExtension, carriesKey), shared by every JWS tether reads.
 */
import { sign, type KeyObject } from 'node:crypto';
import { carriesKey, decodeCompactJws, hasPayloadExtension, hasTyp, verifyJwsSignature } from '@tether/core/proof';
import type { SigningAlgorithm } from './config.js';

function digestOf(alg: SigningAlgorithm): string | null {
  return alg === 'EdDSA' ? null : 'sha256';
}

const encode = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');

/** A compact JWS over `payload` with header `{alg, typ: 'at+jwt', kid}`. */
export function signAccessToken(alg: SigningAlgorithm, kid: string, key: KeyObject, payload: Record<string, unknown>): string {
  const input = `${encode({ alg, typ: 'at+jwt', kid })}.${encode(payload)}`;
  const signature = sign(digestOf(alg), Buffer.from(input, 'ascii'), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${signature.toString('base64url')}`;
}

export interface VerificationKey {
  alg: SigningAlgorithm;
  key: KeyObject;
}

export type VerifyResult = { ok: true; payload: Record<string, unknown> } | { ok: false; reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function jsonObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    // Fatal UTF-8 decoding (RFC 8725 3.7): Buffer#toString would turn invalid bytes into U+FFFD.
    const value: unknown = JSON.parse(utf8.decode(bytes));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Verify the signature and header of a token this server signed. Claims are the caller's to check. */
export function verifyAccessTokenSignature(token: string, keys: ReadonlyMap<string, VerificationKey>): VerifyResult {
  const jws = decodeCompactJws(token);
  if (!jws.ok) return { ok: false, reason: 'malformed' };
  const { header } = jws;
  if (!hasTyp(header, 'at+jwt')) return { ok: false, reason: 'typ' };
  if (hasPayloadExtension(header) || carriesKey(header)) return { ok: false, reason: 'header' };
  if (typeof header.kid !== 'string') return { ok: false, reason: 'unknown_key' };
  const entry = keys.get(header.kid);
  if (entry === undefined) return { ok: false, reason: 'unknown_key' };
  if (header.alg !== entry.alg) return { ok: false, reason: 'alg' };
  if (!verifyJwsSignature(entry.alg, entry.key, jws.signingInput, jws.signature)) return { ok: false, reason: 'signature' };
  const payload = jsonObject(jws.payload);
  if (payload === undefined) return { ok: false, reason: 'malformed' };
  return { ok: true, payload };
}
