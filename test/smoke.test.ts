import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionBoundClient } from '@tether/core/client';
import { testPki } from './helpers/pki.js';
import { TestIssuer } from './helpers/issuer.js';
import { startEchoServer, testVerifier } from './helpers/servers.js';

test('smoke: h2 honest client', async () => {
  const pki = await testPki();
  const issuer = await TestIssuer.create();
  const server = await startEchoServer(pki, testVerifier(issuer));
  const client = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert });
  try {
    const token = await issuer.sessionBound(pki.clients.client!.cert);
    for (let i = 0; i < 10; i++) {
      const r = await client.request(`${server.url}/x`, { token });
      assert.equal(r.status, 200, r.body.toString());
    }
    assert.equal(client.stats.proofsSigned, 1);
    assert.equal(server.verifier.stats.proofVerifications, 1);
  } finally {
    await client.close();
    await server.close();
  }
});
