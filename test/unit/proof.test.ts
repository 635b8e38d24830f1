/**
 * Session-Binding Proof vectors: the draft's own examples (sections 2.3.1, 2.3.2, 2.4, 3.5), proofs
 * for every supported key type decoded and checked field by field against values computed here
 * independently (node:crypto, not the library), and the RFC 9449 `ath` example.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash, verify as cryptoVerify, constants, type KeyObject } from 'node:crypto';
import {
  EXPORTER_LABEL,
  EXPORTER_LENGTH,
  InvalidProofError,
  PROOF_HEADER,
  PROOF_TYP,
  UseSessionBindingError,
  ConfigurationError,
  accessTokenHash,
  assertKeyMatchesCertificate,
  bindingRequirement,
  certificateBoundConfirmation,
  certificateThumbprint,
  createSessionBindingProof,
  createSessionBoundVerifier,
  htuMatches,
  jwtAccessTokenValidator,
  localJwks,
  sessionBoundConfirmation,
  signingAlgorithmForKey,
  verifySessionBindingProof,
  type ProofAlgorithm,
} from '@tether/core';
import type { KeyType } from '@tether/pki';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { EKM, IAT, OTHER_EKM, decodeSegment, identities, rejectsProof, segmentKeys } from './support/jws.js';
import { FakeConnection } from './support/connection.js';

interface DraftExamples {
  proofHeader: Record<string, string>;
  proofPayload: Record<string, string | number>;
  cnf: Record<string, string>;
  exporter: { label: string; contextLength: number; length: number };
  challenges: { invalidProof: string; useSessionBinding: string };
  rfc9449: { accessToken: string; ath: string };
}

const examples = JSON.parse(readFileSync(new URL('../fixtures/draft-06-examples.json', import.meta.url), 'utf8')) as DraftExamples;

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl';

function sha256b64u(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

/** DER of a PEM certificate, decoded by hand (independent of X509Certificate.raw). */
function pemToDer(pem: string): Buffer {
  const body = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

/** Verify a JWS signature with node:crypto directly (RFC 7518 encodings). */
function independentVerify(alg: ProofAlgorithm, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  const data = Buffer.from(signingInput, 'ascii');
  switch (alg) {
    case 'ES256':
      return cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'ES384':
      return cryptoVerify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'EdDSA':
    case 'Ed25519':
      return cryptoVerify(null, data, key, signature);
    case 'PS256':
      return cryptoVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature);
    case 'RS256':
      return cryptoVerify('sha256', data, key, signature);
  }
}

test('draft 2.3.1 header example: typ constant, member names and order', async () => {
  assert.equal(PROOF_TYP, examples.proofHeader.typ);
  assert.equal(PROOF_TYP, 'tls-binding-proof+jwt');
  assert.equal(PROOF_HEADER, 'Session-Binding-Proof');
  const { client } = await identities('p256');
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: TOKEN, ekm: EKM, iat: IAT });
  const [h] = proof.split('.') as [string];
  assert.deepEqual(segmentKeys(h), Object.keys(examples.proofHeader));
  assert.deepEqual(decodeSegment(h), { typ: examples.proofHeader.typ, alg: examples.proofHeader.alg, 'x5t#S256': certificateThumbprint(client.cert) });
});

test('draft 2.3.2 payload example: all six claims, their order and encodings, and a round trip', async () => {
  const { client } = await identities('p256');
  const proof = await createSessionBindingProof({
    privateKey: client.key,
    certificate: client.cert,
    accessToken: TOKEN,
    ekm: EKM,
    iat: examples.proofPayload.iat as number,
    jti: 'b5c6f1a0-9e2d-4c1b-8f3a-7d6e5c4b3a21',
    htm: examples.proofPayload.htm as string,
    htu: examples.proofPayload.htu as string,
  });
  const [, p] = proof.split('.') as [string, string];
  assert.deepEqual(segmentKeys(p), Object.keys(examples.proofPayload));
  assert.deepEqual(decodeSegment(p), {
    ath: sha256b64u(Buffer.from(TOKEN, 'ascii')),
    ekm: EKM.toString('base64url'),
    iat: 1710820000,
    jti: 'b5c6f1a0-9e2d-4c1b-8f3a-7d6e5c4b3a21',
    htm: 'POST',
    htu: '/api/resource',
  });
  const verified = await verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT });
  assert.deepEqual(verified.claims, decodeSegment(p));
  assert.deepEqual(verified.header, { typ: PROOF_TYP, alg: 'ES256', 'x5t#S256': certificateThumbprint(client.cert) });
  // The draft's htu example is path-only; it matches the request path and nothing else.
  assert.equal(htuMatches('/api/resource', 'https', 'rs.example:8443', '/api/resource?x=1'), true);
  assert.equal(htuMatches('/api/resource', 'https', 'rs.example:8443', '/api/other'), false);
  assert.equal(htuMatches('https://rs.example:8443/api/resource', 'https', 'rs.example:8443', '/api/resource'), true);
  assert.equal(htuMatches('https://rs.example/api/resource', 'https', 'rs.example:8443', '/api/resource'), false);
  assert.equal(htuMatches('http://rs.example:8443/api/resource', 'https', 'rs.example:8443', '/api/resource'), false);
});

test('draft 2.4 cnf example and 2.2 exporter parameters', async () => {
  const { client } = await identities('p256');
  assert.equal(EXPORTER_LABEL, examples.exporter.label);
  assert.equal(EXPORTER_LENGTH, examples.exporter.length);
  const cnf = sessionBoundConfirmation(client.cert);
  assert.deepEqual(Object.keys(cnf), Object.keys(examples.cnf));
  assert.deepEqual(cnf, { 'x5t#S256': certificateThumbprint(client.cert), tls_exp: examples.cnf.tls_exp });
  assert.deepEqual(sessionBoundConfirmation(client.cert.raw), cnf);
  assert.deepEqual(certificateBoundConfirmation(client.cert), { 'x5t#S256': certificateThumbprint(client.cert) });
  assert.deepEqual(bindingRequirement(cnf), { kind: 'session', thumbprint: certificateThumbprint(client.cert) });
});

test('draft 3.5 invalid_proof example: the exact challenge of an exporter mismatch', async () => {
  const { client } = await identities('p256');
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: TOKEN, ekm: OTHER_EKM, iat: IAT });
  const error = await rejectsProof(verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT }), 'ekm_mismatch');
  assert.equal(error.challenge, examples.challenges.invalidProof);
  assert.equal(
    error.challenge,
    'Bearer error="invalid_proof", error_description="Session-Binding Proof verification failed: exporter mismatch"',
  );
  assert.deepEqual(error.headers, { 'www-authenticate': examples.challenges.invalidProof });
});

test('draft 3.5 examples through the verifier: use_session_binding and invalid_proof challenges', async () => {
  const { client } = await identities('p256');
  const issuer = await TestIssuer.create();
  const verifier = createSessionBoundVerifier({
    tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }),
  });
  const connection = new FakeConnection(EKM, { certificate: client.cert });
  const token = await issuer.sessionBound(client.pem.cert);
  const request = (proofs: string[]) => ({
    method: 'POST',
    scheme: 'https',
    authority: 'rs.tether.test',
    path: '/api/resource',
    authorization: [`Bearer ${token}`],
    sessionBindingProof: proofs,
    connection,
  });

  const missing = await verifier.verify(request([])).then(
    () => assert.fail('a session-bound token without a proof was accepted'),
    (e: unknown) => e,
  );
  assert.ok(missing instanceof UseSessionBindingError);
  assert.equal(missing.statusCode, 401);
  assert.equal(missing.reason, 'proof_missing');
  assert.equal(missing.challenge, examples.challenges.useSessionBinding);
  assert.equal(missing.challenge, 'Bearer error="use_session_binding", error_description="This token requires a Session-Binding Proof"');

  const wrongEkm = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: OTHER_EKM });
  const mismatch = await verifier.verify(request([wrongEkm])).then(
    () => assert.fail('a proof with another exporter value was accepted'),
    (e: unknown) => e,
  );
  assert.ok(mismatch instanceof InvalidProofError);
  assert.equal(mismatch.reason, 'ekm_mismatch');
  assert.equal(mismatch.challenge, examples.challenges.invalidProof);

  const good = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: EKM });
  const principal = await verifier.verify(request([good]));
  assert.equal(principal.binding, 'session');
  assert.deepEqual(verifier.stats.failures, { proof_missing: 1, ekm_mismatch: 1 });
});

const KEY_CASES: Array<{ keyType: KeyType; alg: ProofAlgorithm; preferRs256?: boolean; signatureBytes: number }> = [
  { keyType: 'p256', alg: 'ES256', signatureBytes: 64 },
  { keyType: 'p384', alg: 'ES384', signatureBytes: 96 },
  { keyType: 'ed25519', alg: 'EdDSA', signatureBytes: 64 },
  { keyType: 'rsa', alg: 'PS256', signatureBytes: 256 },
  { keyType: 'rsa', alg: 'RS256', preferRs256: true, signatureBytes: 256 },
];

for (const c of KEY_CASES) {
  test(`${c.keyType} key signs ${c.alg}: exact header, claim encodings, independent signature check, round trip`, async () => {
    const { client, other } = await identities(c.keyType);
    assert.equal(signingAlgorithmForKey(client.key, c.preferRs256 === true), c.alg);
    const proof = await createSessionBindingProof({
      privateKey: client.key,
      certificate: client.cert,
      accessToken: TOKEN,
      ekm: EKM,
      iat: IAT,
      ...(c.preferRs256 === true ? { alg: c.alg } : {}),
    });
    assert.match(proof, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const [h, p, s] = proof.split('.') as [string, string, string];

    const x5t = sha256b64u(pemToDer(client.pem.cert));
    assert.deepEqual(segmentKeys(h), ['typ', 'alg', 'x5t#S256']);
    assert.deepEqual(decodeSegment(h), { typ: 'tls-binding-proof+jwt', alg: c.alg, 'x5t#S256': x5t });
    assert.equal(h, Buffer.from(JSON.stringify({ typ: 'tls-binding-proof+jwt', alg: c.alg, 'x5t#S256': x5t })).toString('base64url'));

    const claims = decodeSegment(p) as Record<string, unknown>;
    assert.deepEqual(Object.keys(claims), ['ath', 'ekm', 'iat']);
    assert.equal(claims.ath, sha256b64u(Buffer.from(TOKEN, 'ascii')));
    assert.equal(claims.ekm, EKM.toString('base64url'));
    assert.match(claims.ekm as string, /^[A-Za-z0-9_-]{43}$/);
    assert.match(claims.ath as string, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(claims.iat, IAT);
    assert.ok(Number.isInteger(claims.iat));
    assert.match(Buffer.from(p, 'base64url').toString('utf8'), /"iat":1710820000[,}]/);

    const signature = Buffer.from(s, 'base64url');
    assert.equal(signature.length, c.signatureBytes);
    assert.equal(independentVerify(c.alg, client.cert.publicKey, `${h}.${p}`, signature), true);
    assert.equal(independentVerify(c.alg, other.cert.publicKey, `${h}.${p}`, signature), false);

    const verified = await verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT });
    assert.deepEqual(verified.claims, { ath: claims.ath, ekm: claims.ekm, iat: IAT });
    assert.equal(verified.header.alg, c.alg);
    // `ath` may be given precomputed instead of the token.
    await verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, ath: accessTokenHash(TOKEN), now: IAT });
    // The same proof on another connection (other exporter value) or for another certificate fails.
    await rejectsProof(verifySessionBindingProof(proof, { certificate: client.cert, ekm: OTHER_EKM, accessToken: TOKEN, now: IAT }), 'ekm_mismatch');
    await rejectsProof(verifySessionBindingProof(proof, { certificate: other.cert, ekm: EKM, accessToken: TOKEN, now: IAT }), 'x5t_mismatch');
  });
}

test('Ed25519 keys may also use the fully specified "Ed25519" alg (RFC 9864)', async () => {
  const { client } = await identities('ed25519');
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: TOKEN, ekm: EKM, iat: IAT, alg: 'Ed25519' });
  assert.equal((decodeSegment(proof.split('.')[0] as string) as { alg: string }).alg, 'Ed25519');
  const verified = await verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT });
  assert.equal(verified.header.alg, 'Ed25519');
  await rejectsProof(verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT, algorithms: ['EdDSA'] }), 'alg');
});

test('x5t#S256 is base64url(SHA-256(DER)), computed from the PEM by hand, for every key type', async () => {
  for (const keyType of ['p256', 'p384', 'ed25519', 'rsa'] as const) {
    const { client } = await identities(keyType);
    const der = pemToDer(client.pem.cert);
    assert.deepEqual(der, client.cert.raw);
    const expected = createHash('sha256').update(der).digest().toString('base64url');
    assert.equal(certificateThumbprint(client.cert), expected);
    assert.equal(certificateThumbprint(der), expected);
    assert.equal(certificateThumbprint(new Uint8Array(der)), expected);
    assert.match(expected, /^[A-Za-z0-9_-]{43}$/);
  }
});

test('accessTokenHash: RFC 9449 section 7.1 vector and b64token input only', () => {
  assert.equal(examples.rfc9449.accessToken, 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU');
  assert.equal(accessTokenHash(examples.rfc9449.accessToken), 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
  assert.equal(accessTokenHash(examples.rfc9449.accessToken), examples.rfc9449.ath);
  assert.equal(accessTokenHash(TOKEN), sha256b64u(TOKEN));
  assert.equal(accessTokenHash('abc=='), sha256b64u('abc=='));
  for (const bad of ['', 'a b', 'a\nb', 'tok"en', 'é', '=abc', 'a=b']) {
    assert.throws(() => accessTokenHash(bad), TypeError, JSON.stringify(bad));
  }
});

test('createSessionBindingProof checks its inputs', async () => {
  const { client, other } = await identities('p256');
  const base = { privateKey: client.key, certificate: client.cert, accessToken: TOKEN, ekm: EKM, iat: IAT };
  await assert.rejects(createSessionBindingProof({ ...base, ekm: EKM.subarray(0, 31) }), TypeError);
  await assert.rejects(createSessionBindingProof({ ...base, ekm: Buffer.alloc(33) }), TypeError);
  await assert.rejects(createSessionBindingProof({ ...base, accessToken: 'not a token' }), TypeError);
  // An alg that does not fit the key never yields a proof.
  await assert.rejects(createSessionBindingProof({ ...base, alg: 'ES384' }));
  // The ekm may be any 32-byte view, not only a whole Buffer.
  const padded = Buffer.concat([Buffer.alloc(5), EKM, Buffer.alloc(5)]);
  const proof = await createSessionBindingProof({ ...base, ekm: new Uint8Array(padded.buffer, padded.byteOffset + 5, 32) });
  await verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT });

  assertKeyMatchesCertificate(client.key, client.cert);
  assert.throws(() => assertKeyMatchesCertificate(other.key, client.cert), ConfigurationError);
  assert.throws(() => assertKeyMatchesCertificate(client.cert.publicKey, client.cert), ConfigurationError);
});

test('verifySessionBindingProof needs the token or its hash', async () => {
  const { client } = await identities('p256');
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: TOKEN, ekm: EKM, iat: IAT });
  await assert.rejects(verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, now: IAT }), TypeError);
});
