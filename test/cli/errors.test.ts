import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { ensureBuilt, isCleanError, killAll, tempDir, tether } from './helpers/cli.js';

const dir = tempDir('errors');
const p = (name: string) => join(dir.path, 'pki', name);
const jwks = () => join(dir.path, 'issuer', 'jwks.json');
const issuerKey = () => join(dir.path, 'issuer', 'issuer.key');
let busy: Server;
let busyPort: number;

before(async () => {
  ensureBuilt();
  assert.equal((await tether(['pki', 'init', '--out', join(dir.path, 'pki')])).code, 0);
  assert.equal((await tether(['dev-issuer', '--out', join(dir.path, 'issuer')])).code, 0);
  writeFileSync(join(dir.path, 'garbage.txt'), 'not a pem file\n');
  writeFileSync(join(dir.path, 'empty-jwks.json'), '{"keys":[]}');
  writeFileSync(join(dir.path, 'private-jwks.json'), '{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}]}');
  busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  busyPort = (busy.address() as AddressInfo).port;
});

after(() => {
  busy?.close();
  killAll();
  dir.remove();
});

const resourceBase = () => ['resource', '--listen', '127.0.0.1:0', '--cert', p('server.pem'), '--key', p('server.key'), '--ca', p('ca.pem')];
const fetchBase = () => ['fetch', 'https://127.0.0.1:9/', '--cert', p('client.pem'), '--key', p('client.key'), '--ca', p('ca.pem')];

/** Map with at most 3 children at a time (dozens of node processes at once starve the other test files). */
async function pool<T, R>(items: readonly T[], fn: (item: T) => Promise<R>, width = 3): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return out;
}

interface Case {
  name: string;
  args: () => string[];
  code: 1 | 2;
  message: RegExp;
}

const cases: Case[] = [
  { name: 'no command', args: () => [], code: 2, message: /^tether: a command is required/ },
  { name: 'unknown command', args: () => ['frobnicate'], code: 2, message: /unknown command 'frobnicate'/ },
  { name: 'unknown top-level option', args: () => ['--frob'], code: 2, message: /unknown option --frob/ },
  { name: 'pki without subcommand', args: () => ['pki'], code: 2, message: /pki subcommand is required/ },
  { name: 'pki unknown subcommand', args: () => ['pki', 'destroy'], code: 2, message: /unknown pki subcommand 'destroy'/ },
  { name: 'pki init without --out', args: () => ['pki', 'init'], code: 2, message: /^tether pki init: --out is required/ },
  { name: 'pki init bad key type', args: () => ['pki', 'init', '--out', join(dir.path, 'x'), '--key-type', 'dsa'], code: 2, message: /--key-type must be one of p256, p384, ed25519, rsa/ },
  { name: 'pki init bad client name', args: () => ['pki', 'init', '--out', join(dir.path, 'x'), '--client', '../evil'], code: 2, message: /invalid --client name/ },
  { name: 'pki init reserved client name', args: () => ['pki', 'init', '--out', join(dir.path, 'x'), '--client', 'server'], code: 2, message: /reserved/ },
  { name: 'pki init unknown option', args: () => ['pki', 'init', '--out', join(dir.path, 'x'), '--bits', '4096'], code: 2, message: /unknown option --bits/ },
  { name: 'pki init --out is a file', args: () => ['pki', 'init', '--out', join(dir.path, 'garbage.txt')], code: 2, message: /not a directory/ },
  { name: 'pki init unwritable --out', args: () => ['pki', 'init', '--out', join(dir.path, 'garbage.txt', 'sub')], code: 1, message: /cannot write the PKI/ },
  { name: 'dev-issuer without --out', args: () => ['dev-issuer'], code: 2, message: /--out is required/ },
  { name: 'dev-token without --cert', args: () => ['dev-token', '--issuer-key', issuerKey()], code: 2, message: /--cert is required unless --binding none/ },
  { name: 'dev-token missing key file', args: () => ['dev-token', '--issuer-key', join(dir.path, 'nope.key'), '--binding', 'none'], code: 2, message: /cannot read --issuer-key .*nope\.key: no such file/ },
  { name: 'dev-token key file is not a key', args: () => ['dev-token', '--issuer-key', join(dir.path, 'garbage.txt'), '--binding', 'none'], code: 2, message: /not an unencrypted PEM private key/ },
  { name: 'dev-token cert file is not a cert', args: () => ['dev-token', '--issuer-key', issuerKey(), '--cert', join(dir.path, 'garbage.txt')], code: 2, message: /is not a PEM certificate/ },
  { name: 'dev-token bad binding', args: () => ['dev-token', '--issuer-key', issuerKey(), '--binding', 'dpop'], code: 2, message: /--binding must be one of session, certificate, none/ },
  { name: 'dev-token bad ttl', args: () => ['dev-token', '--issuer-key', issuerKey(), '--binding', 'none', '--ttl', 'soon'], code: 2, message: /--ttl must be a whole number/ },
  { name: 'resource missing jwks file', args: () => [...resourceBase(), '--jwks-file', join(dir.path, 'missing.json')], code: 2, message: /^tether resource: cannot read --jwks-file .*missing\.json: no such file/ },
  { name: 'resource jwks file not JSON', args: () => [...resourceBase(), '--jwks-file', join(dir.path, 'garbage.txt')], code: 2, message: /is not JSON/ },
  { name: 'resource jwks without keys', args: () => [...resourceBase(), '--jwks-file', join(dir.path, 'empty-jwks.json')], code: 2, message: /holds no keys/ },
  { name: 'resource jwks with private keys', args: () => [...resourceBase(), '--jwks-file', join(dir.path, 'private-jwks.json')], code: 2, message: /private or symmetric key material/ },
  { name: 'resource without jwks', args: () => resourceBase(), code: 2, message: /exactly one of --jwks-file and --jwks-url/ },
  { name: 'resource with both jwks sources', args: () => [...resourceBase(), '--jwks-file', jwks(), '--jwks-url', 'https://as.example/jwks'], code: 2, message: /exactly one of --jwks-file and --jwks-url/ },
  { name: 'resource bad jwks url', args: () => [...resourceBase(), '--jwks-url', 'ftp://as.example/jwks'], code: 2, message: /http\(s\)/ },
  { name: 'resource missing cert', args: () => ['resource', '--key', p('server.key'), '--ca', p('ca.pem'), '--jwks-file', jwks()], code: 2, message: /--cert is required/ },
  { name: 'resource key does not match cert', args: () => ['resource', '--cert', p('server.pem'), '--key', p('client.key'), '--ca', p('ca.pem'), '--jwks-file', jwks()], code: 2, message: /is not the private key of --cert/ },
  { name: 'resource CA file is not PEM', args: () => ['resource', '--cert', p('server.pem'), '--key', p('server.key'), '--ca', join(dir.path, 'garbage.txt'), '--jwks-file', jwks()], code: 2, message: /holds no PEM certificate/ },
  { name: 'resource bad --listen', args: () => [...resourceBase(), '--listen', 'localhost', '--jwks-file', jwks()], code: 2, message: /--listen must be HOST:PORT/ },
  { name: 'resource port out of range', args: () => [...resourceBase(), '--listen', '127.0.0.1:70000', '--jwks-file', jwks()], code: 2, message: /port must be between 0 and 65535/ },
  { name: 'resource bad minimum binding', args: () => [...resourceBase(), '--jwks-file', jwks(), '--minimum-binding', 'weak'], code: 2, message: /--minimum-binding must be one of/ },
  { name: 'resource address in use', args: () => [...resourceBase(), '--listen', `127.0.0.1:${busyPort}`, '--jwks-file', jwks()], code: 1, message: /cannot listen on 127\.0\.0\.1:\d+: address already in use/ },
  { name: 'fetch without URL', args: () => ['fetch', '--cert', p('client.pem'), '--key', p('client.key')], code: 2, message: /a URL is required/ },
  { name: 'fetch http URL', args: () => ['fetch', 'http://127.0.0.1/', '--cert', p('client.pem'), '--key', p('client.key')], code: 2, message: /must be https/ },
  { name: 'fetch not a URL', args: () => ['fetch', 'nonsense', '--cert', p('client.pem'), '--key', p('client.key')], code: 2, message: /'nonsense' is not a URL/ },
  { name: 'fetch without cert', args: () => ['fetch', 'https://127.0.0.1/'], code: 2, message: /--cert and --key are required/ },
  { name: 'fetch -n 0', args: () => [...fetchBase(), '-n', '0'], code: 2, message: /--count must be between 1 and/ },
  { name: 'fetch -n without value', args: () => [...fetchBase(), '-n'], code: 2, message: /-n, --count needs a value/ },
  { name: 'fetch both protocols', args: () => [...fetchBase(), '--http2', '--http1.1'], code: 2, message: /at most one of --http2 and --http1.1/ },
  { name: 'fetch invalid token', args: () => [...fetchBase(), '--token', 'not a token'], code: 2, message: /not a valid bearer token/ },
  { name: 'fetch missing token file', args: () => [...fetchBase(), '--token', `@${join(dir.path, 'no-token')}`], code: 2, message: /cannot read --token .*no-token: no such file/ },
  { name: 'fetch key does not match cert', args: () => ['fetch', 'https://127.0.0.1:9/', '--cert', p('client.pem'), '--key', p('server.key')], code: 2, message: /is not the private key of --cert/ },
  { name: 'fetch bad header', args: () => [...fetchBase(), '-H', 'no colon here'], code: 2, message: /is not 'Name: value'/ },
  { name: 'fetch connection refused', args: () => ['fetch', `https://127.0.0.1:${busyPort}/`, '--cert', p('client.pem'), '--key', p('client.key'), '--ca', p('ca.pem'), '--timeout', '2'], code: 1, message: /request 1 to https:\/\/127\.0\.0\.1:\d+ failed/ },
  { name: 'demo bad --requests', args: () => ['demo', '--basic', '--requests', 'many'], code: 2, message: /--requests must be a whole number/ },
  { name: 'demo bad --calls', args: () => ['demo', '--calls', 'many'], code: 2, message: /--calls must be a whole number/ },
  { name: 'demo --keep-running with --basic', args: () => ['demo', '--basic', '--keep-running'], code: 2, message: /not of --basic/ },
  { name: 'demo unknown option', args: () => ['demo', '--fast'], code: 2, message: /unknown option --fast/ },
];

test('bad input: exit 2 (usage) or 1 (runtime), one clear line on stderr, no stack trace', { concurrency: 3 }, async (t) => {
  await Promise.all(
    cases.map((c) =>
      t.test(c.name, async () => {
        const r = await tether(c.args(), { timeoutMs: 20_000 });
        assert.equal(r.code, c.code, `exit ${r.code} (stderr: ${r.stderr})`);
        assert.ok(isCleanError(r.stderr), `stderr is not one clean line: ${JSON.stringify(r.stderr)}`);
        assert.match(r.stderr, c.message);
        if (c.code === 2) assert.match(r.stderr, /\(see 'tether[a-z -]*--help'\)\n$/, 'points at --help');
      }),
    ),
  );
});

const HELP: Record<string, { args: string[]; options: string[] }> = {
  tether: { args: ['--help'], options: ['pki init', 'pki issue', 'dev-issuer', 'dev-token', 'resource', 'fetch', 'demo'] },
  'pki init': { args: ['pki', 'init', '--help'], options: ['--out', '--key-type', '--client', '--trust-domain', '--days', '--force', '--help'] },
  'pki issue': { args: ['pki', 'issue', '--help'], options: ['--ca-dir', '--client', '--server', '--san', '--out', '--trust-domain', '--days', '--force', '--help'] },
  'dev-issuer': { args: ['dev-issuer', '--help'], options: ['--out', '--kid', '--help', 'DEVELOPMENT HELPER'] },
  'dev-token': {
    args: ['dev-token', '--help'],
    options: ['--issuer-key', '--kid', '--cert', '--binding', '--iss', '--aud', '--sub', '--client-id', '--scope', '--ttl', '--help', 'DEVELOPMENT HELPER'],
  },
  resource: {
    args: ['resource', '--help'],
    options: ['--listen', '--cert', '--key', '--ca', '--jwks-file', '--jwks-url', '--jwks-ca', '--issuer', '--audience', '--minimum-binding', '--allow-tls12', '--help', 'SIGUSR2', 'SIGTERM'],
  },
  fetch: {
    args: ['fetch', '--help'],
    options: ['--token', 'TETHER_TOKEN', '--cert', '--key', '--ca', '-n, --count', '--http2', '--http1.1', '--per-request-claims', '--allow-tls12', '--method', '--data', '-H, --header', '-o, --output', '--timeout', '--json', '--help'],
  },
  demo: { args: ['demo', '--help'], options: ['--json', '--calls', '--keep-running', '--basic', '--requests', '--key-type', '--help', 'T1', 'T3', 'T4', 'T5a', 'T6', 'TMB'] },
};

test('--help of every command documents every option and exits 0', async () => {
  const results = await pool(Object.entries(HELP), async ([name, h]) => ({ name, h, r: await tether(h.args) }));
  for (const { name, h, r } of results) {
    assert.equal(r.code, 0, name);
    assert.equal(r.stderr, '', name);
    assert.match(r.stdout, /^Usage: tether/, name);
    for (const option of h.options) assert.ok(r.stdout.includes(option), `${name} --help mentions ${option}`);
  }
  const version = await tether(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});
