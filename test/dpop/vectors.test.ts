/**
 * RFC 9449 examples as vectors: the section 4.1 proof (Figure 2) and the section 7.1 proof
 * (Figure 13) verify with their embedded key at their own `iat`; their key's JWK thumbprint is the
 * `cnf.jkt` of section 6.1 (Figure 9); the 7.1 `ath` is the hash of the Figure 13 token. Also the
 * DPoP error classes and their challenges.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  InvalidDpopProofError,
  InvalidProofError,
  InvalidTokenError,
  TetherError,
  UseDpopNonceError,
  accessTokenHash,
  bindingRequirement,
  isTetherError,
  parseWwwAuthenticate,
} from '@tether/core';
import * as errorsSubpath from '@tether/core/errors';
import { DPOP_HEADER, DPOP_NONCE_HEADER, DPOP_TYP, jwkThumbprint, verifyDpopProof } from '@tether/core/dpop';
import { MemoryReplayStore } from '@tether/core/verifier';
import { decodeSegment, rejectsDpop } from './support.js';

const unfold = (s: string) => s.replace(/\\\n\s*/g, '');

// RFC 9449 Figure 2 (section 4.1), line folding per RFC 8792 removed.
const FIGURE_2 = unfold(`eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\\
 VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR\\
 nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE\\
 QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj\\
 oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia\\
 WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg\\
 4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg`);

// RFC 9449 Figure 13 (section 7.1).
const FIGURE_13_TOKEN = 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU';
const FIGURE_13 = unfold(`eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik\\
 VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR\\
 nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE\\
 QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj\\
 oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z\\
 WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF\\
 c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E\\
 OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA`);

// Figure 4 / Figure 14 header key, and Figure 9's cnf.jkt.
const EXAMPLE_JWK = { kty: 'EC', x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs', y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA', crv: 'P-256' };
const EXAMPLE_JKT = '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I';
const EXAMPLE_ATH = 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo';

test('constants: typ dpop+jwt, DPoP and DPoP-Nonce header names (RFC 9449 4.1, 4.2, 8)', () => {
  assert.equal(DPOP_TYP, 'dpop+jwt');
  assert.equal(DPOP_HEADER, 'DPoP');
  assert.equal(DPOP_NONCE_HEADER, 'DPoP-Nonce');
});

test('Figure 2 / Figure 4: the decoded header and claims are exactly the RFC text', () => {
  const [h, p] = FIGURE_2.split('.');
  assert.deepEqual(decodeSegment(h as string), { typ: 'dpop+jwt', alg: 'ES256', jwk: EXAMPLE_JWK });
  assert.deepEqual(decodeSegment(p as string), { jti: '-BwC3ESc6acc2lTc', htm: 'POST', htu: 'https://server.example.com/token', iat: 1562262616 });
});

test('Figure 2 verifies at its iat (token endpoint use: no access token, no ath)', async () => {
  const verified = await verifyDpopProof(FIGURE_2, {
    htm: 'POST',
    htu: 'https://server.example.com/token',
    now: 1562262616,
    replayStore: new MemoryReplayStore({ now: () => 1562262616 }),
  });
  assert.equal(verified.jkt, EXAMPLE_JKT);
  assert.deepEqual(verified.claims, { jti: '-BwC3ESc6acc2lTc', htm: 'POST', htu: 'https://server.example.com/token', iat: 1562262616 });
  assert.equal(verified.header.alg, 'ES256');
});

test('Figure 2 is refused today (iat 2019): stale', async () => {
  await rejectsDpop(verifyDpopProof(FIGURE_2, { htm: 'POST', htu: 'https://server.example.com/token', replayStore: new MemoryReplayStore() }), 'iat_stale');
});

test('JWK thumbprint of the example key is the Figure 9 cnf.jkt (RFC 7638 computed independently too)', async () => {
  assert.equal(await jwkThumbprint(EXAMPLE_JWK as never), EXAMPLE_JKT);
  const canonical = JSON.stringify({ crv: EXAMPLE_JWK.crv, kty: EXAMPLE_JWK.kty, x: EXAMPLE_JWK.x, y: EXAMPLE_JWK.y });
  assert.equal(createHash('sha256').update(canonical).digest('base64url'), EXAMPLE_JKT);
  assert.deepEqual(bindingRequirement({ jkt: EXAMPLE_JKT }), { kind: 'dpop', jkt: EXAMPLE_JKT });
});

test('Figure 13 / 14: ath is the hash of the Figure 13 token; the proof verifies with that token at its iat', async () => {
  assert.equal(accessTokenHash(FIGURE_13_TOKEN), EXAMPLE_ATH);
  const verified = await verifyDpopProof(FIGURE_13, {
    htm: 'GET',
    htu: 'https://resource.example.org/protectedresource',
    accessToken: FIGURE_13_TOKEN,
    now: 1562262618,
    replayStore: new MemoryReplayStore({ now: () => 1562262618 }),
  });
  assert.equal(verified.jkt, EXAMPLE_JKT);
  assert.deepEqual(verified.claims, {
    jti: 'e1j3V_bKic8-LAEB',
    htm: 'GET',
    htu: 'https://resource.example.org/protectedresource',
    iat: 1562262618,
    ath: EXAMPLE_ATH,
  });
});

test('Figure 13 with another token: ath_mismatch; with another method or URI: htm/htu mismatch; twice: jti_replay', async () => {
  const base = { htm: 'GET', htu: 'https://resource.example.org/protectedresource', accessToken: FIGURE_13_TOKEN, now: 1562262618 };
  const fresh = () => new MemoryReplayStore({ now: () => 1562262618 });
  await rejectsDpop(verifyDpopProof(FIGURE_13, { ...base, accessToken: 'another-token', replayStore: fresh() }), 'ath_mismatch');
  await rejectsDpop(verifyDpopProof(FIGURE_13, { ...base, htm: 'POST', replayStore: fresh() }), 'htm_mismatch');
  await rejectsDpop(verifyDpopProof(FIGURE_13, { ...base, htu: 'https://resource.example.org/other', replayStore: fresh() }), 'htu_mismatch');
  const once = fresh();
  await verifyDpopProof(FIGURE_13, { ...base, replayStore: once });
  await rejectsDpop(verifyDpopProof(FIGURE_13, { ...base, replayStore: once }), 'jti_replay');
});

test('InvalidDpopProofError: 401 invalid_dpop_proof, DPoP scheme, algs parameter, stable code, brand instanceof', () => {
  const e = new InvalidDpopProofError({ reason: 'signature', description: 'Public text', detail: 'private', algs: ['ES256', 'PS256'] });
  assert.equal(e.statusCode, 401);
  assert.equal(e.error, 'invalid_dpop_proof');
  assert.equal(e.code, 'ERR_INVALID_DPOP_PROOF');
  assert.equal(InvalidDpopProofError.code, 'ERR_INVALID_DPOP_PROOF');
  assert.equal(e.scheme, 'DPoP');
  assert.equal(e.challenge, 'DPoP error="invalid_dpop_proof", error_description="Public text", algs="ES256 PS256"');
  assert.deepEqual(e.headers, { 'www-authenticate': e.challenge });
  assert.deepEqual(e.toJSON(), { error: 'invalid_dpop_proof', error_description: 'Public text' });
  assert.ok(e instanceof InvalidDpopProofError && e instanceof TetherError && isTetherError(e));
  assert.ok(!(e instanceof InvalidProofError) && !(e instanceof InvalidTokenError) && !(e instanceof UseDpopNonceError));
  assert.ok(e instanceof errorsSubpath.InvalidDpopProofError);
  // A structurally identical object from "another copy" of the package is recognised by its brand.
  const foreign = Object.defineProperty({ code: 'ERR_INVALID_DPOP_PROOF' }, Symbol.for('tether.error'), { value: true });
  assert.ok(foreign instanceof InvalidDpopProofError);
  assert.deepEqual(parseWwwAuthenticate(e.challenge), [{ scheme: 'dpop', params: { error: 'invalid_dpop_proof', error_description: 'Public text', algs: 'ES256 PS256' } }]);
});

test('UseDpopNonceError: 401 use_dpop_nonce, DPoP scheme, DPoP-Nonce in headers (RFC 9449 Figure 24)', () => {
  const e = new UseDpopNonceError({ reason: 'nonce_missing', description: 'Resource server requires nonce in DPoP proof', nonce: 'eyJ7S_zG.eyJH0-Z.HX4w-7v' });
  assert.equal(e.statusCode, 401);
  assert.equal(e.error, 'use_dpop_nonce');
  assert.equal(e.code, 'ERR_USE_DPOP_NONCE');
  assert.equal(e.nonce, 'eyJ7S_zG.eyJH0-Z.HX4w-7v');
  assert.equal(e.challenge, 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"');
  assert.deepEqual(e.headers, { 'dpop-nonce': 'eyJ7S_zG.eyJH0-Z.HX4w-7v', 'www-authenticate': e.challenge });
  assert.ok(e instanceof UseDpopNonceError && !(e instanceof InvalidDpopProofError));
});

test('asDpopRefusal: a copy addressed to DPoP with algs; the original is untouched; class, code and headers kept', async () => {
  const { asDpopRefusal } = await import('@tether/core/dpop');
  const original = new InvalidTokenError({ reason: 'expired', description: 'The access token expired' });
  const copy = asDpopRefusal(original, ['ES256', 'EdDSA']);
  assert.equal(original.challenge, 'Bearer error="invalid_token", error_description="The access token expired"');
  assert.equal(copy.challenge, 'DPoP error="invalid_token", error_description="The access token expired", algs="ES256 EdDSA"');
  assert.ok(copy instanceof InvalidTokenError && isTetherError(copy));
  assert.equal(copy.code, 'ERR_INVALID_TOKEN');
  assert.equal(copy.statusCode, 401);
  assert.equal(copy.reason, 'expired');
  assert.deepEqual(copy.headers, { 'www-authenticate': copy.challenge });
  const nonce = new UseDpopNonceError({ reason: 'nonce_missing', description: 'x', nonce: 'n' });
  assert.equal(asDpopRefusal(nonce, ['ES256']), nonce, 'already DPoP: returned as is');
});
