/**
 * `tether egress --key pkcs11:... --token-endpoint ...` as a child process: the egress obtains the
 * agent's tokens itself from a real authorization server (client_credentials, tls_client_auth
 * through OpenSSL's pkcs11 engine with the token-held key) and proves them upstream with C_Sign.
 * Own file: the authorization server's test CA certifies the token key here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSessionBoundVerifier, jwtAccessTokenValidator, remoteJwks } from '@tether/core';
import { certifyTokenKey, removeSoftHsm, softHsm, type SoftHsm } from '../helpers/softhsm.js';
import { NAMES, spiffe, standardClient, startTestAs, type TestAs } from '../as/helpers/setup.js';
import { startEchoServer, type RunningServer } from '../helpers/servers.js';
import { spawnSidecar } from '../sidecar/helpers/child.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-pkcs11-egress-'));
let hsm: SoftHsm;
let as: TestAs;
let resource: RunningServer;

before(async () => {
  hsm = await softHsm();
  as = await startTestAs({ clients: [...NAMES.map((n) => standardClient(n)), standardClient('hsm-agent')] });
  const verifier = createSessionBoundVerifier({
    tokens: jwtAccessTokenValidator({ keys: remoteJwks(as.server.jwksUri, { ca: as.pki.ca.cert }), issuer: as.server.issuer, audience: spiffe('b') }),
  });
  resource = await startEchoServer(as.pki, verifier);
  writeFileSync(join(dir, 'agent.pem'), await certifyTokenKey(hsm.keys.p256, as.pki.ca, 'hsm-agent'));
  writeFileSync(join(dir, 'ca.pem'), as.pki.ca.cert);
});

after(async () => {
  await resource?.close();
  await as?.close();
  await removeSoftHsm();
  rmSync(dir, { recursive: true, force: true });
});

test('the egress fetches a session-bound token with the token-held key and proves it upstream', async (t) => {
  const egress = await spawnSidecar(t, 'egress', [
    '--listen', '127.0.0.1:0', '--cert', join(dir, 'agent.pem'), '--key', hsm.keys.p256.uri, '--pkcs11-module', hsm.modulePath,
    '--ca', join(dir, 'ca.pem'), '--route', `rs=${resource.url}`, '--audience', `rs=${spiffe('b')}`,
    '--token-endpoint', `${as.server.url}/token`, '--client-id', 'hsm-agent', '--egress-token', 'rs=read',
  ]);
  for (let i = 0; i < 5; i++) {
    const response = await fetch(`${egress.ready.listening}/rs/items`, { signal: AbortSignal.timeout(15_000) });
    const body = (await response.json()) as { principal: { client_id: string; binding: string } };
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(body.principal.client_id, 'hsm-agent');
    assert.equal(body.principal.binding, 'session');
  }
  assert.equal(resource.verifier.stats.proofVerifications, 1);
  assert.ok(!egress.stderr().includes(hsm.pin));
  egress.child.kill('SIGTERM');
  assert.equal(await egress.exited, 0);
});
