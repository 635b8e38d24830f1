/**
 * DpopKeyCache (issue 13 item 3): a DPoP key is imported and thumbprinted once per exact JWK, not
 * once per proof; the cache is bounded; a hit never skips the per-proof checks of the `jwk`'s
 * other members (private material, `use`); what an import refuses is never cached; a different key
 * (even one differing in a single coordinate) is a different entry and verifies only its own proofs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigurationError, createSessionBoundVerifier } from '@tether/core';
import { DpopKeyCache, jwkThumbprint, verifyDpopProof } from '@tether/core/dpop';
import { forge, rejectsDpop, testKey, verifyOptions } from './support.js';

test('one import per exact JWK: the second proof with the same key returns the very same key object and thumbprint', async () => {
  const keyCache = new DpopKeyCache(4);
  const key = testKey('ES256');
  const first = await verifyDpopProof(forge(key), verifyOptions({ keyCache }));
  const second = await verifyDpopProof(forge(key), verifyOptions({ keyCache }));
  assert.equal(keyCache.size, 1);
  assert.equal(second.key, first.key, 'the imported KeyObject is reused');
  assert.equal(second.jkt, await jwkThumbprint(key.jwk));
  assert.deepEqual(second.header.jwk, key.jwk);
});

test('members other than the key (kid, alg) do not split entries; a different key does, and cannot verify the first key\'s proofs', async () => {
  const keyCache = new DpopKeyCache(4);
  const a = testKey('ES256', 'cache-a');
  const b = testKey('ES256', 'cache-b');
  await verifyDpopProof(forge(a), verifyOptions({ keyCache }));
  await verifyDpopProof(forge(a, { header: { jwk: { ...a.jwk, kid: 'k1', alg: 'ES256' } } }), verifyOptions({ keyCache }));
  assert.equal(keyCache.size, 1);
  const vb = await verifyDpopProof(forge(b), verifyOptions({ keyCache }));
  assert.equal(keyCache.size, 2);
  assert.equal(vb.jkt, await jwkThumbprint(b.jwk));
  // a's cached key must not verify a proof that names b's key but is signed by a (and the reverse).
  await rejectsDpop(verifyDpopProof(forge({ ...a, jwk: b.jwk }), verifyOptions({ keyCache })), 'signature');
  await rejectsDpop(verifyDpopProof(forge({ ...b, jwk: a.jwk }), verifyOptions({ keyCache })), 'signature');
  // One coordinate changed (still a valid encoding, not on the curve): refused, not served from the cache.
  const y = Buffer.from(a.jwk.y as string, 'base64url');
  y[31]! ^= 1;
  await rejectsDpop(verifyDpopProof(forge(a, { header: { jwk: { ...a.jwk, y: y.toString('base64url') } } }), verifyOptions({ keyCache })), 'jwk');
  assert.equal(keyCache.size, 2, 'a refused import is not cached');
});

test('the cache key names one set of members: absent and empty differ, a member with a "." is never cached and a fresh import refuses it', async () => {
  const keyCache = new DpopKeyCache(8);
  const a = testKey('ES256', 'cache-dot');
  const va = await verifyDpopProof(forge(a), verifyOptions({ keyCache }));
  assert.equal(keyCache.size, 1);
  const { x, y } = a.jwk as { x: string; y: string };
  // Members shifted across the separator: refused by import (not served from a's entry), never cached.
  for (const jwk of [
    { kty: 'EC', crv: `P-256.s${x}`, y },
    { kty: 'EC', crv: 'P-256', x: `${x}.s${y}` },
    { kty: 'EC.sP-256', crv: x, x: y },
  ]) {
    await rejectsDpop(verifyDpopProof(forge(a, { header: { jwk } }), verifyOptions({ keyCache })), 'jwk');
  }
  assert.equal(keyCache.size, 1, 'nothing refused was cached');
  // An empty n/e on an EC key: import ignores them (same key), a separate entry from absent ones.
  const vEmpty = await verifyDpopProof(forge(a, { header: { jwk: { ...a.jwk, n: '', e: '' } } }), verifyOptions({ keyCache }));
  assert.equal(vEmpty.jkt, va.jkt);
  assert.equal(keyCache.size, 2);
});

test('a cache hit still refuses private members and a use other than sig', async () => {
  const keyCache = new DpopKeyCache(4);
  const key = testKey('ES256');
  await verifyDpopProof(forge(key), verifyOptions({ keyCache }));
  assert.equal(keyCache.size, 1);
  const d = (key.privateKey.export({ format: 'jwk' }) as { d: string }).d;
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, d } } }), verifyOptions({ keyCache })), 'jwk_private');
  await rejectsDpop(verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, use: 'enc' } } }), verifyOptions({ keyCache })), 'jwk');
  await verifyDpopProof(forge(key, { header: { jwk: { ...key.jwk, use: 'sig' } } }), verifyOptions({ keyCache }));
});

test('bounded: beyond maxEntries the least recently used key goes first; size 0 caches nothing', async () => {
  const keyCache = new DpopKeyCache(2);
  const [a, b, c] = ['lru-a', 'lru-b', 'lru-c'].map((label) => testKey('ES256', label)) as [ReturnType<typeof testKey>, ReturnType<typeof testKey>, ReturnType<typeof testKey>];
  const ka = (await verifyDpopProof(forge(a), verifyOptions({ keyCache }))).key;
  const kb = (await verifyDpopProof(forge(b), verifyOptions({ keyCache }))).key;
  assert.equal((await verifyDpopProof(forge(a), verifyOptions({ keyCache }))).key, ka, 'a used again: now most recent');
  await verifyDpopProof(forge(c), verifyOptions({ keyCache }));
  assert.equal(keyCache.size, 2);
  assert.equal((await verifyDpopProof(forge(a), verifyOptions({ keyCache }))).key, ka, 'a kept');
  assert.notEqual((await verifyDpopProof(forge(b), verifyOptions({ keyCache }))).key, kb, 'b evicted, imported again');
  const none = new DpopKeyCache(0);
  const k1 = (await verifyDpopProof(forge(a), verifyOptions({ keyCache: none }))).key;
  const k2 = (await verifyDpopProof(forge(a), verifyOptions({ keyCache: none }))).key;
  assert.notEqual(k1, k2);
  assert.equal(none.size, 0);
  assert.throws(() => new DpopKeyCache(-1), TypeError);
});

test('dpop.keyCacheSize is validated like every verifier option', () => {
  const tokens = { validate: () => Promise.reject(new Error('unused')) };
  for (const keyCacheSize of [-1, 1.5, Number.NaN]) {
    assert.throws(() => createSessionBoundVerifier({ tokens, dpop: { keyCacheSize } }), ConfigurationError, String(keyCacheSize));
  }
  assert.ok(createSessionBoundVerifier({ tokens, dpop: { keyCacheSize: 0 } }));
});
