/**
 * `tether as --config FILE` in a child process with a `trustedIssuers` entry (discovery, `caFiles`
 * relative to the file): a person's IdP token exchanged over mTLS; a refused entry exits 2 naming it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXPORTER_LABEL, certificateThumbprint } from '@tether/core';
import { runAuthorizationServerCommand } from '@tether/as';
import { spawnAs } from './helpers/as-child.js';
import { idpKey, mintIdpToken, startTestIdp } from './helpers/idp.js';
import { ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, asPki, claimsOf, clientWith, removeDir, standardClient, tempDir } from './helpers/setup.js';

test('tether as --config with trustedIssuers: exchange of an IdP token over mTLS; a bad entry exits 2', async (t) => {
  const dir = tempDir('tether-idp-cli-');
  t.after(() => removeDir(dir));
  const idp = await startTestIdp(dir);
  t.after(() => idp.close());
  const pki = await asPki();
  const key = await idpKey('k1');
  const issuer = `${idp.url}/realm`;
  idp.documents.set('/realm/.well-known/openid-configuration', { issuer, jwks_uri: `${idp.url}/realm/certs` });
  idp.documents.set('/realm/certs', { keys: [key.jwk] });
  for (const [name, pem] of [['ca.pem', pki.ca.cert], ['server.pem', pki.server.cert], ['server.key', pki.server.key]] as const) writeFileSync(join(dir, name), pem);
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    tls: { certFile: 'server.pem', keyFile: 'server.key' },
    clientAuthentication: { tls_client_auth: { caFiles: ['ca.pem'] } },
    dataDir: 'data',
    logging: { level: 'silent' },
    clients: [standardClient('a')],
    resources: [{ identifier: 'https://mcp.example', binding: 'session' }],
    trustedIssuers: [{ issuer, discovery: true, caFiles: ['idp-ca.pem'], audiences: ['mcp-client'], claims: ['email'], clients: ['a'] }],
  };
  const file = join(dir, 'as.json');
  writeFileSync(file, JSON.stringify(config));

  const as = await spawnAs(t, ['--config', file]);
  const client = clientWith(pki.clients.a, pki);
  t.after(() => client.close());
  const now = Math.floor(Date.now() / 1000);
  const subject = await mintIdpToken({ iss: issuer, sub: 'alice', aud: 'mcp-client', iat: now, exp: now + 120, email: 'alice@example.com', scope: 'read' }, { key, typ: 'at+jwt' });
  const r = await client.post(`${as.ready.listening}/token`, {
    grant_type: TOKEN_EXCHANGE,
    client_id: 'a',
    subject_token: subject,
    subject_token_type: ACCESS_TOKEN_TYPE,
    resource: 'https://mcp.example',
  });
  assert.equal(r.status, 200, r.text);
  const c = claimsOf(r.json?.access_token as string);
  assert.equal(c.sub, 'alice');
  assert.deepEqual(c.act, { sub: 'a' });
  assert.deepEqual(c.sub_id, { format: 'iss_sub', iss: issuer, sub: 'alice' });
  assert.equal(c.email, 'alice@example.com');
  assert.deepEqual(c.cnf, { 'x5t#S256': certificateThumbprint(new X509Certificate(pki.clients.a!.cert)), tls_exp: EXPORTER_LABEL });
  assert.equal(await as.stop(), 0);

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...config, trustedIssuers: [{ ...config.trustedIssuers[0], issuer: 'http://idp.example', claims: ['aud'] }] }));
  let stderr = '';
  const code = await runAuthorizationServerCommand(['--config', bad], { stdout: { write: () => undefined }, stderr: { write: (s: string) => void (stderr += s) } });
  assert.equal(code, 2);
  assert.match(stderr, /trustedIssuers\[0\]\.issuer: must be an https URL/);
  assert.match(stderr, /trustedIssuers\[0\]\.claims\[0\]: 'aud' is reserved/);
});
