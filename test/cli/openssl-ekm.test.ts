/**
 * EKM conformance against an independent TLS stack: `openssl s_client -keymatexport` must derive
 * the same exporter value (label EXPORTER-oauth-tls-session-bound, 32 bytes, TLS 1.3) as
 * `deriveSessionExporter` on the server side of the same connection. Fails (does not skip) when
 * openssl is missing: CI has it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer, type TLSSocket } from 'node:tls';
import { certificateThumbprint, deriveSessionExporter, EXPORTER_LABEL, EXPORTER_LENGTH, sessionBoundTlsOptions } from '@tether/core';
import { createDevPki, type KeyType } from '@tether/pki';
import { tempDir } from './helpers/cli.js';

const dir = tempDir('openssl');
after(() => dir.remove());

function openssl(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', args, { timeout: 15_000 }, (error, stdout, stderr) => {
      const code = (error as NodeJS.ErrnoException | null)?.code;
      if (code === 'ENOENT') reject(new Error('openssl is not installed (it is required for this test)'));
      // s_client may exit non-zero after the session ends; the output decides.
      else if (error !== null && stdout === '') reject(new Error(`openssl failed: ${stderr}`));
      else resolve({ stdout, stderr });
    });
    child.stdin?.end();
  });
}

test('openssl is available', async () => {
  const { stdout } = await openssl(['version']);
  assert.match(stdout, /^OpenSSL 3\./);
});

for (const keyType of ['p256', 'ed25519', 'rsa'] as KeyType[]) {
  test(`openssl s_client -keymatexport equals deriveSessionExporter (TLS 1.3, ${keyType} mTLS)`, async () => {
    const pki = await createDevPki({ keyType });
    const files = {
      ca: join(dir.path, `${keyType}-ca.pem`),
      cert: join(dir.path, `${keyType}-client.pem`),
      key: join(dir.path, `${keyType}-client.key`),
    };
    writeFileSync(files.ca, pki.ca.cert);
    writeFileSync(files.cert, pki.clients.client!.cert);
    writeFileSync(files.key, pki.clients.client!.key);

    const connections: Array<{ ekm: string; protocol: string | null; authorized: boolean; thumbprint: string | undefined }> = [];
    const server = createServer(sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert }), (socket: TLSSocket) => {
      const peer = socket.getPeerX509Certificate();
      connections.push({
        ekm: deriveSessionExporter(socket).toString('hex'),
        protocol: socket.getProtocol(),
        authorized: socket.authorized,
        thumbprint: peer === undefined ? undefined : certificateThumbprint(peer),
      });
      socket.on('error', () => undefined);
      socket.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    try {
      const { stdout } = await openssl([
        's_client',
        '-connect', `127.0.0.1:${port}`,
        '-tls1_3',
        '-cert', files.cert,
        '-key', files.key,
        '-CAfile', files.ca,
        '-keymatexport', EXPORTER_LABEL,
        '-keymatexportlen', String(EXPORTER_LENGTH),
      ]);
      const match = /Keying material: ([0-9A-Fa-f]+)/.exec(stdout);
      assert.ok(match, `no "Keying material:" in openssl output:\n${stdout}`);
      const theirs = (match[1] as string).toLowerCase();
      assert.equal(theirs.length, EXPORTER_LENGTH * 2);
      assert.match(stdout, /Label: 'EXPORTER-oauth-tls-session-bound'/);
      assert.match(stdout, /Verify return code: 0 \(ok\)/, 'openssl verified the server certificate');

      assert.equal(connections.length, 1, 'exactly one connection, so both values come from it');
      const ours = connections[0]!;
      assert.equal(ours.protocol, 'TLSv1.3');
      assert.equal(ours.authorized, true, 'the client certificate was presented and verified');
      assert.equal(ours.thumbprint, certificateThumbprint(new (await import('node:crypto')).X509Certificate(pki.clients.client!.cert)));
      assert.equal(theirs, ours.ekm);
    } finally {
      server.close();
    }
  });
}
