import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, killAll, tempDir, tether } from './helpers/cli.js';

const dir = tempDir('pki');
before(ensureBuilt);
after(() => {
  killAll();
  dir.remove();
});

const expectedKey: Record<string, { type: string; curve?: string }> = {
  p256: { type: 'ec', curve: 'prime256v1' },
  p384: { type: 'ec', curve: 'secp384r1' },
  ed25519: { type: 'ed25519' },
  rsa: { type: 'rsa' },
};

for (const keyType of ['p256', 'p384', 'ed25519', 'rsa']) {
  test(`pki init --key-type ${keyType} writes a CA, a localhost server and SPIFFE clients`, async () => {
    const out = join(dir.path, keyType);
    const r = await tether(['pki', 'init', '--out', out, '--key-type', keyType, '--client', 'alice', '--client', 'bob']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON summary line');
    const summary = JSON.parse(lines[0] as string) as { dir: string; keyType: string; files: string[] };
    assert.equal(summary.keyType, keyType);
    const names = ['ca.pem', 'ca.key', 'server.pem', 'server.key', 'alice.pem', 'alice.key', 'bob.pem', 'bob.key'];
    assert.deepEqual(summary.files.map((f) => f.slice(out.length + 1)).sort(), [...names].sort());

    const cert = (name: string) => new X509Certificate(readFileSync(join(out, `${name}.pem`)));
    const key = (name: string) => createPrivateKey(readFileSync(join(out, `${name}.key`)));
    const ca = cert('ca');
    assert.ok(ca.ca, 'ca.pem is a CA certificate');

    const server = cert('server');
    const serverSan = (server.subjectAltName ?? '').split(', ');
    assert.ok(serverSan.includes('DNS:localhost'), server.subjectAltName);
    assert.ok(serverSan.includes('IP Address:127.0.0.1'), server.subjectAltName);
    assert.ok(serverSan.includes('IP Address:0:0:0:0:0:0:0:1') || serverSan.includes('IP Address:::1'), server.subjectAltName);
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkIP('::1'), '::1');

    for (const name of ['server', 'alice', 'bob']) {
      const c = cert(name);
      assert.ok(c.checkIssued(ca) && c.verify(ca.publicKey), `${name} is issued by the CA`);
      assert.ok(c.checkPrivateKey(key(name)), `${name}.key belongs to ${name}.pem`);
      assert.equal(c.publicKey.asymmetricKeyType, expectedKey[keyType]?.type);
      if (expectedKey[keyType]?.curve !== undefined) assert.equal(c.publicKey.asymmetricKeyDetails?.namedCurve, expectedKey[keyType]?.curve);
      assert.equal(statSync(join(out, `${name}.key`)).mode & 0o777, 0o600, `${name}.key is private`);
    }
    for (const name of ['alice', 'bob']) {
      assert.equal(cert(name).subjectAltName, `URI:spiffe://tether.local/${name}`);
    }
  });
}

test('pki init defaults: one client named client, --trust-domain is honoured', async () => {
  const out = join(dir.path, 'defaults');
  const r = await tether(['pki', 'init', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const client = new X509Certificate(readFileSync(join(out, 'client.pem')));
  assert.equal(client.subjectAltName, 'URI:spiffe://tether.local/client');
  assert.equal(client.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

  const other = join(dir.path, 'domain');
  const r2 = await tether(['pki', 'init', '--out', other, '--trust-domain', 'example.org', '--client', 'agent']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(new X509Certificate(readFileSync(join(other, 'agent.pem'))).subjectAltName, 'URI:spiffe://example.org/agent');
});
