/**
 * DPoP through the Express and Fastify adapters (they share the node adapter's header extraction
 * and refusal writing): honest requests, the nonce round trip with DPoP-Nonce exposed on the
 * refusal, and the stolen-token refusal, with exact status and codes.
 */
import assert from 'node:assert/strict';
import { before, describe, it, type TestContext } from 'node:test';
import { DpopClient, type DpopNonceSource } from '@tether/core/dpop';
import { parseWwwAuthenticate } from '@tether/core';
import type { DevPki } from '@tether/pki';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { testVerifier } from '../helpers/servers.js';
import { ADAPTERS } from '../adapters/servers.js';
import { ECHO_PATH } from '../adapters/shared-suite.js';
import { testKey } from './support.js';

for (const adapter of [ADAPTERS.express, ADAPTERS.fastifyH1, ADAPTERS.fastifyH2]) {
  describe(`DPoP through the ${adapter.name}`, () => {
    let pki: DevPki;
    let issuer: TestIssuer;
    before(async () => {
      pki = await testPki();
      issuer = await TestIssuer.create();
    });

    function client(t: TestContext, label = '') {
      const c = new DpopClient({ privateKey: testKey('ES256', label).privateKey, ca: pki.ca.cert, ...(pki.clients.client as { cert: string; key: string }), protocol: adapter.protocol });
      t.after(() => c.close());
      return c;
    }

    it('honest requests, nonce round trip, stolen token', async (t) => {
      const issued: string[] = [];
      const nonce: DpopNonceSource = { issue: () => (issued.push(`nonce-${issued.length}`), issued[issued.length - 1] as string), check: (n) => issued.includes(n) };
      const verifier = testVerifier(issuer, { minimumBinding: 'certificate', dpop: { nonce } });
      const server = await adapter.start(pki, verifier, { allowTls12: false });
      t.after(() => server.close());
      const url = `${server.url}${ECHO_PATH}`;
      const c = client(t);
      const token = await issuer.mint({ cnf: { jkt: await c.thumbprint() } });
      for (let i = 0; i < 10; i++) {
        const res = await c.request(url, { token });
        assert.equal(res.status, 200, res.body.toString());
        assert.equal(res.retried, i === 0);
      }
      assert.deepEqual(c.stats, { requests: 10, attempts: 11, proofsSigned: 11, nonceRetries: 1, noncesReceived: 1 });
      assert.equal(verifier.stats.dpopProofVerifications, 11);
      assert.deepEqual(verifier.stats.failures, { nonce_missing: 1 });

      const thief = client(t, 'thief');
      const stolen = await thief.request(url, { token });
      // First the thief is asked for a nonce (DPoP-Nonce exposed), then its key does not match.
      assert.equal(stolen.status, 401);
      assert.equal(stolen.retried, true);
      const challenge = parseWwwAuthenticate(stolen.headers['www-authenticate']);
      assert.equal(challenge[0]?.scheme, 'dpop');
      assert.equal(challenge[0]?.params.error, 'invalid_token');
      assert.equal((JSON.parse(stolen.body.toString()) as { error: string }).error, 'invalid_token');
      assert.equal(stolen.headers['cache-control'], 'no-store');
      assert.deepEqual(verifier.stats.failures, { nonce_missing: 2, jkt_mismatch: 1 });
    });
  });
}
