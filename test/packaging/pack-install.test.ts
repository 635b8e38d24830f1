/**
 * The packages as a user installs them (issue 15): every workspace package is packed with `npm pack`, checked with
 * publint and @arethetypeswrong/cli, and installed from the tarballs into empty projects (third-party packages from
 * the npm cache, nothing from this repository's node_modules). There: a verifier install is @tether/core and jose,
 * the CLI installs without the demo's MCP stack, `npx tether demo --json` runs once @tether/demo is added, and an
 * Express app protected by @tether/core/express serves 20 requests from SessionBoundClient on one proof.
 * It packs the built dist/: the test command type-checks (and so builds) first.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, ensureBuilt } from '../cli/helpers/cli.js';
import { emptyProject, install, installedPackages, killAll, pack, run, type Packed, type Ran } from './helpers/npm.js';

const work = mkdtempSync(join(tmpdir(), 'tether-pack-'));
const packed = new Map<string, Packed>();
const BIN = (name: string) => join(ROOT, 'node_modules/.bin', name);

const app = join(work, 'app');
const CLI_PACKAGES = ['@tether/core', '@tether/pki', '@tether/as', '@tether/sidecar', '@tether/cli'];
/** The CLI project as installed before @tether/demo was added, and what `tether demo` said then. */
let cliInstall: { installed: Map<string, string>; demoWithoutPackage: Ran };

// Packing and installing happen here, under the installs' own deadlines: a native addon built from source (the
// AS's better-sqlite3 on Node 20) can take minutes on a loaded machine, longer than one test may.
before(async () => {
  ensureBuilt();
  const { workspaces } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  for (const dir of workspaces) {
    const p = await pack(join(ROOT, dir), work);
    packed.set(p.name, p);
  }
  emptyProject(app);
  await install(app, CLI_PACKAGES.map(tarball));
  const installed = installedPackages(app);
  const demoWithoutPackage = await run('npx', ['--no-install', 'tether', 'demo', '--json'], { cwd: app, timeoutMs: 60_000 });
  cliInstall = { installed, demoWithoutPackage };
  await install(app, [tarball('@tether/demo'), 'express@^5.0.0']);
});

after(() => {
  killAll();
  rmSync(work, { recursive: true, force: true });
});

function tarball(name: string): string {
  const p = packed.get(name);
  assert.ok(p, `${name} was packed`);
  return p.tarball;
}

/** Every file path an `exports` map or `bin` names. */
function targets(value: unknown): string[] {
  if (typeof value === 'string') return [value.replace(/^\.\//, '')];
  if (value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap(targets);
}

test('every package packs its built dist (ESM and .d.ts), README and LICENSE, and nothing stale', () => {
  assert.ok(packed.size >= 6, `packed ${[...packed.keys()].join(', ')}`);
  for (const p of packed.values()) {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'packages', p.name.replace('@tether/', ''), 'package.json'), 'utf8')) as Record<string, unknown>;
    const files = new Set(p.files);
    for (const required of ['package.json', 'README.md', 'LICENSE', ...targets(manifest.exports), ...targets(manifest.bin)]) {
      assert.ok(files.has(required), `${p.name}: the tarball has ${required}`);
    }
    const built = p.files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'));
    assert.ok(built.length > 0 && built.every((f) => files.has(f.replace(/\.js$/, '.d.ts'))), `${p.name}: every dist module has its .d.ts`);
    const stale = built.filter((f) => !files.has(f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts')));
    assert.deepEqual(stale, [], `${p.name}: no built file without a source (stale output: npm run clean && npm run build)`);
    assert.ok(!p.files.some((f) => f.endsWith('.tsbuildinfo') || f.includes('.test.')), `${p.name}: no build info or tests`);
    for (const field of ['name', 'version', 'description', 'license', 'keywords', 'engines', 'type']) {
      assert.ok(manifest[field] !== undefined, `${p.name}: package.json has ${field}`);
    }
  }
});

test('publint and Are the Types Wrong find no problem in any tarball', async () => {
  for (const p of packed.values()) {
    const lint = await run(BIN('publint'), ['run', p.tarball, '--strict'], { cwd: work, timeoutMs: 60_000 });
    assert.equal(lint.code, 0, `publint ${p.name}:\n${lint.stdout}${lint.stderr}`);
    assert.match(lint.stdout, /All good/, `publint ${p.name}`);
    // ESM-only packages by design (Node >= 20.19 has require(esm)); the profile checks node16 ESM and bundlers.
    const attw = await run(BIN('attw'), [p.tarball, '--profile', 'esm-only', '--format', 'json'], { cwd: work, timeoutMs: 120_000 });
    assert.equal(attw.code, 0, `attw ${p.name}:\n${attw.stdout.slice(0, 3000)}${attw.stderr}`);
  }
});

test('a verifier install is @tether/core and jose, nothing else', async () => {
  const dir = join(work, 'verifier');
  emptyProject(dir);
  await install(dir, [tarball('@tether/core')]);
  const installed = installedPackages(dir);
  assert.deepEqual([...installed.keys()].sort(), ['@tether/core', 'jose']);
  assert.match(installed.get('@tether/core') ?? '', /^file:/, 'from the tarball, not the registry');
  const r = await run(process.execPath, ['--input-type=module', '-e', "const m = await import('@tether/core'); console.log(typeof m.createSessionBoundVerifier)"], { cwd: dir, timeoutMs: 30_000 });
  assert.equal(r.stdout.trim(), 'function', r.stderr);
});

test('the CLI installs without the demo; npx tether demo --json runs once @tether/demo is added', async () => {
  const { installed, demoWithoutPackage: missing } = cliInstall;
  for (const name of CLI_PACKAGES) assert.match(installed.get(name) ?? '', /^file:/, `${name} from its tarball`);
  assert.ok(!installed.has('@tether/demo') && !installed.has('@modelcontextprotocol/sdk'), 'no demo or MCP SDK in a CLI install');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /needs the @tether\/demo package: npm install @tether\/demo/);

  const demo = await run('npx', ['--no-install', 'tether', 'demo', '--json', '--calls', '2'], { cwd: app, timeoutMs: 180_000 });
  assert.equal(demo.code, 0, demo.stderr);
  const report = JSON.parse(demo.stdout) as { ok: boolean; honest: { succeeded: number; toolCalls: number } };
  assert.equal(report.ok, true);
  assert.equal(report.honest.succeeded, report.honest.toolCalls);
});

const APP = `
import express from 'express';
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { createSessionBoundVerifier, jwtAccessTokenValidator, jwksFromFile } from '@tether/core';
import { sessionBoundMiddleware } from '@tether/core/express';
import { sessionBoundTlsOptions } from '@tether/core/node';
import { SessionBoundClient } from '@tether/core/client';

setTimeout(() => { console.error('deadline'); process.exit(3); }, 30_000).unref();
const [pki, jwks, token] = process.argv.slice(2);
const file = (name) => readFileSync(pki + '/' + name);
const verifier = createSessionBoundVerifier({
  tokens: jwtAccessTokenValidator({ keys: jwksFromFile(jwks), issuer: 'https://as.tether.local', audience: 'https://rs.tether.local' }),
});
const app = express();
app.use(sessionBoundMiddleware(verifier));
app.get('/hello', (req, res) => res.json({ sub: req.tether.sub }));
const server = createServer(sessionBoundTlsOptions({ cert: file('server.pem'), key: file('server.key'), ca: file('ca.pem') }), app);
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const client = new SessionBoundClient({ cert: file('agent.pem'), key: file('agent.key'), ca: file('ca.pem'), protocol: 'http/1.1', timeoutMs: 10_000 });
const statuses = [];
const subs = new Set();
for (let i = 0; i < 20; i++) {
  const response = await client.request('https://127.0.0.1:' + server.address().port + '/hello', { token });
  statuses.push(response.status);
  subs.add(JSON.parse(response.body.toString('utf8')).sub);
}
await client.close();
server.closeAllConnections();
server.close();
console.log(JSON.stringify({ statuses, subs: [...subs], client: client.stats, verifier: verifier.stats }));
`;

test('an Express app protected by @tether/core/express: 20 requests from SessionBoundClient, one proof verified', async () => {
  const tether = async (args: string[]) => {
    const r = await run('npx', ['--no-install', 'tether', ...args], { cwd: app, timeoutMs: 30_000 });
    assert.equal(r.code, 0, `tether ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  await tether(['pki', 'init', '--out', 'pki', '--client', 'agent']);
  await tether(['dev-issuer', '--out', 'issuer']);
  const token = await tether(['dev-token', '--issuer-key', 'issuer/issuer.key', '--cert', 'pki/agent.pem', '--sub', 'alice']);
  writeFileSync(join(app, 'app.mjs'), APP);
  const r = await run(process.execPath, ['app.mjs', 'pki', 'issuer/jwks.json', token], { cwd: app, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { statuses: number[]; subs: string[]; client: { proofsSigned: number }; verifier: { accepted: number; proofVerifications: number; cacheHits: number } };
  assert.deepEqual(out.statuses, Array(20).fill(200));
  assert.deepEqual(out.subs, ['alice']);
  assert.equal(out.verifier.accepted, 20);
  assert.equal(out.verifier.proofVerifications, 1, 'the server verified one proof');
  assert.equal(out.verifier.cacheHits, 19, 'and served the other 19 requests from its binding cache');
  assert.equal(out.client.proofsSigned, 1);
});
