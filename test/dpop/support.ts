/**
 * DPoP test support: keys per algorithm, a raw proof forger (no library code in the signing path,
 * so headers and claims can be anything), and exact-outcome assertions.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { InvalidDpopProofError, UseDpopNonceError } from '@tether/core';
import { MemoryReplayStore, type ReplayStore } from '@tether/core/verifier';
import { assemble, type RawAlg } from '../unit/support/jws.js';

export { assemble, b64u, decodeSegment } from '../unit/support/jws.js';

export const NOW = 1_800_000_000;
export const HTU = 'https://rs.example.com/api/resource';
export const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl';

export interface TestKey {
  alg: RawAlg & ('ES256' | 'ES384' | 'EdDSA' | 'PS256' | 'RS256');
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: Record<string, string>;
}

function publicJwk(publicKey: KeyObject): Record<string, string> {
  const full = publicKey.export({ format: 'jwk' }) as Record<string, string>;
  const pick = (names: string[]) => Object.fromEntries(names.map((n) => [n, full[n] as string]));
  if (full.kty === 'EC') return pick(['kty', 'crv', 'x', 'y']);
  if (full.kty === 'OKP') return pick(['kty', 'crv', 'x']);
  return pick(['kty', 'n', 'e']);
}

const cache = new Map<string, TestKey>();

export function testKey(alg: TestKey['alg'], label = ''): TestKey {
  const id = `${alg}/${label}`;
  let key = cache.get(id);
  if (key === undefined) {
    const pair =
      alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : alg === 'ES384'
          ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
          : alg === 'EdDSA'
            ? generateKeyPairSync('ed25519')
            : generateKeyPairSync('rsa', { modulusLength: 2048 });
    key = { alg, privateKey: pair.privateKey, publicKey: pair.publicKey, jwk: publicJwk(pair.publicKey) };
    cache.set(id, key);
  }
  return key;
}

export function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { jti: randomUUID(), htm: 'GET', htu: HTU, iat: NOW, ...overrides };
}

/** A proof signed by hand with `key`, header and claims as given (defaults: a valid ES256 proof). */
export function forge(
  key: TestKey = testKey('ES256'),
  overrides: { header?: Record<string, unknown>; claims?: Record<string, unknown>; dropHeader?: string[]; dropClaims?: string[] } = {},
): string {
  const header: Record<string, unknown> = { typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk, ...overrides.header };
  for (const name of overrides.dropHeader ?? []) delete header[name];
  const payload = claims(overrides.claims);
  for (const name of overrides.dropClaims ?? []) delete payload[name];
  return assemble(header, payload, { alg: key.alg, key: key.privateKey });
}

export function store(): MemoryReplayStore {
  return new MemoryReplayStore({ now: () => NOW });
}

/** Options for verifyDpopProof matching `forge`'s defaults. */
export function verifyOptions(overrides: Record<string, unknown> = {}): { htm: string; htu: string; now: number; maxAge: number; clockSkew: number; replayStore: ReplayStore } & Record<string, unknown> {
  return { htm: 'GET', htu: HTU, now: NOW, maxAge: 60, clockSkew: 5, replayStore: store(), ...overrides };
}

/** Assert that `promise` rejects with exactly an InvalidDpopProofError carrying `reason`. */
export async function rejectsDpop(promise: Promise<unknown>, reason: string, message?: string): Promise<InvalidDpopProofError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  const what = message ?? 'proof';
  assert.ok(caught !== undefined, `${what}: expected InvalidDpopProofError(${reason}) but it verified`);
  assert.ok(caught instanceof InvalidDpopProofError, `${what}: expected InvalidDpopProofError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, `${what}: reason (${caught.description})`);
  assert.equal(caught.code, 'ERR_INVALID_DPOP_PROOF');
  assert.equal(caught.statusCode, 401);
  assert.equal(caught.error, 'invalid_dpop_proof');
  assert.match(caught.challenge, /^DPoP error="invalid_dpop_proof", error_description="DPoP proof verification failed: [^"\\]+", algs="[A-Za-z0-9 ]+"$/);
  return caught;
}

/** Assert that `promise` rejects with exactly a UseDpopNonceError carrying `nonce`. */
export async function rejectsNonce(promise: Promise<unknown>, nonce: string, reason: string): Promise<UseDpopNonceError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof UseDpopNonceError, `expected UseDpopNonceError, got ${String(caught)}`);
  assert.equal(caught.reason, reason);
  assert.equal(caught.code, 'ERR_USE_DPOP_NONCE');
  assert.equal(caught.statusCode, 401);
  assert.equal(caught.error, 'use_dpop_nonce');
  assert.equal(caught.nonce, nonce);
  assert.equal(caught.headers['dpop-nonce'], nonce);
  assert.match(caught.headers['www-authenticate'] ?? '', /^DPoP error="use_dpop_nonce", /);
  return caught;
}
