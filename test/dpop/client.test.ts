/**
 * DpopClient against a scripted HTTPS server: what it sends (scheme, fresh proof per attempt, ath,
 * htu without query, nonce), the nonce rules of RFC 9449 sections 8, 8.2 and 9 (401 DPoP
 * challenge, 400 JSON error from an authorization server, nonce on a 200), and exact counters.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { accessTokenHash } from '@tether/core';
import { DpopClient, verifyDpopProof } from '@tether/core/dpop';
import { MemoryReplayStore } from '@tether/core/verifier';
import { testPki } from '../helpers/pki.js';
import { json, startServer, type Handler, type RecordedRequest } from '../unit/support/http.js';
import { decodeSegment, testKey } from './support.js';

async function setup(t: TestContext, handler: Handler) {
  const pki = await testPki();
  const server = await startServer(handler, pki.server);
  t.after(() => server.close());
  const client = new DpopClient({ privateKey: testKey('ES256').privateKey, ca: pki.ca.cert, protocol: 'http/1.1' });
  t.after(() => client.close());
  // The dev PKI's server certificate names localhost/127.0.0.1.
  return { server, client };
}

function proofClaims(req: RecordedRequest): Record<string, unknown> {
  const proof = req.headers.dpop as string;
  return decodeSegment(proof.split('.')[1] as string) as Record<string, unknown>;
}

test('every request carries Authorization: DPoP and a fresh proof with ath and htu without query', async (t) => {
  const { server, client } = await setup(t, (_req, res) => json(res, 200, { ok: true }));
  const replayStore = new MemoryReplayStore();
  for (let i = 0; i < 3; i++) {
    const res = await client.request(`${server.url}/r/x?page=${i}#f`, { token: 'tok.en-1', method: 'post', body: 'x' });
    assert.equal(res.status, 200);
  }
  assert.equal(server.requests.length, 3);
  const jtis = new Set<unknown>();
  for (const req of server.requests) {
    assert.equal(req.headers.authorization, 'DPoP tok.en-1');
    const c = proofClaims(req);
    assert.equal(c.htm, 'POST');
    assert.equal(c.htu, `${server.url}/r/x`);
    assert.equal(c.ath, accessTokenHash('tok.en-1'));
    assert.equal(c.nonce, undefined);
    jtis.add(c.jti);
    await verifyDpopProof(req.headers.dpop as string, { htm: 'POST', htu: `${server.url}${req.url}`, accessToken: 'tok.en-1', replayStore });
  }
  assert.equal(jtis.size, 3);
  assert.deepEqual(client.stats, { requests: 3, attempts: 3, proofsSigned: 3, nonceRetries: 0, noncesReceived: 0 });
});

test('without a token: no Authorization, no ath (token endpoint use); 400 use_dpop_nonce JSON is retried once with the nonce', async (t) => {
  let n = 0;
  const { server, client } = await setup(t, (req, res) => {
    n++;
    if (proofClaims(req).nonce !== 'as-nonce') {
      res.setHeader('dpop-nonce', 'as-nonce');
      json(res, 400, { error: 'use_dpop_nonce', error_description: 'Authorization server requires nonce in DPoP proof' });
    } else json(res, 200, { access_token: 'x' });
  });
  const res = await client.request(`${server.url}/token`, { method: 'POST', body: 'grant_type=client_credentials' });
  assert.equal(res.status, 200);
  assert.equal(res.retried, true);
  assert.equal(n, 2);
  const [first, second] = server.requests as [RecordedRequest, RecordedRequest];
  assert.equal(first.headers.authorization, undefined);
  assert.equal(proofClaims(first).ath, undefined);
  assert.equal(proofClaims(second).nonce, 'as-nonce');
  assert.notEqual(proofClaims(first).jti, proofClaims(second).jti);
  assert.deepEqual(client.stats, { requests: 1, attempts: 2, proofsSigned: 2, nonceRetries: 1, noncesReceived: 1 });
});

test('a server that keeps refusing the same nonce gets exactly one retry, not a loop', async (t) => {
  const { server, client } = await setup(t, (_req, res) => {
    res.setHeader('dpop-nonce', 'n1');
    res.setHeader('www-authenticate', 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"');
    json(res, 401, { error: 'use_dpop_nonce', error_description: 'Resource server requires nonce in DPoP proof' });
  });
  const first = await client.request(`${server.url}/r`, { token: 't' });
  assert.equal(first.status, 401);
  assert.equal(first.retried, true);
  // The next request already uses n1; refused with n1 again, it is not retried.
  const second = await client.request(`${server.url}/r`, { token: 't' });
  assert.equal(second.status, 401);
  assert.equal(second.retried, false);
  assert.deepEqual(client.stats, { requests: 2, attempts: 3, proofsSigned: 3, nonceRetries: 1, noncesReceived: 3 });
  assert.deepEqual(server.requests.map((r) => proofClaims(r).nonce), [undefined, 'n1', 'n1']);
});

test('a nonce on a 200 is used from the next request on (RFC 9449 8.2); other 401s are not retried', async (t) => {
  let count = 0;
  const { server, client } = await setup(t, (_req, res) => {
    count++;
    if (count === 1) res.setHeader('dpop-nonce', 'next-1');
    if (count === 3) {
      res.setHeader('www-authenticate', 'DPoP error="invalid_dpop_proof", error_description="x", algs="ES256"');
      json(res, 401, { error: 'invalid_dpop_proof', error_description: 'x' });
      return;
    }
    json(res, 200, {});
  });
  assert.equal((await client.request(`${server.url}/a`, { token: 't' })).status, 200);
  assert.equal(client.nonceFor(server.url), 'next-1');
  assert.equal((await client.request(`${server.url}/a`, { token: 't' })).status, 200);
  const refused = await client.request(`${server.url}/a`, { token: 't' });
  assert.equal(refused.status, 401);
  assert.equal(refused.retried, false);
  assert.deepEqual(server.requests.map((r) => proofClaims(r).nonce), [undefined, 'next-1', 'next-1']);
  assert.deepEqual(client.stats, { requests: 3, attempts: 3, proofsSigned: 3, nonceRetries: 0, noncesReceived: 1 });
});

test('configuration: keys that cannot sign DPoP proofs and non-https URLs are refused', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  assert.throws(() => new DpopClient({ privateKey: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey }), /DPoP/);
  assert.throws(() => new DpopClient({ privateKey: testKey('ES256').publicKey }), /private key/);
  assert.throws(() => new DpopClient({ privateKey: testKey('ES256').privateKey, alg: 'PS256' }), /algorithm/);
  const c = new DpopClient({ privateKey: testKey('EdDSA').privateKey });
  await assert.rejects(c.request('http://127.0.0.1/x'), TypeError);
  assert.deepEqual(c.publicJwk, testKey('EdDSA').jwk);
  await c.close();
});
