/**
 * Properties: any single-character change to a valid DPoP proof is refused with
 * InvalidDpopProofError (never accepted, never another error), arbitrary strings never verify,
 * and htu normalization is idempotent and never keeps query, fragment or userinfo.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidDpopProofError } from '@tether/core';
import { normalizeHtu, verifyDpopProof } from '@tether/core/dpop';
import { forge, testKey, verifyOptions } from './support.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';

test('single-character mutations of a valid proof are always refused as invalid_dpop_proof', async () => {
  const proof = forge(testKey('ES256'));
  await verifyDpopProof(proof, verifyOptions());
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: proof.length - 1 }), fc.constantFrom(...ALPHABET), async (index, ch) => {
      fc.pre(proof[index] !== ch);
      const mutated = proof.slice(0, index) + ch + proof.slice(index + 1);
      await assert.rejects(verifyDpopProof(mutated, verifyOptions()), (e) => e instanceof InvalidDpopProofError);
    }),
    { numRuns: 400 },
  );
});

test('arbitrary strings never verify and never throw anything but InvalidDpopProofError', async () => {
  await fc.assert(
    fc.asyncProperty(fc.string({ maxLength: 300 }), async (s) => {
      await assert.rejects(verifyDpopProof(s, verifyOptions()), (e) => e instanceof InvalidDpopProofError);
    }),
    { numRuns: 300 },
  );
});

test('normalizeHtu is idempotent and drops query, fragment; refuses userinfo', () => {
  fc.assert(
    fc.property(fc.webUrl({ withQueryParameters: true, withFragments: true, authoritySettings: { withUserInfo: true, withPort: true } }), (url) => {
      const once = normalizeHtu(url);
      const parsed = new URL(url);
      if (parsed.username !== '' || parsed.password !== '') assert.equal(once, undefined, url);
      if (once === undefined) return;
      assert.equal(normalizeHtu(once), once);
      assert.ok(!once.includes('?') && !once.includes('#'), once);
      assert.equal(new URL(once).username, '', once);
    }),
    { numRuns: 500 },
  );
});
