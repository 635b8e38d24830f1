/**
 * One rule for per-request claims (issue 14 item 6): the AS's holder-proof check at token exchange
 * and step i of the resource-server verifier get the same proofs' claims for the same request and
 * must reach the same verdict (accepted, or refused for the same reason) and remember a `jti` for
 * the same time. fast-check generates the claims: htm and htu spellings (case, default port, query,
 * fragment, path-only form, other hosts and paths, random URLs), jti present or not and seen
 * before or not, iat and token exp around the window.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { InvalidProofError } from '@tether/core';
import { VERIFICATION_STEPS, type ReplayStore } from '@tether/core/verifier';
import { OAuthError } from '@tether/as';
import { checkHolderPerRequestClaims, tokenEndpointRequest } from '../../packages/as/src/holder-proof.js';

const ENDPOINT = 'https://as.example:8443/token';
const NOW = 1_800_000_000;
const PROOF_MAX_AGE = 300;
const SKEW = 30;
const stepI = VERIFICATION_STEPS.find((s) => s.step === 'i');

/** A replay store that records what it was asked to remember, pre-seeded with `seen`. */
function recordingStore(seen: readonly string[]): ReplayStore & { remembered: Array<[string, number]> } {
  const used = new Set(seen);
  const remembered: Array<[string, number]> = [];
  return {
    remembered,
    use(key, until) {
      remembered.push([key, until]);
      if (used.has(key)) return false;
      used.add(key);
      return true;
    },
  };
}

const htuArb = fc.oneof(
  fc.constantFrom(
    ENDPOINT,
    'https://AS.example:8443/token',
    'https://as.example:8443/token?x=1',
    'https://as.example:8443/token#frag',
    'https://as.example:8443/token/',
    'https://as.example:8443/Token',
    'https://as.example/token',
    'https://as.example:443/token',
    'http://as.example:8443/token',
    'https://other.example:8443/token',
    'https://as.example:8443/%74oken',
    'https://as.example:8443/./token',
    '/token',
    '/token?y',
    '/introspect',
    'token',
    '',
  ),
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc.string(),
);

const claimsArb = fc.record({
  htm: fc.option(fc.constantFrom('POST', 'post', 'GET', 'PUT', ''), { nil: undefined }),
  htu: fc.option(htuArb, { nil: undefined }),
  jti: fc.option(fc.constantFrom('j1', 'j2', 'a-long-jti-value'), { nil: undefined }),
  iat: fc.integer({ min: NOW - PROOF_MAX_AGE - SKEW, max: NOW + SKEW }),
});

async function verdict(run: () => void | Promise<void>): Promise<string> {
  try {
    await run();
    return 'accepted';
  } catch (error) {
    if (error instanceof OAuthError) return `refused ${error.reason.replace(/^proof_/, '')}`;
    if (error instanceof InvalidProofError) return `refused ${error.reason}`;
    throw error;
  }
}

test('the AS holder check and resource-server step i give the same verdict on the same claims', async () => {
  assert.ok(stepI !== undefined, 'the verifier has a step i');
  await fc.assert(
    fc.asyncProperty(claimsArb, fc.boolean(), fc.option(fc.integer({ min: NOW - SKEW, max: NOW + 900 }), { nil: undefined }), async (claims, seen, exp) => {
      const seeded = seen && claims.jti !== undefined ? [`sbp:${claims.jti}`] : [];
      const atAs = recordingStore(seeded);
      const atRs = recordingStore(seeded);
      const window = { now: NOW, proofMaxAge: PROOF_MAX_AGE, clockSkew: SKEW, tokenExp: exp };
      const asVerdict = await verdict(() => checkHolderPerRequestClaims(claims, ENDPOINT, window, atAs));
      const request = tokenEndpointRequest(ENDPOINT);
      const ctx = {
        perRequest: claims,
        input: { ...request, authorization: [], sessionBindingProof: [] },
        options: { clockSkew: SKEW, proofMaxAge: PROOF_MAX_AGE, replayStore: atRs },
        now: NOW,
        claims: exp === undefined ? {} : { exp },
      };
      const rsVerdict = await verdict(() => stepI.run(ctx as never));
      assert.equal(asVerdict, rsVerdict, JSON.stringify({ claims, seen, exp }));
      assert.deepEqual(atAs.remembered, atRs.remembered, 'the same jti kept for the same time');
    }),
    { numRuns: 500 },
  );
});

test('sanity: the spellings the old AS check refused are accepted by both now, and real mismatches refused by both', async () => {
  const window = { now: NOW, proofMaxAge: PROOF_MAX_AGE, clockSkew: SKEW, tokenExp: NOW + 300 };
  const check = (htu: string, htm = 'POST') => verdict(() => checkHolderPerRequestClaims({ htm, htu, iat: NOW }, ENDPOINT, window, recordingStore([])));
  assert.equal(await check('https://as.example:8443/token?x=1'), 'accepted', 'query ignored');
  assert.equal(await check('https://AS.example:8443/token'), 'accepted', 'host case normalised');
  assert.equal(await check('/token'), 'accepted', 'path-only form');
  assert.equal(await check('https://other.example:8443/token'), 'refused htu_mismatch');
  assert.equal(await check(ENDPOINT, 'GET'), 'refused htm_mismatch');
});
