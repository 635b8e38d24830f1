/**
 * `tether egress` in a child process (the CLI code path): exactly one JSON ready line on stdout,
 * `/readyz` on the operations listener, and SIGHUP reloading `--cert` / `--key` / `--ca` without
 * terminating the process. The certificate directory is reached through a symlink that is swapped
 * to another directory, which the directory watch does not see (README): only SIGHUP (or the 10 s
 * polling, after this test's deadlines) notices it. A mismatched pair on SIGHUP is refused.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { certificateThumbprint } from '@tether/core';
import { issueClientCertificate, writeDevPki, type IssuedCertificate } from '@tether/pki';
import { waitFor, withTimeout } from '../helpers/wait.js';
import { spawnSidecar } from './helpers/child.js';

const REQUEST_MS = 10_000;

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_MS) });
  return { status: res.status, text: await res.text() };
}

it('tether egress: one JSON ready line, /readyz, SIGHUP reloads the certificate (a mismatched pair is refused), SIGTERM exits 0', { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-egress-sighup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await writeDevPki(join(dir, 'pki'), { clients: ['client'] });
  const read = (name: string) => readFileSync(join(dir, 'pki', name), 'utf8');
  const ca: IssuedCertificate = { cert: read('ca.pem'), key: read('ca.key') };
  // dir/current -> v1 | v2 | ...: the flags name files under `current`.
  let version = 0;
  const install = (pair: IssuedCertificate, key = pair.key) => {
    const name = `v${++version}`;
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'tls.crt'), pair.cert);
    writeFileSync(join(dir, name, 'tls.key'), key, { mode: 0o600 });
    writeFileSync(join(dir, name, 'ca.crt'), ca.cert);
    symlinkSync(name, join(dir, 'next'));
    renameSync(join(dir, 'next'), join(dir, 'current'));
  };
  const first: IssuedCertificate = { cert: read('client.pem'), key: read('client.key') };
  install(first);
  const file = (name: string) => join(dir, 'current', name);
  const args = ['--listen', '127.0.0.1:0', '--cert', file('tls.crt'), '--key', file('tls.key'), '--ca', file('ca.crt'), '--route', 'api=https://127.0.0.1:1', '--metrics-listen', '127.0.0.1:0'];
  const { child, ready, exited, line, stdout, stderr } = await spawnSidecar(t, 'egress', args);
  assert.deepEqual(Object.keys(ready), ['listening', 'metrics', 'pid']);
  assert.equal(ready.pid, child.pid);
  assert.match(ready.listening, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
  assert.match(ready.metrics, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
  assert.deepEqual(await get(`${ready.metrics}/readyz`), { status: 200, text: '{"status":"ready"}' });
  const bound = async () => (JSON.parse((await get(`${ready.listening}/.well-known/tether-egress`)).text) as { cnf: Record<string, string> }).cnf['x5t#S256'];
  assert.equal(await bound(), certificateThumbprint(new X509Certificate(first.cert)));

  // A new certificate behind the symlink, then SIGHUP: applied well before the 10 s poll would.
  const renewed = await issueClientCertificate(ca, 'client');
  install(renewed);
  const signalled = Date.now();
  child.kill('SIGHUP');
  await waitFor(async () => (await bound()) === certificateThumbprint(new X509Certificate(renewed.cert)), { timeoutMs: 5000, message: () => `the new certificate in use after SIGHUP; stderr: ${stderr()}` });
  assert.ok(Date.now() - signalled < 5000);
  assert.match(stderr(), /"trigger":"SIGHUP"[^\n]*"certificate reloaded; new connections use it"|"certificate reloaded; new connections use it"[^\n]*"trigger":"SIGHUP"/);
  assert.match(stderr(), /"egress certificate switched: new upstream connections and tokens use it"/);
  assert.equal(child.exitCode, null, 'SIGHUP does not terminate the egress');

  // A mismatched pair on SIGHUP: refused at warn, the current certificate stays.
  install(await issueClientCertificate(ca, 'client'), first.key);
  child.kill('SIGHUP');
  await waitFor(() => stderr().includes('certificate reload refused; the current certificate stays in use'), { timeoutMs: 5000, message: () => `a refusal logged; stderr: ${stderr()}` });
  const refusal = stderr().split('\n').find((l) => l.includes('certificate reload refused')) as string;
  assert.equal((JSON.parse(refusal) as { level: number; reason: string }).level, 40);
  assert.equal((JSON.parse(refusal) as { reason: string }).reason, 'key_mismatch');
  assert.equal(await bound(), certificateThumbprint(new X509Certificate(renewed.cert)));
  assert.deepEqual(await get(`${ready.metrics}/readyz`), { status: 200, text: '{"status":"ready"}' });

  child.kill('SIGTERM');
  assert.equal(await withTimeout(exited, REQUEST_MS, 'no exit after SIGTERM'), 0, stderr());
  assert.equal(stdout(), `${line}\n`, 'exactly one line on stdout');
  assert.match(stderr(), /"egress ready"/, 'logs go to stderr');
  assert.ok(!stderr().includes('PRIVATE KEY'), 'no key material in the logs');
});
