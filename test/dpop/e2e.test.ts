/**
 * DPoP end to end over real TLS on 127.0.0.1:0 with the node adapter, on HTTP/2 and HTTP/1.1:
 * the honest DpopClient (one signature and one verification per request), the Bearer downgrade of
 * a jkt token, a stolen token used with the thief's own key, a token mixing jkt and tls_exp,
 * duplicate DPoP fields, and the nonce round trip (use_dpop_nonce, DPoP-Nonce, one retry).
 * Every refusal asserts exact status, error code, challenge scheme and body.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it, type TestContext } from 'node:test';
import { DPOP_ALGORITHMS, DpopClient, createDpopProof, jwkThumbprint, type DpopNonceSource } from '@tether/core/dpop';
import { EXPORTER_LABEL, certificateThumbprint, parseWwwAuthenticate, type SessionBoundVerifierOptions } from '@tether/core';
import type { DevPki } from '@tether/pki';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { startEchoServer, testVerifier } from '../helpers/servers.js';
import { openRawConnection } from '../adapters/raw.js';
import { testKey } from './support.js';

const PATH = '/api/echo';
const ALGS = DPOP_ALGORITHMS.join(' ');

interface AnyResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string | Buffer;
}

function assertRefusal(res: AnyResponse, status: number, error: string, scheme: 'dpop' | 'bearer' = 'dpop'): void {
  const raw = typeof res.body === 'string' ? res.body : res.body.toString('utf8');
  assert.equal(res.status, status, raw);
  assert.equal(res.headers['cache-control'], 'no-store');
  const body = JSON.parse(raw) as Record<string, string>;
  assert.deepEqual(Object.keys(body).sort(), ['error', 'error_description']);
  assert.equal(body.error, error);
  const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
  assert.equal(challenges.length, 1, String(res.headers['www-authenticate']));
  assert.equal(challenges[0]?.scheme, scheme);
  assert.equal(challenges[0]?.params.error, error);
  if (scheme === 'dpop') assert.equal(challenges[0]?.params.algs, ALGS);
}

for (const protocol of ['h2', 'http/1.1'] as const) {
  describe(`DPoP over the node adapter, ${protocol}`, () => {
    let pki: DevPki;
    let issuer: TestIssuer;

    before(async () => {
      pki = await testPki();
      issuer = await TestIssuer.create();
    });

    const identity = (who: 'client' | 'attacker') => pki.clients[who] as { cert: string; key: string };

    async function serve(t: TestContext, options: Partial<SessionBoundVerifierOptions> = {}) {
      const verifier = testVerifier(issuer, { minimumBinding: 'certificate', ...options });
      const server = await startEchoServer(pki, verifier, { protocol });
      t.after(() => server.close());
      return { verifier, url: `${server.url}${PATH}`, origin: server.url };
    }

    function client(t: TestContext, keyLabel = '', who: 'client' | 'attacker' = 'client') {
      const c = new DpopClient({ privateKey: testKey('ES256', keyLabel).privateKey, ca: pki.ca.cert, ...identity(who), protocol });
      t.after(() => c.close());
      return c;
    }

    it('honest DPoP client: 100 requests -> 100 proofs signed, 100 verified, 100 accepted', async (t) => {
      const { verifier, url } = await serve(t);
      const c = client(t);
      const token = await issuer.mint({ cnf: { jkt: await c.thumbprint() } });
      for (let i = 0; i < 100; i++) {
        const res = await c.request(url, { token, method: i % 2 === 0 ? 'GET' : 'POST', ...(i % 2 === 0 ? {} : { body: '{}' }) });
        assert.equal(res.status, 200, res.body.toString());
        const echoed = JSON.parse(res.body.toString()) as { principal: { binding: string; sub: string } };
        assert.equal(echoed.principal.binding, 'dpop');
        assert.equal(res.retried, false);
      }
      assert.deepEqual(c.stats, { requests: 100, attempts: 100, proofsSigned: 100, nonceRetries: 0, noncesReceived: 0 });
      assert.equal(verifier.stats.dpopProofVerifications, 100);
      assert.equal(verifier.stats.accepted, 100);
      assert.equal(verifier.stats.proofVerifications, 0);
      assert.deepEqual(verifier.stats.failures, {});
    });

    it('a jkt token presented with the Bearer scheme -> 401 invalid_token (RFC 9449 7.2)', async (t) => {
      const { verifier, origin } = await serve(t);
      const token = await issuer.mint({ cnf: { jkt: await jwkThumbprint(testKey('ES256').publicKey) } });
      const conn = await openRawConnection(origin, identity('client'), { protocol, ca: pki.ca.cert });
      t.after(() => conn.close());
      const proof = await createDpopProof({ privateKey: testKey('ES256').privateKey, htm: 'GET', htu: `${origin}${PATH}`, accessToken: token });
      assertRefusal(await conn.request({ path: PATH, headers: [['authorization', `Bearer ${token}`]] }), 401, 'invalid_token', 'bearer');
      assertRefusal(await conn.request({ path: PATH, headers: [['authorization', `Bearer ${token}`], ['dpop', proof]] }), 401, 'invalid_token', 'bearer');
      assert.equal(verifier.stats.dpopProofVerifications, 0);
      assert.deepEqual(verifier.stats.failures, { binding_unsupported: 2 });
    });

    it('a stolen token used with the thief\'s own DPoP key (and certificate) -> 401 invalid_token', async (t) => {
      const { verifier, url } = await serve(t);
      const owner = client(t);
      const token = await issuer.mint({ cnf: { jkt: await owner.thumbprint() } });
      const thief = client(t, 'thief', 'attacker');
      const res = await thief.request(url, { token });
      assertRefusal({ ...res, body: res.body }, 401, 'invalid_token');
      assert.match(String(res.headers['www-authenticate']), /error_description="Invalid DPoP key binding"/);
      assert.equal(thief.stats.proofsSigned, 1, 'no retry on invalid_token');
      assert.deepEqual(verifier.stats.failures, { jkt_mismatch: 1 });
    });

    it('a proof captured from the honest client and replayed by the thief -> 401 invalid_dpop_proof (jti replay)', async (t) => {
      const { verifier, origin } = await serve(t);
      const key = testKey('ES256');
      const token = await issuer.mint({ cnf: { jkt: await jwkThumbprint(key.publicKey) } });
      const proof = await createDpopProof({ privateKey: key.privateKey, htm: 'GET', htu: `${origin}${PATH}`, accessToken: token });
      const honest = await openRawConnection(origin, identity('client'), { protocol, ca: pki.ca.cert });
      const thief = await openRawConnection(origin, identity('attacker'), { protocol, ca: pki.ca.cert });
      t.after(() => Promise.all([honest.close(), thief.close()]));
      const headers: Array<[string, string]> = [['authorization', `DPoP ${token}`], ['dpop', proof]];
      assert.equal((await honest.request({ path: PATH, headers })).status, 200);
      assertRefusal(await thief.request({ path: PATH, headers }), 401, 'invalid_dpop_proof');
      assert.deepEqual(verifier.stats.failures, { jti_replay: 1 });
    });

    it('a token with both jkt and tls_exp -> 401 invalid_token', async (t) => {
      const { verifier, url } = await serve(t);
      const c = client(t);
      const cert = new X509Certificate(identity('client').cert);
      for (const cnf of [{ jkt: await c.thumbprint(), tls_exp: EXPORTER_LABEL }, { jkt: await c.thumbprint(), tls_exp: EXPORTER_LABEL, 'x5t#S256': certificateThumbprint(cert) }]) {
        const token = await issuer.mint({ cnf });
        const res = await c.request(url, { token });
        assertRefusal(res, 401, 'invalid_token');
      }
      assert.deepEqual(verifier.stats.failures, { cnf: 2 });
      assert.equal(verifier.stats.dpopProofVerifications, 0);
    });

    it('DPoP scheme with a token lacking cnf.jkt -> 401 invalid_token; two DPoP fields -> 400 invalid_request; DPoP plus Session-Binding-Proof -> 400', async (t) => {
      const { verifier, origin, url } = await serve(t);
      const c = client(t);
      assertRefusal(await c.request(url, { token: await issuer.mint() }), 401, 'invalid_token');
      const token = await issuer.mint({ cnf: { jkt: await c.thumbprint() } });
      const conn = await openRawConnection(origin, identity('client'), { protocol, ca: pki.ca.cert });
      t.after(() => conn.close());
      const proof = () => createDpopProof({ privateKey: testKey('ES256').privateKey, htm: 'GET', htu: `${origin}${PATH}`, accessToken: token });
      assertRefusal(await conn.request({ path: PATH, headers: [['authorization', `DPoP ${token}`], ['dpop', await proof()], ['DPoP', await proof()]] }), 400, 'invalid_request');
      assertRefusal(await conn.request({ path: PATH, headers: [['authorization', `DPoP ${token}`], ['dpop', await proof()], ['session-binding-proof', await conn.proof(token)]] }), 400, 'invalid_request');
      assertRefusal(await conn.request({ path: PATH, headers: [['authorization', `DPoP ${token}`]] }), 401, 'invalid_dpop_proof');
      assert.deepEqual(verifier.stats.failures, { dpop_not_bound: 1, duplicate_dpop: 1, dpop_with_session_proof: 1, dpop_missing: 1 });
    });

    it('nonce round trip: use_dpop_nonce with DPoP-Nonce, one retry with the nonce, then the nonce is reused', async (t) => {
      const issued: string[] = [];
      const nonce: DpopNonceSource = {
        issue: () => {
          const n = `n${issued.length + 1}.${Math.random().toString(36).slice(2)}`;
          issued.push(n);
          return n;
        },
        check: (n) => issued.includes(n),
      };
      const { verifier, url, origin } = await serve(t, { dpop: { nonce } });
      // What the server sends: 401, DPoP challenge with use_dpop_nonce, and a DPoP-Nonce header.
      const conn = await openRawConnection(origin, identity('client'), { protocol, ca: pki.ca.cert });
      t.after(() => conn.close());
      const key = testKey('ES256');
      const token = await issuer.mint({ cnf: { jkt: await jwkThumbprint(key.publicKey) } });
      const bare = await conn.request({ path: PATH, headers: [['authorization', `DPoP ${token}`], ['dpop', await createDpopProof({ privateKey: key.privateKey, htm: 'GET', htu: `${origin}${PATH}`, accessToken: token })]] });
      assertRefusal(bare, 401, 'use_dpop_nonce');
      assert.equal(bare.headers['dpop-nonce'], issued[0]);

      const c = client(t);
      const first = await c.request(url, { token });
      assert.equal(first.status, 200, first.body.toString());
      assert.equal(first.retried, true);
      assert.equal(c.nonceFor(origin), issued[1]);
      const second = await c.request(url, { token });
      assert.equal(second.status, 200);
      assert.equal(second.retried, false);
      assert.deepEqual(c.stats, { requests: 2, attempts: 3, proofsSigned: 3, nonceRetries: 1, noncesReceived: 1 });
      assert.equal(verifier.stats.accepted, 2);
      assert.deepEqual(verifier.stats.failures, { nonce_missing: 2 });
    });
  });
}
