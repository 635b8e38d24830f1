/**
 * The CLI with a key held in SoftHSM2, as real child processes: `tether fetch --key pkcs11:...`
 * against `tether resource`, which accepts the binding made with the token-held key, and
 * `tether egress --key pkcs11:...` in front of it, through a certificate rotation.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { issueClientCertificate } from '@tether/pki';
import { spawnSidecar } from '../sidecar/helpers/child.js';
import { waitFor } from '../helpers/wait.js';
import { ensureBuilt, isCleanError, killAll, ResourceProcess, tempDir, tether } from '../cli/helpers/cli.js';
import { removeSoftHsm, softHsm, type SoftHsm } from '../helpers/softhsm.js';
import { testPki } from '../helpers/pki.js';

const dir = tempDir('pkcs11');
const file = (name: string) => join(dir.path, name);
let hsm: SoftHsm;
let resource: ResourceProcess;
let url: string;
let token: string;

/** Environment of the children: the SoftHSM2 configuration, no module path unless asked. */
const env = (extra: Record<string, string> = {}) => ({ ...hsm.env, PKCS11_MODULE_PATH: '', ...extra });

/** The summary line `tether fetch -v` ends its stderr with. */
function summary(stderr: string): Record<string, number> {
  const last = (stderr.trim().split('\n').pop() ?? '').replace(/^\* /, '');
  return Object.fromEntries(last.split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k as string, Number(v)]));
}

before(async () => {
  ensureBuilt();
  hsm = await softHsm();
  const pki = await testPki('p256');
  writeFileSync(file('ca.pem'), pki.ca.cert);
  writeFileSync(file('server.pem'), pki.server.cert);
  writeFileSync(file('server.key'), pki.server.key, { mode: 0o600 });
  const issuer = await tether(['dev-issuer', '--out', file('issuer')]);
  assert.equal(issuer.code, 0, issuer.stderr);
  const minted = await tether(['dev-token', '--issuer-key', join(file('issuer'), 'issuer.key'), '--cert', hsm.keys.p256.certPath]);
  assert.equal(minted.code, 0, minted.stderr);
  token = minted.stdout.trim();
  ({ resource, url } = await ResourceProcess.start(['--cert', file('server.pem'), '--key', file('server.key'), '--ca', file('ca.pem'), '--jwks-file', join(file('issuer'), 'jwks.json')]));
});

after(async () => {
  await resource?.stop();
  killAll();
  dir.remove();
  await removeSoftHsm();
});

describe('tether fetch --key pkcs11:...', () => {
  test('50 requests on one connection: one proof signed in the token, one verification in tether resource', async () => {
    const before = await resource.stats();
    const r = await tether(['fetch', `${url}/hsm`, '--cert', hsm.keys.p256.certPath, '--key', hsm.keys.p256.uri, '--pkcs11-module', hsm.modulePath, '--ca', file('ca.pem'), '--token', token, '-n', '50', '-v'], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('< ')).length, 50, r.stderr);
    assert.deepEqual(summary(r.stderr), { requests: 50, proofs_signed: 1, connections: 1, retries: 0 });
    const stats = await resource.stats();
    assert.equal((stats.proofVerifications as number) - (before.proofVerifications as number), 1);
    assert.equal((stats.accepted as number) - (before.accepted as number), 50);
  });

  test('module from PKCS11_MODULE_PATH, PIN from --pkcs11-pin-file, HTTP/1.1', async () => {
    const r = await tether(['fetch', `${url}/hsm`, '--cert', hsm.keys.p256.certPath, '--key', hsm.keys.p256.bareUri, '--pkcs11-pin-file', hsm.pinFile, '--ca', file('ca.pem'), '--token', token, '--http1.1', '-n', '3', '-v'], {
      env: env({ PKCS11_MODULE_PATH: hsm.modulePath }),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(summary(r.stderr), { requests: 3, proofs_signed: 1, connections: 1, retries: 0 });
  });

  test('bad input exits 2 with one clean line: wrong PIN (not echoed), no module, unknown key, bad URI', async () => {
    const base = ['fetch', `${url}/hsm`, '--cert', hsm.keys.p256.certPath, '--ca', file('ca.pem'), '--token', token];
    const cases: Array<[string[], RegExp]> = [
      [['--key', `${hsm.keys.p256.bareUri}?pin-value=11112222`, '--pkcs11-module', hsm.modulePath], /PIN/],
      [['--key', hsm.keys.p256.uri], /no PKCS#11 module/],
      [['--key', `pkcs11:token=tether;object=missing?pin-source=file:${hsm.pinFile}`, '--pkcs11-module', hsm.modulePath], /no private key matches object=missing/],
      [['--key', 'pkcs11:token=tether;object=agent;flavour=x', '--pkcs11-module', hsm.modulePath], /invalid pkcs11: URI/],
    ];
    for (const [args, message] of cases) {
      const r = await tether([...base, ...args], { env: env() });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(isCleanError(r.stderr), r.stderr);
      assert.match(r.stderr, message);
      assert.ok(!r.stderr.includes('11112222') && !r.stderr.includes(hsm.pin), r.stderr);
    }
  });
});

async function mint(certPath: string): Promise<string> {
  const minted = await tether(['dev-token', '--issuer-key', join(file('issuer'), 'issuer.key'), '--cert', certPath]);
  assert.equal(minted.code, 0, minted.stderr);
  return minted.stdout.trim();
}

async function agentGet(egress: string, bearer: string): Promise<number> {
  const response = await fetch(`${egress}/rs/via-egress`, { headers: { authorization: `Bearer ${bearer}` }, signal: AbortSignal.timeout(10_000) });
  await response.arrayBuffer();
  return response.status;
}

describe('tether egress --key pkcs11:...', () => {
  test('proofs signed in the token; the certificate file rotates under the same token key; the PIN is in no argv or log', async (t) => {
    const certPath = file('egress-agent.pem');
    writeFileSync(certPath, hsm.keys.p256.cert);
    const egress = await spawnSidecar(t, 'egress', [
      '--listen', '127.0.0.1:0', '--cert', certPath, '--key', hsm.keys.p256.uri, '--pkcs11-module', hsm.modulePath,
      '--ca', file('ca.pem'), '--route', `rs=${url}`, '--token-policy', 'none', '--log-level', 'debug',
    ]);
    const before = await resource.stats();
    for (let i = 0; i < 20; i++) assert.equal(await agentGet(egress.ready.listening, token), 200);
    let stats = await resource.stats();
    assert.equal((stats.proofVerifications as number) - (before.proofVerifications as number), 1);
    assert.equal((stats.accepted as number) - (before.accepted as number), 20);

    // A renewed certificate for the same token-held key, renamed into place, then SIGHUP.
    const publicKey = new X509Certificate(hsm.keys.p256.cert).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const renewed = await issueClientCertificate((await testPki('p256')).ca, 'hsm-agent-renewed', { publicKey });
    writeFileSync(`${certPath}.new`, renewed.cert);
    renameSync(`${certPath}.new`, certPath);
    egress.child.kill('SIGHUP');
    await waitFor(() => egress.stderr().includes('certificate reloaded'), { timeoutMs: 10_000, message: () => `no reload: ${egress.stderr()}` });
    const renewedToken = await mint(certPath);
    assert.equal(await agentGet(egress.ready.listening, renewedToken), 200);

    // A certificate for another key is refused; the renewed one stays in use.
    writeFileSync(`${certPath}.new`, (await testPki('p256')).clients.client!.cert);
    renameSync(`${certPath}.new`, certPath);
    egress.child.kill('SIGHUP');
    await waitFor(() => egress.stderr().includes('key_mismatch'), { timeoutMs: 10_000, message: () => `no refusal: ${egress.stderr()}` });
    assert.equal(await agentGet(egress.ready.listening, renewedToken), 200);
    stats = await resource.stats();
    assert.equal((stats.accepted as number) - (before.accepted as number), 22);

    const cmdline = readFileSync(`/proc/${egress.child.pid}/cmdline`, 'utf8');
    const environ = readFileSync(`/proc/${egress.child.pid}/environ`, 'utf8');
    for (const text of [cmdline, environ, egress.stderr(), egress.stdout()]) assert.ok(!text.includes(hsm.pin));
    egress.child.kill('SIGTERM');
    assert.equal(await egress.exited, 0);
  });

  test('tether ingress refuses --key pkcs11: (exit 2)', async () => {
    const r = await tether(['ingress', '--listen', '127.0.0.1:0', '--cert', file('server.pem'), '--key', hsm.keys.p256.uri, '--ca', file('ca.pem'), '--upstream', 'http://127.0.0.1:9', '--jwks-file', join(file('issuer'), 'jwks.json')], { env: env() });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /supported by tether egress only/);
  });
});
