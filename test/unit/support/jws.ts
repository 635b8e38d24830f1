/**
 * Test support for hand-assembled JWS: base64url helpers, raw signing with node:crypto (no jose in
 * the signing path, so headers and payloads can be anything, including invalid JSON or duplicate
 * members), loading of real dev-PKI keys, and an exact-outcome assertion for proof failures.
 */
import assert from 'node:assert/strict';
import { X509Certificate, constants, createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { InvalidProofError } from '@tether/core';
import type { KeyType } from '@tether/pki';
import { testPki } from '../../helpers/pki.js';

/** base64url (no padding) of bytes, a string (UTF-8) or a JSON-serialisable value. */
export function b64u(value: Uint8Array | string | object): string {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64url');
  if (typeof value === 'string') return Buffer.from(value, 'utf8').toString('base64url');
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/** Decode one compact-serialization segment as JSON (no validation). */
export function decodeSegment(segment: string): unknown {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

/** Keys of a JSON object segment, in serialization order. */
export function segmentKeys(segment: string): string[] {
  return Object.keys(decodeSegment(segment) as object);
}

export type RawAlg = 'ES256' | 'ES384' | 'ES512' | 'EdDSA' | 'PS256' | 'RS256' | 'HS256';

/** JWS signature of `input` per RFC 7518 (ECDSA as raw r||s), computed with node:crypto. */
export function rawSign(alg: RawAlg, key: KeyObject, input: string | Buffer): Buffer {
  const data = typeof input === 'string' ? Buffer.from(input, 'ascii') : input;
  switch (alg) {
    case 'ES256':
      return cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
    case 'ES384':
      return cryptoSign('sha384', data, { key, dsaEncoding: 'ieee-p1363' });
    case 'ES512':
      return cryptoSign('sha512', data, { key, dsaEncoding: 'ieee-p1363' });
    case 'EdDSA':
      return cryptoSign(null, data, key);
    case 'PS256':
      return cryptoSign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    case 'RS256':
      return cryptoSign('sha256', data, key);
    case 'HS256':
      throw new TypeError('use hmacSign for HS256');
  }
}

/**
 * Assemble `header.payload.signature`. Header and payload may be objects (JSON-serialised), raw
 * JSON text, or raw bytes. The signature is computed over the exact ASCII signing input.
 */
export function assemble(
  header: object | string | Buffer,
  payload: object | string | Buffer,
  signer: { alg: RawAlg; key: KeyObject } | ((signingInput: string) => Buffer),
): string {
  const h = b64u(header);
  const p = b64u(payload);
  const input = `${h}.${p}`;
  const sig = typeof signer === 'function' ? signer(input) : rawSign(signer.alg, signer.key, input);
  return `${input}.${b64u(sig)}`;
}

export interface TestIdentity {
  cert: X509Certificate;
  key: KeyObject;
  pem: { cert: string; key: string };
}

/** The `client`, `attacker` and `other` identities of the shared dev PKI for a key type. */
export async function identities(keyType: KeyType = 'p256'): Promise<Record<'client' | 'attacker' | 'other', TestIdentity>> {
  const pki = await testPki(keyType);
  const load = (name: 'client' | 'attacker' | 'other'): TestIdentity => {
    const issued = pki.clients[name];
    assert.ok(issued, `dev PKI has no ${name}`);
    return { cert: new X509Certificate(issued.cert), key: createPrivateKey(issued.key), pem: issued };
  };
  return { client: load('client'), attacker: load('attacker'), other: load('other') };
}

/** Assert that `promise` rejects with exactly an `InvalidProofError` carrying `reason`. */
export async function rejectsProof(promise: Promise<unknown>, reason: string, message?: string): Promise<InvalidProofError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, `${message ?? 'proof'}: expected InvalidProofError(${reason}) but it verified`);
  assert.ok(caught instanceof InvalidProofError, `${message ?? 'proof'}: expected InvalidProofError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, `${message ?? 'proof'}: reason`);
  assert.equal(caught.code, 'ERR_INVALID_PROOF');
  assert.equal(caught.statusCode, 401);
  assert.equal(caught.error, 'invalid_proof');
  assert.match(caught.challenge, /^Bearer error="invalid_proof", error_description="Session-Binding Proof verification failed: [^"\\]+"$/);
  return caught;
}

/** A fixed synthetic exporter value (32 bytes) and a different one. */
export const EKM = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
export const OTHER_EKM = Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff', 'hex');

/** Draft section 2.3.2 example time. */
export const IAT = 1710820000;

/** DER SubjectPublicKeyInfo of a key (the "public key bytes" of HMAC key-confusion attacks). */
export function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}
