/**
 * A wedged token cannot hang a request: a fault-injection PKCS#11 module (fixtures/wedge-module.c,
 * compiled here, forwarding to SoftHSM2) makes C_Sign hang while a file exists. The proof then
 * fails with ERR_PKCS11_TIMEOUT at the key's deadline, and once the token answers again the next
 * proof is signed on a fresh session. Own test file: PKCS11_MODULE_PATH (the TLS engine's module)
 * is per process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openClientKey, SessionBoundClient } from '@tether/core/client';
import { Pkcs11Key } from '@tether/pkcs11';
import { removeSoftHsm, softHsm, SOFTHSM_MODULE, type SoftHsm } from '../helpers/softhsm.js';
import { testPki } from '../helpers/pki.js';
import { TestIssuer } from '../helpers/issuer.js';
import { startEchoServer, testVerifier, type RunningServer } from '../helpers/servers.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-wedge-'));
const wedgeFile = join(dir, 'wedge');
const wedgeModule = join(dir, 'wedge.so');
let hsm: SoftHsm;
let issuer: TestIssuer;
let server: RunningServer;

before(async () => {
  const source = fileURLToPath(new URL('./fixtures/wedge-module.c', import.meta.url));
  const includes = fileURLToPath(new URL('../../node_modules/pkcs11js/includes/pkcs11', import.meta.url));
  execFileSync('cc', ['-shared', '-fPIC', '-I', includes, '-o', wedgeModule, source, '-ldl'], { timeout: 60_000 });
  process.env.TETHER_WEDGE_FILE = wedgeFile;
  process.env.TETHER_WEDGE_REAL_MODULE = SOFTHSM_MODULE;
  hsm = await softHsm();
  issuer = await TestIssuer.create();
  server = await startEchoServer(await testPki('p256'), testVerifier(issuer));
});

after(async () => {
  rmSync(wedgeFile, { force: true });
  await server?.close();
  await removeSoftHsm();
  rmSync(dir, { recursive: true, force: true });
});

test('a hanging C_Sign fails the request at the deadline; the next proof uses a new session', async () => {
  const { key } = await openClientKey(hsm.keys.p256.uri, hsm.keys.p256.cert, { modulePath: wedgeModule, signTimeoutMs: 300 });
  assert.ok(key instanceof Pkcs11Key);
  const client = new SessionBoundClient({ cert: hsm.keys.p256.cert, key, ca: (await testPki('p256')).ca.cert, timeoutMs: 10_000 });
  try {
    const first = await issuer.sessionBound(hsm.keys.p256.cert, { sub: 'first' });
    assert.equal((await client.request(`${server.url}/ok`, { token: first })).status, 200);

    writeFileSync(wedgeFile, '');
    const second = await issuer.sessionBound(hsm.keys.p256.cert, { sub: 'second' });
    const started = Date.now();
    await assert.rejects(client.request(`${server.url}/wedged`, { token: second }), (error: unknown) => (error as { code?: string }).code === 'ERR_PKCS11_TIMEOUT');
    const waited = Date.now() - started;
    assert.ok(waited >= 250 && waited < 5000, `failed after ${waited} ms`);
    // The token that was already proven on this connection needs no signature and still works.
    assert.equal((await client.request(`${server.url}/cached`, { token: first })).status, 200);

    rmSync(wedgeFile);
    const response = await client.request(`${server.url}/recovered`, { token: second });
    assert.equal(response.status, 200, response.body.toString());
  } finally {
    rmSync(wedgeFile, { force: true });
    await client.close();
    await key.close();
  }
});
