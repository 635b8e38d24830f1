/**
 * Known-answer vectors from an independent implementation (an unchanged copy of the shared
 * vectors' session-binding-proofs.json in test/fixtures/): 67 Session-Binding Proof cases over P-256, P-384, RSA (RS256, PS256) and
 * Ed25519. Each runs twice: through `verifySessionBindingProof` with the vector's clock and limits
 * (steps e to h), and through the whole verifier (steps a to i: a connection that is this
 * certificate's, a token bound to it, the request of the per-request cases), which must accept
 * every `valid` case and refuse every `invalid` one with `invalid_proof`. Run after every change to
 * proof parsing or verification.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { InvalidProofError, certificateThumbprint, createSessionBoundVerifier, sessionBoundConfirmation, verifySessionBindingProof } from '@tether/core';
import type { ConnectionContext } from '@tether/core/verifier';

interface Vector {
  name: string;
  certificate_pem: string;
  access_token: string;
  ekm_b64url: string;
  now: string;
  proof: string;
  expect: 'valid' | 'invalid';
  error?: string;
  why: string;
  request_method?: string;
  request_uri?: string;
}
interface VectorFile {
  max_age: number;
  clock_skew: number;
  proof_typ: string;
  cases: Vector[];
}

const vectors = JSON.parse(readFileSync(new URL('../fixtures/session-binding-proofs.json', import.meta.url), 'utf8')) as VectorFile;

function connectionFor(certificate: X509Certificate, ekm: Buffer): ConnectionContext {
  return {
    id: Math.floor(Math.random() * 1e9) + 1e9,
    protocol: 'TLSv1.3',
    authorized: true,
    certificate,
    thumbprint: certificateThumbprint(certificate),
    exporter: () => ekm,
    onClose: () => undefined,
    closed: false,
  };
}

test('the known-answer vectors are all there', () => {
  assert.equal(vectors.cases.length, 67);
  assert.equal(vectors.proof_typ, 'tls-binding-proof+jwt');
});

test('verifySessionBindingProof: every valid vector verifies, every invalid one is refused with InvalidProofError', async () => {
  for (const v of vectors.cases) {
    const options = { certificate: new X509Certificate(v.certificate_pem), ekm: Buffer.from(v.ekm_b64url, 'base64url'), accessToken: v.access_token, now: Number(v.now), maxAge: vectors.max_age, clockSkew: vectors.clock_skew };
    const outcome = await verifySessionBindingProof(v.proof, options).then(
      () => 'valid',
      (e: unknown) => (e instanceof InvalidProofError ? 'invalid' : `unexpected ${String(e)}`),
    );
    // Per-request claims (htm/htu) are step i, checked by the verifier below.
    assert.equal(outcome, v.expect, `${v.name}: ${v.why}`);
  }
});

test('the whole verifier (steps a to i): valid vectors accepted, invalid ones refused with invalid_proof', async () => {
  let accepted = 0;
  for (const v of vectors.cases) {
    const certificate = new X509Certificate(v.certificate_pem);
    const now = Number(v.now);
    const verifier = createSessionBoundVerifier({
      tokens: { validate: async () => ({ sub: 'vector', exp: now + 3600, cnf: sessionBoundConfirmation(certificate) }) },
      now: () => now,
      proofMaxAge: vectors.max_age,
      clockSkew: vectors.clock_skew,
    });
    const uri = new URL(v.request_uri ?? 'https://rs.example/api/items');
    const input = {
      method: v.request_method ?? 'GET',
      scheme: 'https',
      authority: uri.host,
      path: `${uri.pathname}${uri.search}`,
      authorization: [`Bearer ${v.access_token}`],
      sessionBindingProof: [v.proof],
      connection: connectionFor(certificate, Buffer.from(v.ekm_b64url, 'base64url')),
    };
    const outcome = await verifier.verify(input).then(
      () => 'valid',
      (e: unknown) => (e instanceof InvalidProofError && e.error === (v.error ?? 'invalid_proof') ? 'invalid' : `unexpected ${String(e)}`),
    );
    assert.equal(outcome, v.expect, `${v.name}: ${v.why}`);
    if (outcome === 'valid') accepted++;
  }
  assert.equal(accepted, 15);
});
