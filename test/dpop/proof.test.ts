/**
 * createDpopProof / verifyDpopProof: round trips for every supported algorithm, decoded and
 * checked field by field, and the attacks of RFC 9449 sections 4.3 and 11: alg none and HMAC,
 * private or invalid keys, typ confusion, key references instead of an embedded jwk, htm/htu
 * mismatches with RFC 3986 normalization edge cases, iat window, jti replay, replay store failure,
 * ath, and nonces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, generateKeyPairSync, verify as cryptoVerify, constants, type KeyObject } from 'node:crypto';
import { ConfigurationError, accessTokenHash } from '@tether/core';
import {
  createDpopProof,
  dpopReplayKey,
  jwkThumbprint,
  normalizeHtu,
  verifyDpopProof,
  type DpopAlgorithm,
  type DpopNonceSource,
} from '@tether/core/dpop';
import type { ReplayStore } from '@tether/core/verifier';
import { HTU, NOW, TOKEN, assemble, b64u, claims, decodeSegment, forge, rejectsDpop, rejectsNonce, store, testKey, verifyOptions, type TestKey } from './support.js';

function independentVerify(alg: DpopAlgorithm, key: KeyObject, input: string, sig: Buffer): boolean {
  const data = Buffer.from(input, 'ascii');
  switch (alg) {
    case 'ES256':
      return cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'ES384':
      return cryptoVerify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'EdDSA':
    case 'Ed25519':
      return cryptoVerify(null, data, key, sig);
    case 'PS256':
      return cryptoVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
    case 'RS256':
      return cryptoVerify('sha256', data, key, sig);
  }
}

const ROUND_TRIPS: Array<{ key: TestKey['alg']; alg: DpopAlgorithm }> = [
  { key: 'ES256', alg: 'ES256' },
  { key: 'ES384', alg: 'ES384' },
  { key: 'EdDSA', alg: 'EdDSA' },
  { key: 'EdDSA', alg: 'Ed25519' },
  { key: 'RS256', alg: 'RS256' },
  { key: 'PS256', alg: 'PS256' },
];

test('round trip for ES256, ES384, EdDSA, Ed25519, RS256, PS256: header, claims and signature checked independently', async () => {
  for (const { key: keyAlg, alg } of ROUND_TRIPS) {
    const key = testKey(keyAlg);
    const proof = await createDpopProof({ privateKey: key.privateKey, alg, htm: 'POST', htu: `${HTU}?q=1#frag`, accessToken: TOKEN, nonce: 'n-1', iat: NOW, jti: 'jti-1' });
    const [h, p, s] = proof.split('.') as [string, string, string];
    assert.deepEqual(decodeSegment(h), { typ: 'dpop+jwt', alg, jwk: key.jwk }, alg);
    assert.deepEqual(decodeSegment(p), { jti: 'jti-1', htm: 'POST', htu: HTU, iat: NOW, ath: accessTokenHash(TOKEN), nonce: 'n-1' }, alg);
    assert.equal(accessTokenHash(TOKEN), createHash('sha256').update(TOKEN, 'ascii').digest('base64url'));
    assert.ok(independentVerify(alg, key.publicKey, `${h}.${p}`, Buffer.from(s, 'base64url')), `${alg}: signature verifies with node:crypto`);
    const verified = await verifyDpopProof(proof, verifyOptions({ htm: 'POST', accessToken: TOKEN, nonce: 'n-1' }));
    assert.equal(verified.header.alg, alg);
    assert.deepEqual(verified.header.jwk, key.jwk);
    assert.equal(verified.jkt, await jwkThumbprint(key.publicKey));
    assert.equal(verified.jkt, await jwkThumbprint(key.privateKey), 'thumbprint of the private key is that of its public half');
    assert.deepEqual(verified.claims, { jti: 'jti-1', htm: 'POST', htu: HTU, iat: NOW, ath: accessTokenHash(TOKEN), nonce: 'n-1' });
  }
});

test('defaults: random 128-bit jti, iat now, no ath without a token, one proof per call', async () => {
  const key = testKey('ES256');
  const a = await createDpopProof({ privateKey: key.privateKey, htm: 'GET', htu: HTU });
  const b = await createDpopProof({ privateKey: key.privateKey, htm: 'GET', htu: HTU });
  const ca = decodeSegment(a.split('.')[1] as string) as Record<string, unknown>;
  const cb = decodeSegment(b.split('.')[1] as string) as Record<string, unknown>;
  assert.notEqual(ca.jti, cb.jti);
  assert.equal(Buffer.from(ca.jti as string, 'base64url').length, 16);
  assert.ok(Math.abs((ca.iat as number) - Date.now() / 1000) < 5);
  assert.deepEqual(Object.keys(ca).sort(), ['htm', 'htu', 'iat', 'jti']);
});

test('createDpopProof refuses keys and options that cannot make a valid proof', async () => {
  const es = testKey('ES256');
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  await assert.rejects(createDpopProof({ privateKey: weak.privateKey, htm: 'GET', htu: HTU }), ConfigurationError);
  await assert.rejects(createDpopProof({ privateKey: es.publicKey, htm: 'GET', htu: HTU }), ConfigurationError);
  await assert.rejects(createDpopProof({ privateKey: es.privateKey, alg: 'PS256', htm: 'GET', htu: HTU }), ConfigurationError);
  await assert.rejects(createDpopProof({ privateKey: es.privateKey, publicJwk: testKey('ES256', 'other').jwk, htm: 'GET', htu: HTU }), ConfigurationError);
  const secp256k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  await assert.rejects(createDpopProof({ privateKey: secp256k1.privateKey, htm: 'GET', htu: HTU }), ConfigurationError);
});

test('alg none, HS256 (with the jwk as HMAC secret), and algorithms that do not match the jwk are refused', async () => {
  const key = testKey('ES256');
  const noneProof = `${b64u({ typ: 'dpop+jwt', alg: 'none', jwk: key.jwk })}.${b64u(claims())}.`;
  await rejectsDpop(verifyDpopProof(noneProof, verifyOptions()), 'malformed', 'alg none, empty signature');
  const noneSigned = `${b64u({ typ: 'dpop+jwt', alg: 'none', jwk: key.jwk })}.${b64u(claims())}.${b64u('x')}`;
  await rejectsDpop(verifyDpopProof(noneSigned, verifyOptions()), 'alg', 'alg none');
  for (const secret of [JSON.stringify(key.jwk), key.publicKey.export({ type: 'spki', format: 'der' }) as Buffer]) {
    const hs = assemble({ typ: 'dpop+jwt', alg: 'HS256', jwk: key.jwk }, claims(), (input) => createHmac('sha256', secret).update(input).digest());
    await rejectsDpop(verifyDpopProof(hs, verifyOptions()), 'alg', 'HS256');
  }
  const octJwk = assemble({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: b64u('secret') } }, claims(), (input) => createHmac('sha256', 'secret').update(input).digest());
  await rejectsDpop(verifyDpopProof(octJwk, verifyOptions({ algorithms: undefined })), 'alg', 'HS256 with an oct jwk');
  // ES384 header with a P-256 key, RS256 with an EC key, EdDSA with an RSA key.
  await rejectsDpop(verifyDpopProof(forge(key, { header: { alg: 'ES384' } }), verifyOptions()), 'alg', 'ES384 on P-256');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { alg: 'RS256' } }), verifyOptions()), 'alg', 'RS256 on EC');
  await rejectsDpop(verifyDpopProof(forge(testKey('RS256'), { header: { alg: 'EdDSA' } }), verifyOptions()), 'alg', 'EdDSA on RSA');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, alg: 'ES384' } } }), verifyOptions()), 'alg', 'jwk.alg differs');
  // Narrowed policy: ES256 proofs refused when only PS256 is acceptable.
  await rejectsDpop(verifyDpopProof(forge(key), verifyOptions({ algorithms: ['PS256'] })), 'alg', 'policy');
});

test('jwk with private members, on no curve, of the wrong size, or of unsupported types is refused', async () => {
  const key = testKey('ES256');
  const full = key.privateKey.export({ format: 'jwk' }) as Record<string, string>;
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: full } }), verifyOptions()), 'jwk_private', 'EC jwk with d');
  const rsa = testKey('RS256');
  const rsaFull = rsa.privateKey.export({ format: 'jwk' }) as Record<string, string>;
  await rejectsDpop(verifyDpopProof(forge(rsa, { header: { jwk: rsaFull } }), verifyOptions()), 'jwk_private', 'RSA jwk with d, p, q');
  await rejectsDpop(verifyDpopProof(forge(rsa, { header: { jwk: { ...rsa.jwk, p: rsaFull.p } } }), verifyOptions()), 'jwk_private', 'RSA jwk with p only');
  const ed = testKey('EdDSA');
  await rejectsDpop(verifyDpopProof(forge(ed, { header: { jwk: ed.privateKey.export({ format: 'jwk' }) } }), verifyOptions()), 'jwk_private', 'OKP jwk with d');

  // A point not on P-256: y + 1. Signed with the real key; must fail at import, before the signature.
  const y = Buffer.from(key.jwk.y as string, 'base64url');
  y[31] = (y[31] as number) ^ 1;
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, y: y.toString('base64url') } } }), verifyOptions()), 'jwk', 'point not on curve');
  // The all-zero point (not on the curve) and coordinates of the wrong length.
  const zero = Buffer.alloc(32).toString('base64url');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, x: zero, y: zero } } }), verifyOptions()), 'jwk', 'zero point');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, x: Buffer.alloc(31, 1).toString('base64url') } } }), verifyOptions()), 'jwk', 'short x');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, crv: 'P-384' } } }), verifyOptions()), 'jwk', 'crv P-384 with P-256 coordinates');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, crv: 'secp256k1' } } }), verifyOptions()), 'jwk', 'secp256k1');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, kty: 'RSA' } } }), verifyOptions()), 'jwk', 'kty RSA with EC members');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, use: 'enc' } } }), verifyOptions()), 'jwk', 'use enc');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: 'not-an-object' } }), verifyOptions()), 'jwk', 'jwk string');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: [key.jwk] } }), verifyOptions()), 'jwk', 'jwk array');
  // Non-canonical base64url coordinate (stray low bits in the last character).
  const x = key.jwk.x as string;
  const last = x[x.length - 1] as string;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const tweaked = x.slice(0, -1) + alphabet[(alphabet.indexOf(last) & ~3) | ((alphabet.indexOf(last) + 1) & 3)];
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, x: tweaked } } }), verifyOptions()), 'jwk', 'non-canonical x');

  // RSA 1024: a genuine, correctly signed proof with a weak key.
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const weakJwk = weak.publicKey.export({ format: 'jwk' }) as Record<string, string>;
  const weakProof = assemble({ typ: 'dpop+jwt', alg: 'RS256', jwk: { kty: 'RSA', n: weakJwk.n, e: weakJwk.e } }, claims(), { alg: 'RS256', key: weak.privateKey });
  await rejectsDpop(verifyDpopProof(weakProof, verifyOptions()), 'jwk_weak', 'RSA 1024');
});

test('typ confusion: Session-Binding Proof, access token and other typs are refused (RFC 9449 11.5)', async () => {
  const key = testKey('ES256');
  for (const typ of ['tls-binding-proof+jwt', 'at+jwt', 'application/at+jwt', 'JWT', 'jwt', '', 'dpop', 'dpop+jwt ', 'x-dpop+jwt', 'dpop+jwt+jwt']) {
    await rejectsDpop(verifyDpopProof(forge(key, { header: { typ } }), verifyOptions()), 'typ', `typ ${JSON.stringify(typ)}`);
  }
  await rejectsDpop(verifyDpopProof(forge(key, { dropHeader: ['typ'] }), verifyOptions()), 'typ', 'no typ');
  // RFC 7515 4.1.9: media type names are case-insensitive and "application/" may be present.
  await verifyDpopProof(forge(key, { header: { typ: 'application/DPoP+JWT' } }), verifyOptions());
});

test('key references instead of an embedded jwk (jku, x5c, x5u, x5t, kid only) and crit are refused', async () => {
  const key = testKey('ES256');
  const reasons: Array<[Record<string, unknown>, string[], string]> = [
    [{ jku: 'https://attacker.example/jwks' }, ['jwk'], 'header_key'],
    [{ jku: 'https://attacker.example/jwks' }, [], 'header_key'],
    [{ x5c: ['MIIB'] }, ['jwk'], 'header_key'],
    [{ x5c: ['MIIB'] }, [], 'header_key'],
    [{ x5u: 'https://attacker.example/cert' }, ['jwk'], 'header_key'],
    [{ x5t: 'abc' }, [], 'header_key'],
    [{ 'x5t#S256': 'abc' }, [], 'header_key'],
    [{ kid: 'k1' }, ['jwk'], 'jwk_missing'],
    [{}, ['jwk'], 'jwk_missing'],
    [{ crit: ['exp'], exp: 1 }, [], 'crit'],
    [{ b64: false }, [], 'crit'],
  ];
  for (const [header, dropHeader, reason] of reasons) {
    await rejectsDpop(verifyDpopProof(forge(key, { header, dropHeader }), verifyOptions()), reason, JSON.stringify(header));
  }
  // kid alongside a jwk is harmless and accepted; the jwk is the key.
  await verifyDpopProof(forge(key, { header: { kid: 'k1' } }), verifyOptions());
});

test('malformed serializations and tampered signatures are refused', async () => {
  const key = testKey('ES256');
  const good = forge(key);
  const [h, p, s] = good.split('.') as [string, string, string];
  for (const bad of ['', 'a.b', `${h}.${p}`, `${h}.${p}.${s}.x`, `${h}=.${p}.${s}`, `${h}.${p}.${s}=`, ` ${good}`, 'x'.repeat(9000)]) {
    await rejectsDpop(verifyDpopProof(bad, verifyOptions()), 'malformed', JSON.stringify(bad.slice(0, 30)));
  }
  await rejectsDpop(verifyDpopProof(`${h}.${b64u(claims({ htm: 'POST' }))}.${s}`, verifyOptions({ htm: 'POST' })), 'signature', 'payload swapped');
  const other = forge(testKey('ES256', 'other'));
  await rejectsDpop(verifyDpopProof(`${h}.${p}.${other.split('.')[2] as string}`, verifyOptions()), 'signature', 'signature of another key');
  await rejectsDpop(verifyDpopProof(assemble({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }, 'not json', { alg: 'ES256', key: key.privateKey }), verifyOptions()), 'malformed', 'payload not JSON');
  await rejectsDpop(verifyDpopProof(assemble({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }, '[1]', { alg: 'ES256', key: key.privateKey }), verifyOptions()), 'malformed', 'payload array');
});

test('required claims: jti, htm, htu, iat present and well-typed; oversized jti refused (RFC 9449 11.1)', async () => {
  const key = testKey('ES256');
  for (const name of ['jti', 'htm', 'htu', 'iat']) {
    await rejectsDpop(verifyDpopProof(forge(key, { dropClaims: [name] }), verifyOptions()), 'claims', `no ${name}`);
  }
  const bad: Array<Record<string, unknown>> = [
    { jti: '' },
    { jti: 'x'.repeat(257) },
    { jti: 7 },
    { htm: 'G ET' },
    { htm: ['GET'] },
    { htu: 7 },
    { htu: '' },
    { iat: '1800000000' },
    { iat: -1 },
    { ath: 'short' },
    { ath: 7 },
    { nonce: 'has space' },
    { nonce: 'quote"' },
    { nonce: 7 },
  ];
  for (const c of bad) await rejectsDpop(verifyDpopProof(forge(key, { claims: c }), verifyOptions()), 'claims', JSON.stringify(c));
  await verifyDpopProof(forge(key, { claims: { jti: 'x'.repeat(256) } }), verifyOptions());
});

test('htm is compared exactly (case-sensitive, RFC 9110 9.1)', async () => {
  const key = testKey('ES256');
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { htm: 'POST' } }), verifyOptions()), 'htm_mismatch');
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { htm: 'get' } }), verifyOptions()), 'htm_mismatch');
  await verifyDpopProof(forge(key, { claims: { htm: 'PATCH' } }), verifyOptions({ htm: 'PATCH' }));
});

test('htu normalization (RFC 3986 6.2.2, 6.2.3): equivalent forms match, others do not; query and fragment ignored', async () => {
  const key = testKey('ES256');
  const request = 'https://rs.example.com/api/resource';
  const matching = [
    'https://rs.example.com/api/resource',
    'HTTPS://RS.EXAMPLE.COM/api/resource',
    'https://rs.example.com:443/api/resource',
    'https://rs.example.com/api/resource?x=1',
    'https://rs.example.com/api/resource#frag',
    'https://rs.example.com/api/resource?x=1#frag',
    'https://rs.example.com/api/./resource',
    'https://rs.example.com/api/other/../resource',
    'https://rs.example.com/%61pi/resource',
    'https://rs.example.com/api/resourc%65',
  ];
  for (const htu of matching) {
    await verifyDpopProof(forge(key, { claims: { htu } }), verifyOptions({ htu: request }));
  }
  // The request side is normalized the same way (query of the request ignored, default port, case).
  await verifyDpopProof(forge(key), verifyOptions({ htu: 'https://RS.example.com:443/api/resource?page=2' }));
  const mismatching = [
    'http://rs.example.com/api/resource',
    'https://rs.example.com:8443/api/resource',
    'https://rs.example.com/api/resource/',
    'https://rs.example.com/API/resource',
    'https://rs.example.com/api/resource2',
    'https://rs.example.com/api',
    'https://other.example.com/api/resource',
    'https://rs.example.com.attacker.example/api/resource',
    'https://user@rs.example.com/api/resource',
    '/api/resource',
    'rs.example.com/api/resource',
    'wss://rs.example.com/api/resource',
    'https://rs.example.com/api/resource\n',
    'https://rs.example.com\\api\\resource',
    ' https://rs.example.com/api/resource',
    'https://rs.example.com/api%2Fresource',
    'not a uri',
  ];
  for (const htu of mismatching) {
    await rejectsDpop(verifyDpopProof(forge(key, { claims: { htu } }), verifyOptions({ htu: request })), 'htu_mismatch', htu);
  }
  assert.equal(normalizeHtu('HTTPS://Rs.Example.COM:443/a/%7e/./b/../c?q#f'), 'https://rs.example.com/a/~/c');
  assert.equal(normalizeHtu('https://rs.example.com/a%2fb'), 'https://rs.example.com/a%2Fb');
  assert.equal(normalizeHtu('http://rs.example.com:80'), 'http://rs.example.com/');
  assert.equal(normalizeHtu('https://[::1]:443/x'), 'https://[::1]/x');
});

test('iat window: stale and future proofs refused at the edges, inside accepted', async () => {
  const key = testKey('ES256');
  // maxAge 60, clockSkew 5: accepted iat in [NOW - 65, NOW + 5].
  await verifyDpopProof(forge(key, { claims: { iat: NOW - 65 } }), verifyOptions());
  await verifyDpopProof(forge(key, { claims: { iat: NOW + 5 } }), verifyOptions());
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { iat: NOW - 66 } }), verifyOptions()), 'iat_stale');
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { iat: NOW + 6 } }), verifyOptions()), 'iat_future');
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { iat: NOW + 86400 * 365 } }), verifyOptions()), 'iat_future', 'pre-generated proof (RFC 9449 11.2)');
});

test('jti replay: a proof is single-use; the store key is namespaced and hashed; expiry covers the acceptance window', async () => {
  const key = testKey('ES256');
  const recorded: Array<[string, number]> = [];
  const inner = store();
  const spy: ReplayStore = { use: (jti, exp) => (recorded.push([jti, exp]), inner.use(jti, exp)) };
  const proof = forge(key, { claims: { jti: 'once' } });
  await verifyDpopProof(proof, verifyOptions({ replayStore: spy }));
  await rejectsDpop(verifyDpopProof(proof, verifyOptions({ replayStore: spy })), 'jti_replay');
  // Another proof reusing the jti (fresh signature, other htm) is also refused.
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { jti: 'once', htm: 'POST' } }), verifyOptions({ htm: 'POST', replayStore: spy })), 'jti_replay');
  assert.equal(dpopReplayKey('once'), `dpop:${createHash('sha256').update('once').digest('base64url')}`);
  // Used while now < expiresAt: through iat + maxAge + skew inclusive, the last second the proof passes.
  assert.deepEqual(recorded[0], [dpopReplayKey('once'), NOW + 60 + 5 + 1]);
  // A failed proof does not burn its jti.
  const s = store();
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { jti: 'j2', htm: 'POST' } }), verifyOptions({ replayStore: s })), 'htm_mismatch');
  await verifyDpopProof(forge(key, { claims: { jti: 'j2' } }), verifyOptions({ replayStore: s }));
});

test('replay store failure fails closed (throwing or rejecting store, and a store that answers non-boolean)', async () => {
  const key = testKey('ES256');
  const throwing: ReplayStore = { use: () => { throw new Error('redis down'); } };
  const rejecting: ReplayStore = { use: () => Promise.reject(new Error('timeout')) };
  const error = await rejectsDpop(verifyDpopProof(forge(key), verifyOptions({ replayStore: throwing })), 'replay_store_unavailable');
  assert.ok(!error.challenge.includes('redis'));
  await rejectsDpop(verifyDpopProof(forge(key), verifyOptions({ replayStore: rejecting })), 'replay_store_unavailable');
  const odd = { use: () => 'yes' } as unknown as ReplayStore;
  await rejectsDpop(verifyDpopProof(forge(key), verifyOptions({ replayStore: odd })), 'jti_replay');
});

test('ath: required when an access token is presented, must be the hash of that token', async () => {
  const key = testKey('ES256');
  await rejectsDpop(verifyDpopProof(forge(key), verifyOptions({ accessToken: TOKEN })), 'ath_missing');
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { ath: accessTokenHash('another.token') } }), verifyOptions({ accessToken: TOKEN })), 'ath_mismatch');
  await verifyDpopProof(forge(key, { claims: { ath: accessTokenHash(TOKEN) } }), verifyOptions({ accessToken: TOKEN }));
});

test('nonce: required and missing, wrong, or accepted; exact value or a nonce source; a failing check fails closed', async () => {
  const key = testKey('ES256');
  await rejectsNonce(verifyDpopProof(forge(key), verifyOptions({ nonce: 'n-1' })), 'n-1', 'nonce_missing');
  await rejectsNonce(verifyDpopProof(forge(key, { claims: { nonce: 'n-0' } }), verifyOptions({ nonce: 'n-1' })), 'n-1', 'nonce_mismatch');
  await verifyDpopProof(forge(key, { claims: { nonce: 'n-1' } }), verifyOptions({ nonce: 'n-1' }));
  // A nonce the server did not ask for is ignored.
  await verifyDpopProof(forge(key, { claims: { nonce: 'unsolicited' } }), verifyOptions());

  let issued = 0;
  const source: DpopNonceSource = { issue: () => `fresh-${++issued}`, check: async (n) => n === 'good' };
  await rejectsNonce(verifyDpopProof(forge(key), verifyOptions({ nonce: source })), 'fresh-1', 'nonce_missing');
  await rejectsNonce(verifyDpopProof(forge(key, { claims: { nonce: 'stale' } }), verifyOptions({ nonce: source })), 'fresh-2', 'nonce_mismatch');
  await verifyDpopProof(forge(key, { claims: { nonce: 'good' } }), verifyOptions({ nonce: source }));
  const broken: DpopNonceSource = { issue: () => 'x', check: () => { throw new Error('nonce db down'); } };
  await rejectsDpop(verifyDpopProof(forge(key, { claims: { nonce: 'good' } }), verifyOptions({ nonce: broken })), 'nonce_check_unavailable');
  // A proof refused for its nonce does not burn its jti: the retry may reuse... a new proof anyway, but the store stays clean.
  const s = store();
  await rejectsNonce(verifyDpopProof(forge(key, { claims: { jti: 'n-jti' } }), verifyOptions({ nonce: 'n-1', replayStore: s })), 'n-1', 'nonce_missing');
  assert.equal(s.size, 0);
});
