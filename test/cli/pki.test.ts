import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
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

test('pki init refuses to replace an existing CA without --force; with it, the old certificates stop verifying', async () => {
  const out = join(dir.path, 'again');
  assert.equal((await tether(['pki', 'init', '--out', out, '--client', 'agent'])).code, 0);
  const before = readFileSync(join(out, 'ca.pem'), 'utf8');
  const again = await tether(['pki', 'init', '--out', out]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already holds a CA: --force replaces it/);
  assert.equal(readFileSync(join(out, 'ca.pem'), 'utf8'), before, 'the CA is untouched');
  const oldAgent = new X509Certificate(readFileSync(join(out, 'agent.pem')));

  const forced = await tether(['pki', 'init', '--out', out, '--force', '--client', 'other']);
  assert.equal(forced.code, 0, forced.stderr);
  const ca = new X509Certificate(readFileSync(join(out, 'ca.pem')));
  assert.notEqual(ca.fingerprint256, new X509Certificate(before).fingerprint256);
  assert.equal(oldAgent.verify(ca.publicKey), false, 'what --force costs');
});

/** A TLS handshake to a server with `cert`/`key`, verifying it by `servername` against `ca`: the name the server answered to. */
async function handshake(cert: Buffer, key: Buffer, ca: Buffer, servername: string): Promise<string | Error> {
  const server = createTlsServer({ cert, key }, (s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as AddressInfo).port;
    return await new Promise<string | Error>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername, timeout: 5000 }, () => {
        resolve(servername);
        socket.destroy();
      });
      socket.once('error', (error) => resolve(error));
      socket.once('timeout', () => socket.destroy(new Error('handshake timed out')));
    });
  } finally {
    server.close();
  }
}

test('pki issue adds a client and a server certificate for another name to an existing CA', async () => {
  const out = join(dir.path, 'issue');
  assert.equal((await tether(['pki', 'init', '--out', out, '--key-type', 'p384'])).code, 0);
  const ca = new X509Certificate(readFileSync(join(out, 'ca.pem')));

  const client = await tether(['pki', 'issue', '--ca-dir', out, '--client', 'agent-c', '--trust-domain', 'prod.example']);
  assert.equal(client.code, 0, client.stderr);
  const agent = new X509Certificate(readFileSync(join(out, 'agent-c.pem')));
  assert.equal(agent.subjectAltName, 'URI:spiffe://prod.example/agent-c');
  assert.ok(agent.verify(ca.publicKey), 'issued by the existing CA');
  assert.equal(createPrivateKey(readFileSync(join(out, 'agent-c.key'))).asymmetricKeyDetails?.namedCurve, 'secp384r1', "the CA's key type");
  assert.equal(statSync(join(out, 'agent-c.key')).mode & 0o777, 0o600);

  const server = await tether(['pki', 'issue', '--ca-dir', out, '--server', 'api', '--san', 'dns:api.default.svc', '--san', 'ip:10.0.0.7']);
  assert.equal(server.code, 0, server.stderr);
  assert.deepEqual(JSON.parse(server.stdout).san, 'DNS:api.default.svc, IP Address:10.0.0.7');
  const [pem, key, caPem] = ['api.pem', 'api.key', 'ca.pem'].map((f) => readFileSync(join(out, f)));
  assert.equal(await handshake(pem as Buffer, key as Buffer, caPem as Buffer, 'api.default.svc'), 'api.default.svc');
  const wrongName = await handshake(pem as Buffer, key as Buffer, caPem as Buffer, 'localhost');
  assert.ok(wrongName instanceof Error && /altnames|Hostname/i.test(wrongName.message), String(wrongName));

  const again = await tether(['pki', 'issue', '--ca-dir', out, '--server', 'api']);
  assert.equal(again.code, 2, 'no silent overwrite');
  for (const [args, message] of [
    [['--server', 'x', '--san', 'dns:bad_name!'], /is not dns:NAME, ip:ADDRESS or uri:URI/],
    [['--server', 'x', '--san', 'ip:999.1.1.1'], /is not dns:NAME/],
    [['--client', 'x', '--san', 'dns:x'], /--san is for --server/],
    [['--client', 'x', '--server', 'y'], /exactly one of --client NAME and --server NAME/],
  ] as const) {
    const r = await tether(['pki', 'issue', '--ca-dir', out, ...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, message);
  }
  const noCa = await tether(['pki', 'issue', '--ca-dir', join(dir.path, 'nowhere'), '--client', 'x']);
  assert.equal(noCa.code, 2);
  assert.match(noCa.stderr, /^tether pki issue: cannot read --ca-dir .*ca\.pem: no such file/);
});
