/**
 * Private signing keys sealed at rest under a key-encryption key (issue 14 item 4), end to end
 * through `tether as --kek-file`: the keys survive a restart with the same KEK, the database holds
 * no private key in the clear, and a wrong, missing or malformed KEK stops the start with a clear
 * error instead of running with garbage or new keys.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { TokenClient, runAuthorizationServerCommand } from '@tether/as';
import { writeDevPki } from '@tether/pki';
import { spawnAs } from './helpers/as-child.js';
import { removeDir, tempDir } from './helpers/setup.js';

/** Runs `tether as ARGS` in this process until it exits (a start that must fail). */
async function failedStart(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 20_000);
  try {
    const code = await runAuthorizationServerCommand(args, { stdout: { write: () => abort.abort() }, stderr: { write: (s: string) => (stderr += s) }, signal: abort.signal });
    return { code, stderr };
  } finally {
    clearTimeout(timer);
  }
}

test('tether as --kek-file: sealed keys survive a restart; a wrong, missing or malformed KEK fails at start', async (t) => {
  const dir = tempDir('tether-kek-');
  t.after(() => removeDir(dir));
  const pki = join(dir, 'pki');
  await writeDevPki(pki, { clients: ['agent'] });
  const data = join(dir, 'data');
  const kek = join(dir, 'kek');
  const other = join(dir, 'other-kek');
  writeFileSync(kek, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  writeFileSync(other, randomBytes(32).toString('base64'), { mode: 0o600 });
  const args = (...extra: string[]) => ['--dev', '--pki', pki, '--listen', '127.0.0.1:0', '--data', data, '--log-level', 'warn', ...extra];
  const ca = readFileSync(join(pki, 'ca.pem'), 'utf8');
  const kids = async (url: string) => {
    const client = new TokenClient({ ca });
    try {
      return ((await client.get(`${url}/jwks`)).json as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
    } finally {
      client.close();
    }
  };

  const first = await spawnAs(t, args('--kek-file', kek));
  const published = await kids(first.ready.listening);
  assert.equal(await first.stop(), 0);
  assert.doesNotMatch(readFileSync(join(data, 'tether.db'), 'latin1'), /"d":"/, 'no private key member in the clear');

  const wrong = await failedStart(args('--kek-file', other));
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /cannot start: cannot unseal signing key .*: the key-encryption key \(fingerprint [0-9a-f]{8}\) is not the one it was sealed with/);
  const missing = await failedStart(args());
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /sealed under a key-encryption key .* configure keyEncryption/);
  writeFileSync(join(dir, 'short'), 'abcd');
  const malformed = await failedStart(args('--kek-file', join(dir, 'short')));
  assert.equal(malformed.code, 1);
  assert.match(malformed.stderr, /must be 32 bytes/);
  assert.doesNotMatch(wrong.stderr + missing.stderr + malformed.stderr, new RegExp(readFileSync(kek, 'utf8').trim()), 'the KEK is never printed');

  const again = await spawnAs(t, args('--kek-env', 'TETHER_TEST_KEK'), { TETHER_TEST_KEK: readFileSync(kek, 'utf8') });
  assert.deepEqual(await kids(again.ready.listening), published, 'the same keys, unsealed');
  assert.equal(await again.stop(), 0);
});
