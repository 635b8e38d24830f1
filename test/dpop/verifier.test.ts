/**
 * The resource-server verifier with the DPoP scheme (RFC 9449 sections 6, 7, 9), on a hand-made
 * connection: scheme handling, the Bearer downgrade, tokens that are not DPoP-bound or mix
 * bindings, header duplicates, Session-Binding-Proof together with DPoP, key binding, nonces,
 * `minimumBinding` semantics and the DPoP challenge (`algs`). Every case asserts status and code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import {
  AuthenticationRequiredError,
  ConfigurationError,
  EXPORTER_LABEL,
  InvalidTokenError,
  TetherError,
  createSessionBoundVerifier,
  jwtAccessTokenValidator,
  localJwks,
  parseWwwAuthenticate,
  sessionBoundConfirmation,
  type RequestInput,
  type SessionBoundVerifierOptions,
} from '@tether/core';
import { DPOP_ALGORITHMS, createDpopProof, jwkThumbprint, type DpopNonceSource } from '@tether/core/dpop';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { FakeConnection } from '../unit/support/connection.js';
import { testKey } from './support.js';

const AUTHORITY = 'rs.example.com';
const PATH = '/api/resource?page=2';
const HTU = `https://${AUTHORITY}/api/resource`;
const ALGS = DPOP_ALGORITHMS.join(' ');

const issuerPromise = TestIssuer.create();

function verifierFor(issuer: TestIssuer, options: Partial<SessionBoundVerifierOptions> = {}) {
  return createSessionBoundVerifier({
    tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }),
    minimumBinding: 'certificate',
    ...options,
  });
}

function input(headers: { authorization?: string[]; dpop?: string[]; sbp?: string[]; method?: string; path?: string; authority?: string }): RequestInput {
  return {
    method: headers.method ?? 'GET',
    scheme: 'https',
    authority: headers.authority ?? AUTHORITY,
    path: headers.path ?? PATH,
    authorization: headers.authorization ?? [],
    sessionBindingProof: headers.sbp ?? [],
    dpop: headers.dpop ?? [],
    connection: new FakeConnection(),
  };
}

async function dpopToken(issuer: TestIssuer, key = testKey('ES256'), claims: Record<string, unknown> = {}) {
  return issuer.mint({ cnf: { jkt: await jwkThumbprint(key.publicKey) }, ...claims });
}

function proofFor(token: string | undefined, key = testKey('ES256'), extra: { htm?: string; htu?: string; nonce?: string; iat?: number } = {}) {
  return createDpopProof({ privateKey: key.privateKey, htm: extra.htm ?? 'GET', htu: extra.htu ?? HTU, ...(token === undefined ? {} : { accessToken: token }), ...(extra.nonce === undefined ? {} : { nonce: extra.nonce }), ...(extra.iat === undefined ? {} : { iat: extra.iat }) });
}

/** The refusal: exact status, error, reason, scheme; DPoP challenges carry algs. */
async function refused(promise: Promise<unknown>, status: number, error: string | undefined, reason: string, scheme: 'DPoP' | 'Bearer' = 'DPoP'): Promise<TetherError> {
  let caught: unknown;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof TetherError, `expected a refusal, got ${String(caught)}`);
  assert.equal(caught.statusCode, status, caught.description);
  assert.equal(caught.error, error);
  assert.equal(caught.reason, reason);
  assert.equal(caught.scheme, scheme);
  const challenges = parseWwwAuthenticate(caught.headers['www-authenticate']);
  assert.equal(challenges.length, 1);
  assert.equal(challenges[0]?.scheme, scheme.toLowerCase());
  if (error !== undefined) assert.equal(challenges[0]?.params.error, error);
  if (scheme === 'DPoP') assert.equal(challenges[0]?.params.algs, ALGS);
  else assert.equal(challenges[0]?.params.algs, undefined);
  return caught;
}

test('DPoP scheme with a jkt token and a valid proof: accepted, binding dpop, one proof verification', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const token = await dpopToken(issuer);
  const principal = await verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] }));
  assert.equal(principal.binding, 'dpop');
  assert.equal(principal.sub, 'user-1');
  assert.equal(principal.cnf?.jkt, await jwkThumbprint(testKey('ES256').publicKey));
  assert.equal(verifier.stats.dpopProofVerifications, 1);
  assert.equal(verifier.stats.proofVerifications, 0);
  assert.equal(verifier.stats.accepted, 1);
  // Scheme names are case-insensitive (RFC 9110 11.1); the header name too (handled by adapters).
  await verifier.verify(input({ authorization: [`dpop ${token}`], dpop: [await proofFor(token)] }));
  for (const alg of ['EdDSA', 'RS256', 'PS256', 'ES384'] as const) {
    const key = testKey(alg);
    const t = await dpopToken(issuer, key);
    assert.equal((await verifier.verify(input({ authorization: [`DPoP ${t}`], dpop: [await proofFor(t, key)] }))).binding, 'dpop', alg);
  }
});

test('minimumBinding: DPoP counts as certificate strength; session refuses it unless dpop.meetsSessionMinimum', async () => {
  const issuer = await issuerPromise;
  const token = await dpopToken(issuer);
  const session = verifierFor(issuer, { minimumBinding: 'session' });
  const e = await refused(session.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 401, 'invalid_token', 'binding_required');
  assert.equal(e.description, 'A TLS-session-bound access token is required');
  assert.equal(session.stats.dpopProofVerifications, 0, 'refused on policy before any proof work');
  const defaults = createSessionBoundVerifier({ tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }) });
  await refused(defaults.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 401, 'invalid_token', 'binding_required');
  const opted = verifierFor(issuer, { minimumBinding: 'session', dpop: { meetsSessionMinimum: true } });
  assert.equal((await opted.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] }))).binding, 'dpop');
  const none = verifierFor(issuer, { minimumBinding: 'none' });
  assert.equal((await none.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] }))).binding, 'dpop');
});

test('RFC 9449 7.2: a DPoP-bound token presented with the Bearer scheme -> 401 invalid_token (Bearer challenge, as before)', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer, { minimumBinding: 'none' });
  const token = await dpopToken(issuer);
  await refused(verifier.verify(input({ authorization: [`Bearer ${token}`] })), 401, 'invalid_token', 'binding_unsupported', 'Bearer');
  // Even with a valid DPoP proof alongside: the Bearer scheme never reads it.
  await refused(verifier.verify(input({ authorization: [`Bearer ${token}`], dpop: [await proofFor(token)] })), 401, 'invalid_token', 'binding_unsupported', 'Bearer');
  assert.equal(verifier.stats.dpopProofVerifications, 0);
});

test('DPoP scheme with a token that is not DPoP-bound (bearer, certificate-bound, session-bound) -> 401 invalid_token', async () => {
  const issuer = await issuerPromise;
  const pki = await testPki();
  const verifier = verifierFor(issuer, { minimumBinding: 'none' });
  const tokens = [await issuer.mint(), await issuer.certificateBound(pki.clients.client?.cert as string), await issuer.sessionBound(pki.clients.client?.cert as string)];
  for (const token of tokens) {
    const e = await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 401, 'invalid_token', 'dpop_not_bound');
    assert.ok(e instanceof InvalidTokenError);
  }
});

test('a token with jkt and tls_exp (or x5t#S256) is refused on either scheme -> 401 invalid_token', async () => {
  const issuer = await issuerPromise;
  const pki = await testPki();
  const verifier = verifierFor(issuer, { minimumBinding: 'none' });
  const jkt = await jwkThumbprint(testKey('ES256').publicKey);
  const session = sessionBoundConfirmation(new X509Certificate(pki.clients.client?.cert as string));
  for (const cnf of [{ jkt, tls_exp: EXPORTER_LABEL }, { ...session, jkt }, { jkt, 'x5t#S256': session['x5t#S256'] }]) {
    const token = await issuer.mint({ cnf });
    await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 401, 'invalid_token', 'cnf');
    await refused(verifier.verify(input({ authorization: [`Bearer ${token}`] })), 401, 'invalid_token', 'cnf', 'Bearer');
  }
});

test('two DPoP fields, or one holding a list -> 400 invalid_request with a DPoP challenge', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const token = await dpopToken(issuer);
  const a = await proofFor(token);
  const b = await proofFor(token);
  await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [a, b] })), 400, 'invalid_request', 'duplicate_dpop');
  await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [`${a}, ${b}`] })), 400, 'invalid_request', 'duplicate_dpop');
  await refused(verifier.verify(input({ authorization: [`DPoP ${token}`, `DPoP ${token}`], dpop: [a] })), 400, 'invalid_request', 'duplicate_authorization', 'Bearer');
});

test('Session-Binding-Proof together with DPoP -> 400 invalid_request', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const token = await dpopToken(issuer);
  await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)], sbp: ['eyJ.eyJ.sig'] })), 400, 'invalid_request', 'dpop_with_session_proof');
  assert.equal(verifier.stats.dpopProofVerifications, 0);
});

test('DPoP scheme without a DPoP proof -> 401 invalid_dpop_proof', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const token = await dpopToken(issuer);
  await refused(verifier.verify(input({ authorization: [`DPoP ${token}`] })), 401, 'invalid_dpop_proof', 'dpop_missing');
  await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: ['  '] })), 401, 'invalid_dpop_proof', 'dpop_missing');
});

test('stolen token with the thief\'s own DPoP key -> 401 invalid_token (RFC 9449 Figure 16: key binding)', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const token = await dpopToken(issuer);
  const thief = testKey('ES256', 'thief');
  const e = await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token, thief)] })), 401, 'invalid_token', 'jkt_mismatch');
  assert.equal(e.challenge, `DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="${ALGS}"`);
});

test('proof for another token, method, or URI; replayed proof; stale proof -> 401 invalid_dpop_proof', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const token = await dpopToken(issuer);
  const other = await dpopToken(issuer);
  const auth = [`DPoP ${token}`];
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(other)] })), 401, 'invalid_dpop_proof', 'ath_mismatch');
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(undefined)] })), 401, 'invalid_dpop_proof', 'ath_missing');
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(token, undefined, { htm: 'POST' })] })), 401, 'invalid_dpop_proof', 'htm_mismatch');
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(token)], path: '/api/other' })), 401, 'invalid_dpop_proof', 'htu_mismatch');
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(token)], authority: 'rs.example.com:8443' })), 401, 'invalid_dpop_proof', 'htu_mismatch');
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(token)], authority: 'evil/x' })), 401, 'invalid_dpop_proof', 'htu_mismatch');
  await refused(verifier.verify(input({ authorization: auth, dpop: [await proofFor(token, undefined, { iat: Math.floor(Date.now() / 1000) - 120 })] })), 401, 'invalid_dpop_proof', 'iat_stale');
  const once = await proofFor(token);
  await verifier.verify(input({ authorization: auth, dpop: [once] }));
  await refused(verifier.verify(input({ authorization: auth, dpop: [once] })), 401, 'invalid_dpop_proof', 'jti_replay');
  // The replay store is shared with Session-Binding Proofs; DPoP keys live under their own namespace.
  assert.deepEqual(verifier.stats.failures, { ath_mismatch: 1, ath_missing: 1, htm_mismatch: 1, htu_mismatch: 3, iat_stale: 1, jti_replay: 1 });
});

test('nonce: a verifier with a nonce source answers use_dpop_nonce with DPoP-Nonce; the retry with it succeeds', async () => {
  const issuer = await issuerPromise;
  let counter = 0;
  const valid = new Set<string>();
  const nonce: DpopNonceSource = {
    issue: () => {
      const n = `nonce-${++counter}`;
      valid.add(n);
      return n;
    },
    check: (n) => valid.has(n),
  };
  const verifier = verifierFor(issuer, { dpop: { nonce } });
  const token = await dpopToken(issuer);
  const first = await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 401, 'use_dpop_nonce', 'nonce_missing');
  assert.equal(first.headers['dpop-nonce'], 'nonce-1');
  const wrong = await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token, undefined, { nonce: 'forged' })] })), 401, 'use_dpop_nonce', 'nonce_mismatch');
  assert.equal(wrong.headers['dpop-nonce'], 'nonce-2');
  const ok = await verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token, undefined, { nonce: 'nonce-1' })] }));
  assert.equal(ok.binding, 'dpop');
});

test('insufficient scope on the DPoP scheme -> 403 with a DPoP challenge carrying scope and algs', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer, { requiredScopes: ['admin'] });
  const token = await dpopToken(issuer);
  const e = await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 403, 'insufficient_scope', 'insufficient_scope');
  assert.equal(e.challenge, `DPoP error="insufficient_scope", error_description="The access token lacks a required scope", scope="admin", algs="${ALGS}"`);
});

test('an invalid or expired token on the DPoP scheme -> 401 invalid_token with a DPoP challenge', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer);
  const other = await TestIssuer.create();
  const foreign = await other.mint({ cnf: { jkt: await jwkThumbprint(testKey('ES256').publicKey) } });
  const bearerReason = (await verifier.verify(input({ authorization: [`Bearer ${foreign}`] })).then(() => assert.fail('accepted'), (x: TetherError) => x)).reason;
  const e = await refused(verifier.verify(input({ authorization: [`DPoP ${foreign}`], dpop: [await proofFor(foreign)] })), 401, 'invalid_token', bearerReason);
  assert.ok(e instanceof InvalidTokenError);
  assert.equal(verifier.stats.dpopProofVerifications, 0);
});

test('dpop.enabled false: Authorization DPoP gets the bare Bearer challenge, as without DPoP support', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer, { dpop: { enabled: false } });
  const token = await dpopToken(issuer);
  const e = await refused(verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })), 401, undefined, 'unsupported_scheme', 'Bearer');
  assert.ok(e instanceof AuthenticationRequiredError);
  assert.equal(e.challenge, 'Bearer');
});

test('dpop.algorithms narrows what is accepted and what algs advertises; bad DPoP options are configuration errors', async () => {
  const issuer = await issuerPromise;
  const verifier = verifierFor(issuer, { dpop: { algorithms: ['PS256'] } });
  const token = await dpopToken(issuer);
  let caught: TetherError | undefined;
  await verifier.verify(input({ authorization: [`DPoP ${token}`], dpop: [await proofFor(token)] })).catch((e: TetherError) => (caught = e));
  assert.equal(caught?.reason, 'alg');
  assert.equal(caught?.challenge, 'DPoP error="invalid_dpop_proof", error_description="DPoP proof verification failed: alg not accepted", algs="PS256"');
  const tokens = jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE });
  assert.throws(() => createSessionBoundVerifier({ tokens, dpop: { algorithms: [] } }), ConfigurationError);
  assert.throws(() => createSessionBoundVerifier({ tokens, dpop: { algorithms: ['HS256' as never] } }), ConfigurationError);
  assert.throws(() => createSessionBoundVerifier({ tokens, dpop: { maxAge: 0 } }), ConfigurationError);
  assert.throws(() => createSessionBoundVerifier({ tokens, dpop: { nonce: {} as never } }), ConfigurationError);
});
