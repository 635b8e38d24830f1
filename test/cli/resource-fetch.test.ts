import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { certificateThumbprint } from '@tether/core';
import { SessionBoundClient } from '@tether/core/client';
import { ensureBuilt, isCleanError, killAll, ResourceProcess, tempDir, tether } from './helpers/cli.js';

const dir = tempDir('rs');
const pki = join(dir.path, 'pki');
const issuerDir = join(dir.path, 'issuer');
const f = (name: string) => join(pki, name);
const agent = ['--cert', f('agent.pem'), '--key', f('agent.key'), '--ca', f('ca.pem')];
let resource: ResourceProcess;
let url: string;
const tokens: Record<string, string> = {};

async function token(args: string[]): Promise<string> {
  const r = await tether(['dev-token', '--issuer-key', join(issuerDir, 'issuer.key'), ...args]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

function decode(jwt: string, part: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[part] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** What `tether fetch -v` writes on stderr: `< STATUS [ERROR] proof ...` per request, and the summary. */
function parseVerbose(stderr: string): { lines: string[]; summary: Record<string, number> } {
  const all = stderr.trim().split('\n');
  const lines = all.filter((l) => l.startsWith('< ')).map((l) => l.slice(2));
  const summaryLine = (all.find((l) => l.startsWith('* requests=')) ?? '').slice(2);
  const summary = Object.fromEntries(summaryLine.split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k as string, Number(v)]));
  return { lines, summary };
}

before(async () => {
  ensureBuilt();
  const p = await tether(['pki', 'init', '--out', pki, '--client', 'agent', '--client', 'attacker']);
  assert.equal(p.code, 0, p.stderr);
  const i = await tether(['dev-issuer', '--out', issuerDir]);
  assert.equal(i.code, 0, i.stderr);
  const [session, attacker, certificate, bearer] = await Promise.all([
    token(['--cert', f('agent.pem'), '--sub', 'alice', '--scope', 'read write']),
    token(['--cert', f('attacker.pem')]),
    token(['--cert', f('agent.pem'), '--binding', 'certificate']),
    token(['--binding', 'none']),
  ]);
  Object.assign(tokens, { session, attacker, certificate, bearer });
  ({ resource, url } = await ResourceProcess.start(['--cert', f('server.pem'), '--key', f('server.key'), '--ca', f('ca.pem'), '--jwks-file', join(issuerDir, 'jwks.json')]));
});

after(async () => {
  await resource?.stop();
  killAll();
  dir.remove();
});

describe('dev-issuer and dev-token', () => {
  test('dev-issuer writes issuer.key and a public jwks.json; dev-token mints an RFC 9068 token bound to the certificate', () => {
    const jwks = JSON.parse(readFileSync(join(issuerDir, 'jwks.json'), 'utf8')) as { keys: Array<Record<string, string>> };
    assert.equal(jwks.keys.length, 1);
    const [jwk] = jwks.keys;
    assert.equal(jwk?.kty, 'EC');
    assert.equal(jwk?.alg, 'ES256');
    assert.equal(jwk?.d, undefined, 'no private member');
    const header = decode(tokens.session as string, 0);
    assert.deepEqual(header, { typ: 'at+jwt', kid: jwk?.kid, alg: 'ES256' });
    const claims = decode(tokens.session as string, 1);
    assert.equal(claims.iss, 'https://as.tether.local');
    assert.equal(claims.aud, 'https://rs.tether.local');
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.scope, 'read write');
    assert.equal(claims.client_id, 'spiffe://tether.local/agent');
    assert.equal((claims.exp as number) - (claims.iat as number), 3600);
    assert.equal(typeof claims.jti, 'string');
    const thumbprint = certificateThumbprint(new X509Certificate(readFileSync(f('agent.pem'))));
    assert.deepEqual(claims.cnf, { 'x5t#S256': thumbprint, tls_exp: 'EXPORTER-oauth-tls-session-bound' });
    assert.deepEqual(decode(tokens.certificate as string, 1).cnf, { 'x5t#S256': thumbprint });
    assert.equal(decode(tokens.bearer as string, 1).cnf, undefined);
  });
});

describe('resource + fetch', () => {
  test('listening line is one JSON object with the actual port', () => {
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(url, 'https://127.0.0.1:0');
    assert.equal(resource.lines.length, 1);
  });

  for (const [label, flag, httpVersion] of [
    ['HTTP/2', '--http2', '2.0'],
    ['HTTP/1.1', '--http1.1', '1.1'],
  ] as const) {
    test(`${label}: -n 50 gives 50 x 200 over one connection with one proof`, async () => {
      const r = await tether(['fetch', `${url}/echo`, '--token', tokens.session as string, ...agent, '-n', '50', flag, '-v']);
      assert.equal(r.code, 0, r.stderr);
      const { lines, summary } = parseVerbose(r.stderr);
      assert.deepEqual(lines, ['200 proof signed', ...Array<string>(49).fill('200 proof reused')]);
      assert.deepEqual(summary, { requests: 50, proofs_signed: 1, connections: 1, retries: 0 });
      assert.match(r.stderr, /^\* connection 1: TLSv1\.3, exporter EXPORTER-oauth-tls-session-bound available$/m);
      assert.equal(r.stdout.match(/"principal"/g)?.length, 50, 'every body on stdout, like curl');

      const j = await tether(['fetch', `${url}/echo?x=1`, '--token', tokens.session as string, ...agent, flag, '--json']);
      assert.equal(j.code, 0, j.stderr);
      const doc = JSON.parse(j.stdout) as { results: Array<{ status: number }>; body: { principal: Record<string, unknown>; request: Record<string, unknown> }; stats: Record<string, number> };
      assert.deepEqual(doc.results.map((x) => x.status), [200]);
      assert.equal(doc.body.principal.sub, 'alice');
      assert.equal(doc.body.principal.binding, 'session');
      assert.deepEqual(doc.body.request, { method: 'GET', path: '/echo?x=1', httpVersion, bodyBytes: 0, remoteAddress: '127.0.0.1' });
      assert.equal(doc.stats.proofsSigned, 1);
    });
  }

  test('token from TETHER_TOKEN as @file, --per-request-claims signs every request, POST --data', async () => {
    const tokenFile = join(dir.path, 'token.txt');
    writeFileSync(tokenFile, `${tokens.session}\n`);
    const r = await tether(['fetch', `${url}/items`, ...agent, '-n', '3', '--per-request-claims', '--data', 'hello', '--json'], { env: { TETHER_TOKEN: `@${tokenFile}` } });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { results: Array<{ status: number }>; body: { request: Record<string, unknown> }; stats: Record<string, number> };
    assert.deepEqual(doc.results.map((x) => x.status), [200, 200, 200]);
    assert.equal(doc.stats.proofsSigned, 3);
    assert.equal(doc.body.request.method, 'POST');
    assert.equal(doc.body.request.bodyBytes, 5);
  });

  test('a token bound to another certificate is refused: 401 invalid_token, exit 1', async () => {
    const r = await tether(['fetch', `${url}/`, '--token', tokens.attacker as string, ...agent, '-v']);
    assert.equal(r.code, 1);
    const { lines, summary } = parseVerbose(r.stderr);
    assert.deepEqual(lines, ['401 invalid_token proof signed']);
    assert.equal(summary.requests, 1);
    assert.equal((JSON.parse(r.stdout) as { error: string }).error, 'invalid_token', 'the 401 body on stdout');

    const j = await tether(['fetch', `${url}/`, '--token', tokens.attacker as string, ...agent, '--json']);
    assert.equal(j.code, 1);
    const doc = JSON.parse(j.stdout) as { results: Array<{ status: number; error: string }>; body: Record<string, string> };
    assert.deepEqual(doc.results.map((x) => [x.status, x.error]), [[401, 'invalid_token']]);
    assert.equal(doc.body.error, 'invalid_token');
  });

  test('certificate-bound and bearer tokens are refused at the default minimum binding; no token gets a bare 401', async () => {
    const [cert, bearer, none] = await Promise.all([
      tether(['fetch', `${url}/`, '--token', tokens.certificate as string, ...agent, '-v']),
      tether(['fetch', `${url}/`, '--token', tokens.bearer as string, ...agent, '-v']),
      tether(['fetch', `${url}/`, ...agent, '-v']),
    ]);
    assert.equal(cert.code, 1);
    assert.match(cert.stderr, /^< 401 invalid_token /m);
    assert.equal(bearer.code, 1);
    assert.match(bearer.stderr, /^< 401 invalid_token /m);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^< 401 no proof$/m);
  });

  test('a client certificate from another CA is refused during the connection: exit 1, one-line error', async () => {
    const other = join(dir.path, 'other');
    assert.equal((await tether(['pki', 'init', '--out', other])).code, 0);
    const r = await tether(['fetch', `${url}/`, '--token', tokens.session as string, '--cert', join(other, 'client.pem'), '--key', join(other, 'client.key'), '--ca', f('ca.pem')]);
    assert.equal(r.code, 1);
    assert.ok(isCleanError(r.stderr), r.stderr);
    assert.match(r.stderr, /request 1 .* failed/);
  });

  test("curl's spellings: -i headers before the body, -X, -d @file, --cacert, -o FILE", async () => {
    const payload = join(dir.path, 'payload.json');
    writeFileSync(payload, '{"n":1}');
    const withCa = agent.map((a) => (a === '--ca' ? '--cacert' : a));
    const r = await tether(['fetch', `${url}/things`, '--token', tokens.session as string, ...withCa, '-i', '-X', 'put', '-d', `@${payload}`, '-H', 'Content-Type: application/json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const [head, body] = r.stdout.split('\r\n\r\n') as [string, string];
    assert.match(head, /^HTTP\/2 200\r\n/);
    assert.match(head, /^content-type: application\/json/m);
    const echoed = JSON.parse(body) as { request: { method: string; bodyBytes: number } };
    assert.deepEqual([echoed.request.method, echoed.request.bodyBytes], ['PUT', 7]);

    const out = join(dir.path, 'body.json');
    const o = await tether(['fetch', `${url}/o`, '--token', tokens.session as string, ...agent, '-n', '2', '-o', out]);
    assert.equal(o.code, 0, o.stderr);
    assert.equal(o.stdout, '', 'bodies go to the file');
    assert.equal(readFileSync(out, 'utf8').match(/"principal"/g)?.length, 2);
    const both = await tether(['fetch', `${url}/`, ...agent, '--json', '-v']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--json is a report of its own/);
  });

  test('SIGUSR2 prints one stats line with the verifier counters', async () => {
    const before = await resource.stats();
    const r = await tether(['fetch', `${url}/`, '--token', tokens.session as string, ...agent, '-n', '4']);
    assert.equal(r.code, 0, r.stderr);
    const stats = await resource.stats();
    assert.equal((stats.requests as number) - (before.requests as number), 4);
    assert.equal((stats.accepted as number) - (before.accepted as number), 4);
    assert.equal((stats.proofVerifications as number) - (before.proofVerifications as number), 1);
    assert.equal((stats.cacheHits as number) - (before.cacheHits as number), 3);
    assert.equal(typeof stats.failures, 'object');
    assert.equal(typeof stats.bindings, 'number');
    assert.equal(typeof stats.connections, 'number');
  });
});

test('resource shuts down cleanly on SIGTERM and SIGINT with connections open (exit 0)', async () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const started = await ResourceProcess.start(['--cert', f('server.pem'), '--key', f('server.key'), '--ca', f('ca.pem'), '--jwks-file', join(issuerDir, 'jwks.json')]);
    const client = new SessionBoundClient({ cert: readFileSync(f('agent.pem')), key: readFileSync(f('agent.key')), ca: readFileSync(f('ca.pem')) });
    const h1 = new SessionBoundClient({ cert: readFileSync(f('agent.pem')), key: readFileSync(f('agent.key')), ca: readFileSync(f('ca.pem')), protocol: 'http/1.1' });
    try {
      assert.equal((await client.request(`${started.url}/`, { token: tokens.session as string })).status, 200);
      assert.equal((await h1.request(`${started.url}/`, { token: tokens.session as string })).status, 200);
      const t0 = Date.now();
      const exit = await started.resource.stop(signal);
      assert.deepEqual(exit, { code: 0, signal: null }, started.resource.stderr);
      assert.ok(Date.now() - t0 < 3000, 'shut down promptly');
      assert.equal(started.resource.stderr, '');
    } finally {
      await client.close();
      await h1.close();
      await started.resource.stop('SIGKILL');
    }
  }
});
