import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeDevPki } from '@tether/pki';
import { EXPORTER_LABEL } from '@tether/core';
import { ConfigError, TokenClient, loadConfigFile, resolveConfig, runAuthorizationServerCommand } from '@tether/as';
import { asPki, baseConfig, claimsOf, removeDir, spiffe, tempDir } from './helpers/setup.js';

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return [...error.issues];
  }
  assert.fail('expected a ConfigError');
}

test('configuration: every problem is reported with its path', async () => {
  const pki = await asPki();
  const base = baseConfig(pki, '/tmp/unused');
  const issues = issuesOf(() =>
    resolveConfig({
      ...base,
      surprise: true,
      listen: { host: '127.0.0.1', port: 70000 },
    }),
  );
  assert.ok(issues.some((i) => i.startsWith('(root): ') && i.includes('surprise')), issues.join('\n'));
  assert.ok(issues.some((i) => i.startsWith('listen.port: ')), issues.join('\n'));

  const semantic = issuesOf(() =>
    resolveConfig({
      ...base,
      tls: { cert: pki.server.cert, keyFile: 'missing.key' },
      clients: [
        { client_id: 'x', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=a,,O=b' },
        { client_id: 'x', token_endpoint_auth_method: 'tls_client_auth' },
        { client_id: 'y', token_endpoint_auth_method: 'self_signed_tls_client_auth' },
        { client_id: 'z', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'c' }] }, audiences: ['https://nowhere'] },
        { client_id: 'w', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_ip: 'not-an-ip', tmb: { clients: ['ghost'] }, default_scope: 'admin' },
      ],
    }),
  );
  const expect = [
    'tls.keyFile: cannot read',
    'clients[0].tls_client_auth_subject_dn: not an RFC 4514 DN',
    "clients[1].client_id: duplicate client_id 'x'",
    'clients[1]: tls_client_auth needs exactly one of',
    'clients[2].jwks: self_signed_tls_client_auth needs a registered jwks',
    'clients[3].jwks.keys[0]: contains private or symmetric key material',
    "clients[3].audiences[0]: 'https://nowhere' is neither",
    'clients[4].tls_client_auth_san_ip: not an IP address',
    "clients[4].tmb.clients[0]: unknown client 'ghost'",
    "clients[4].default_scope: 'admin' is not in scope",
  ];
  for (const e of expect) assert.ok(semantic.some((i) => i.startsWith(e)), `missing "${e}" in:\n${semantic.join('\n')}`);
});

test('configuration file: relative paths resolve against its directory; JSON errors are reported', async () => {
  const dir = tempDir();
  try {
    await writeDevPki(join(dir, 'pki'), { clients: ['a'] });
    const file = join(dir, 'as.json');
    writeFileSync(
      file,
      JSON.stringify({
        tls: { certFile: 'pki/server.pem', keyFile: 'pki/server.key' },
        clientAuthentication: { tls_client_auth: { caFiles: ['pki/ca.pem'] } },
        dataDir: 'state',
        clients: [{ client_id: 'a', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: spiffe('a'), audiences: ['a'] }],
      }),
    );
    const config = loadConfigFile(file);
    assert.equal(config.clientCaCerts.length, 1);
    assert.equal(config.dataDir, join(dir, 'state'), 'dataDir is relative to the configuration file, like every other path in it');
    writeFileSync(file, '{"tls":');
    assert.match(issuesOf(() => loadConfigFile(file))[0] as string, /is not JSON/);
    assert.match(issuesOf(() => loadConfigFile(join(dir, 'nope.json')))[0] as string, /cannot read/);
  } finally {
    removeDir(dir);
  }
});

function capture(): { write(s: string): void; text(): string } {
  let buffer = '';
  return { write: (s: string) => void (buffer += s), text: () => buffer };
}

async function waitFor(predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('tether as --dev --pki DIR --listen HOST:PORT: one JSON line, a client per certificate, session-bound tokens', async () => {
  const dir = tempDir();
  try {
    const pkiDir = join(dir, 'pki');
    await writeDevPki(pkiDir, { clients: ['agent', 'tool'] });
    const stdout = capture();
    const stderr = capture();
    const abort = new AbortController();
    const run = runAuthorizationServerCommand(['--dev', '--pki', pkiDir, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')], { stdout, stderr, signal: abort.signal });
    await waitFor(() => stdout.text().includes('\n'));
    const lines = stdout.text().trim().split('\n');
    assert.equal(lines.length, 1);
    const { listening, issuer } = JSON.parse(lines[0] as string) as { listening: string; issuer: string };
    assert.match(issuer, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(listening, issuer, 'the dev issuer is the mTLS listener');
    const read = (n: string) => readFileSync(join(pkiDir, n), 'utf8');
    const agent = new TokenClient({ cert: read('agent.pem'), key: read('agent.key'), ca: read('ca.pem') });
    try {
      const r = await agent.post(`${issuer}/token`, { grant_type: 'client_credentials', client_id: 'agent', audience: spiffe('tool') });
      assert.equal(r.status, 200, r.text);
      const claims = claimsOf(r.json?.access_token as string);
      assert.equal((claims.cnf as Record<string, string>).tls_exp, EXPORTER_LABEL);
      assert.equal(claims.aud, spiffe('tool'));
      const wrong = await agent.post(`${issuer}/token`, { grant_type: 'client_credentials', client_id: 'tool', audience: spiffe('agent') });
      assert.equal(wrong.status, 401, "the agent's certificate does not authenticate the tool");
      const self = await agent.post(`${issuer}/token`, { grant_type: 'client_credentials', client_id: 'agent', audience: spiffe('agent') });
      assert.equal(self.json?.error, 'invalid_target', 'a client may request tokens for the others');
    } finally {
      agent.close();
    }
    abort.abort();
    assert.equal(await run, 0);
    assert.match(stderr.text(), /"event":"started"/);
    assert.match(stderr.text(), /"event":"stopped"/);
  } finally {
    removeDir(dir);
  }
});

test('tether as --config FILE runs; argument and configuration errors exit 2 with the problems listed', async () => {
  const dir = tempDir();
  try {
    const pkiDir = join(dir, 'pki');
    await writeDevPki(pkiDir, { clients: ['a'] });
    mkdirSync(join(dir, 'conf'));
    const file = join(dir, 'conf', 'as.json');
    writeFileSync(
      file,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        tls: { certFile: '../pki/server.pem', keyFile: '../pki/server.key' },
        clientAuthentication: { tls_client_auth: { caFiles: ['../pki/ca.pem'] } },
        dataDir: join(dir, 'data'),
        clients: [{ client_id: 'a', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: spiffe('a'), audiences: ['a'] }],
      }),
    );
    const stdout = capture();
    const abort = new AbortController();
    const run = runAuthorizationServerCommand(['--config', file, '--log-level', 'silent'], { stdout, stderr: capture(), signal: abort.signal });
    await waitFor(() => stdout.text().includes('\n'));
    assert.match(stdout.text(), /^\{"listening":"https:\/\/127\.0\.0\.1:\d+","issuer":"https:\/\/127\.0\.0\.1:\d+","pid":\d+\}\n$/);
    abort.abort();
    assert.equal(await run, 0);

    const usage = async (args: string[], pattern: RegExp) => {
      const err = capture();
      assert.equal(await runAuthorizationServerCommand(args, { stdout: capture(), stderr: err }), 2, args.join(' '));
      assert.match(err.text(), pattern);
    };
    await usage([], /--config FILE or --dev --pki DIR is required/);
    await usage(['--dev'], /--dev needs --pki/);
    await usage(['--dev', '--pki', pkiDir, '--listen', 'nope'], /--listen must be HOST:PORT/);
    await usage(['--bogus'], /^tether as: unknown option --bogus \(see 'tether as --help'\)\n$/);
    await usage(['--config', file, '--listen', '127.0.0.1:1'], /--listen is only used with --dev/);
    await usage(['--dev', '--pki', join(dir, 'missing')], /invalid configuration/);
    writeFileSync(file, JSON.stringify({ tls: {}, dataDir: 'x', clients: [{ client_id: 'a', token_endpoint_auth_method: 'magic' }] }));
    const err = capture();
    assert.equal(await runAuthorizationServerCommand(['--config', file], { stdout: capture(), stderr: err }), 2);
    assert.match(err.text(), /clients\[0\]\.token_endpoint_auth_method: /);
    const help = capture();
    assert.equal(await runAuthorizationServerCommand(['--help'], { stdout: help, stderr: capture() }), 0);
    assert.match(help.text(), /Usage: tether as --config FILE/);
  } finally {
    removeDir(dir);
  }
});
