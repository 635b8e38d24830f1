/**
 * Behind an L4 load balancer (issue 15 item 5), measured with a real HAProxy from Debian's package in TCP mode:
 * - two `tether ingress` replicas, round robin: every balanced connection carries its own TLS session end to end,
 *   so each gets one proof per token, and every request is accepted;
 * - with PROXY protocol v2 (`send-proxy-v2` / `--proxy-protocol`) the application sees the real client address
 *   (the client connects over ::1, HAProxy reaches the replicas over 127.0.0.1), and a connection that bypasses the
 *   balancer is refused; `tether resource --proxy-protocol` (a child process) echoes the client's address.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionBoundClient } from '@tether/core/client';
import type { DevPki } from '@tether/pki';
import type { IngressSidecar } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { findBinary, freePort, ProxyProcess } from '../helpers/proxy-process.js';
import { startEchoApp, startTestIngress, type EchoApp } from '../sidecar/helpers/stack.js';
import { ResourceProcess, ensureBuilt, killAll } from '../cli/helpers/cli.js';

const HAPROXY = findBinary('/usr/sbin/haproxy', '/usr/bin/haproxy');
const CLIENTS = 6;
const REQUESTS = 10;

let pki: DevPki;
let issuer: TestIssuer;
let app: EchoApp;
let haproxy: ProxyProcess;
const replicas: Record<'r1' | 'r2' | 'p1' | 'p2', IngressSidecar> = {} as never;
let resource: ResourceProcess;
let resourceUrl: string;
const frontends = { plain: 0, proxied: 0, resource: 0 };
const work = mkdtempSync(join(tmpdir(), 'tether-haproxy-'));

function ingress(proxyProtocol: boolean): Promise<IngressSidecar> {
  return startTestIngress(pki, issuer, app.url, { proxyProtocol, drainTimeoutMs: 1000 });
}

const port = (url: string) => new URL(url).port;

function haproxyConfig(): string {
  const backend = (name: string, servers: Array<[string, string]>, proxy: boolean) =>
    [`frontend ${name}`, `  bind [::1]:${frontends[name as keyof typeof frontends]}`, `  default_backend ${name}`, `backend ${name}`, '  balance roundrobin', ...servers.map(([n, url]) => `  server ${n} 127.0.0.1:${port(url)}${proxy ? ' send-proxy-v2' : ''}`)].join('\n');
  return [
    'global',
    '  maxconn 512',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
    backend('plain', [['r1', replicas.r1.url], ['r2', replicas.r2.url]], false),
    backend('proxied', [['p1', replicas.p1.url], ['p2', replicas.p2.url]], true),
    backend('resource', [['res', resourceUrl]], true),
    '',
  ].join('\n');
}

before(async () => {
  assert.ok(HAPROXY, 'haproxy is installed (.ci/run installs Debian\'s haproxy)');
  pki = await testPki();
  issuer = await TestIssuer.create();
  app = await startEchoApp();
  replicas.r1 = await ingress(false);
  replicas.r2 = await ingress(false);
  replicas.p1 = await ingress(true);
  replicas.p2 = await ingress(true);
  for (const [name, text] of [['ca.pem', pki.ca.cert], ['server.pem', pki.server.cert], ['server.key', pki.server.key], ['jwks.json', JSON.stringify(issuer.jwks)]]) {
    writeFileSync(join(work, name as string), text as string);
  }
  ensureBuilt();
  ({ resource, url: resourceUrl } = await ResourceProcess.start([
    '--proxy-protocol',
    '--cert', join(work, 'server.pem'), '--key', join(work, 'server.key'), '--ca', join(work, 'ca.pem'),
    '--jwks-file', join(work, 'jwks.json'), '--issuer', ISSUER, '--audience', AUDIENCE,
  ]));
  for (const name of Object.keys(frontends) as Array<keyof typeof frontends>) frontends[name] = await freePort('::1');
  haproxy = await ProxyProcess.start({
    binary: HAPROXY,
    args: ['-db', '-f', '{dir}/haproxy.cfg'],
    config: { name: 'haproxy.cfg', text: haproxyConfig() },
    host: '::1',
    port: frontends.resource,
  });
});

after(async () => {
  await haproxy?.stop();
  await resource?.stop();
  killAll();
  for (const r of Object.values(replicas)) await r.close();
  await app?.close();
  rmSync(work, { recursive: true, force: true });
});

/** CLIENTS clients (one HTTP/2 connection each) make REQUESTS requests each with one token through `frontend`. */
async function throughBalancer(frontend: number, token: string): Promise<{ statuses: number[]; proofsSigned: number }> {
  const statuses: number[] = [];
  let proofsSigned = 0;
  for (let c = 0; c < CLIENTS; c++) {
    const client = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert, timeoutMs: 10_000 });
    try {
      for (let i = 0; i < REQUESTS; i++) statuses.push((await client.request(`https://[::1]:${frontend}/items/${c}-${i}`, { token })).status);
      proofsSigned += client.stats.proofsSigned;
    } finally {
      await client.close();
    }
  }
  return { statuses, proofsSigned };
}

const forwardedFor = (path: string) => app.seen.filter((r) => r.url?.startsWith(path)).map((r) => r.headers['x-forwarded-for']);

describe('HAProxy in TCP mode in front of two ingress replicas', () => {
  it('session binding holds on every balanced connection: one proof per token per connection, all 200', async () => {
    const token = await issuer.sessionBound(pki.clients.client!.cert, { sub: 'alice' });
    const before = app.seen.length;
    const { statuses, proofsSigned } = await throughBalancer(frontends.plain, token);
    assert.deepEqual(statuses, Array(CLIENTS * REQUESTS).fill(200));
    assert.equal(proofsSigned, CLIENTS, 'one proof per client connection');
    const [a, b] = [replicas.r1.verifier.stats, replicas.r2.verifier.stats];
    assert.ok(a.proofVerifications >= 1 && b.proofVerifications >= 1, `both replicas served (${a.proofVerifications} / ${b.proofVerifications})`);
    assert.equal(a.proofVerifications + b.proofVerifications, CLIENTS, 'each connection verified its proof once');
    assert.equal(a.cacheHits + b.cacheHits, CLIENTS * (REQUESTS - 1), 'the rest from the binding cache');
    assert.equal(app.seen.length - before, CLIENTS * REQUESTS);
    // Without PROXY protocol the replicas see HAProxy's side of the connection.
    assert.deepEqual([...new Set(forwardedFor('/items/'))], ['127.0.0.1']);
  });

  it('with PROXY protocol v2 the application sees the client address; a connection that bypasses the balancer is refused', async () => {
    app.seen.length = 0;
    const token = await issuer.sessionBound(pki.clients.client!.cert, { sub: 'bob' });
    const { statuses, proofsSigned } = await throughBalancer(frontends.proxied, token);
    assert.deepEqual(statuses, Array(CLIENTS * REQUESTS).fill(200));
    assert.equal(proofsSigned, CLIENTS);
    assert.equal(replicas.p1.verifier.stats.proofVerifications + replicas.p2.verifier.stats.proofVerifications, CLIENTS);
    assert.deepEqual([...new Set(forwardedFor('/items/'))], ['::1'], 'the client connected from ::1');

    const direct = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert, timeoutMs: 5000 });
    try {
      await assert.rejects(direct.request(`${replicas.p1.url}/direct`, { token }));
    } finally {
      await direct.close();
    }
    assert.equal(replicas.p1.stats.failures.proxy_protocol, 1, 'counted as a PROXY protocol refusal');
    assert.equal(app.seen.filter((r) => r.url === '/direct').length, 0);
  });

  it('tether resource --proxy-protocol behind HAProxy echoes the client address', async () => {
    const token = await issuer.sessionBound(pki.clients.client!.cert, { sub: 'carol' });
    const client = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert, timeoutMs: 10_000 });
    try {
      for (let i = 0; i < 5; i++) {
        const response = await client.request(`https://[::1]:${frontends.resource}/r/${i}`, { token });
        assert.equal(response.status, 200);
        const echo = JSON.parse(response.body.toString('utf8')) as { principal: { sub: string }; request: { remoteAddress: string } };
        assert.equal(echo.principal.sub, 'carol');
        assert.equal(echo.request.remoteAddress, '::1');
      }
      assert.equal(client.stats.proofsSigned, 1);
    } finally {
      await client.close();
    }
  });
});
