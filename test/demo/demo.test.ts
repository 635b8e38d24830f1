/**
 * `tether demo` (issues 6 and 16): the agent delegation chain over MCP, starting at a login at the
 * identity provider, run end to end by the BUILT CLI as a child process (nine more processes
 * underneath it), checked through its --json report.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { DemoReport, HopReport } from '@tether/demo';
import { BIN, ROOT, ensureBuilt, killAll, tether } from '../cli/helpers/cli.js';

before(ensureBuilt);
after(killAll);

// The report's own type; `principal` is narrowed because the test reads its `sub`.
type Report = Omit<DemoReport, 'deferredKeyBinding'> & { deferredKeyBinding: { viaSidecar: boolean; principal: { sub?: string } | null } };

const CALLS = 10;

test('demo --json: the MCP chain works, amortizes proofs per hop, and refuses every attack for the right reason', async () => {
  const r = await tether(['demo', '--json', '--calls', String(CALLS)], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
  assert.equal(r.stderr, '');
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'one JSON document');
  const report = JSON.parse(lines[0] as string) as Report;
  assert.equal(report.ok, true, JSON.stringify(report));

  // Honest calls: 3 users x (CALLS lookups + 1 streamed report), all ok, with the full act chain at C.
  const h = report.honest;
  assert.deepEqual(h.errors, []);
  assert.equal(h.users, 3);
  assert.equal(h.toolCalls, 3 * (CALLS + 1));
  assert.equal(h.succeeded, h.toolCalls);
  assert.equal(h.progressNotifications, 3 * 5, 'every progress notification of the streamed tool arrived');
  // Each user logged in at the identity provider and sits at the top: C saw sub = the person, acted for by B on behalf of A.
  assert.deepEqual(
    h.principals.map((p) => [p.user, p.sub, p.actChain]),
    ['alice', 'bob', 'carol'].map((u) => [u, u, ['agent-b', 'agent-a']]),
  );
  for (const p of h.principals) assert.match(p.login, /^authorization code \+ PKCE S256, scripted/);
  // B's ingress verified the token A exchanged: the person, acted for by A.
  assert.deepEqual(h.principals.map((p) => p.atB), ['alice', 'bob', 'carol'].map((u) => ({ sub: u, actChain: ['agent-a'] })));
  assert.match(report.identityProvider.issuer, /^https:\/\/127\.0\.0\.1:\d+$/);
  // A found the AS from B's first 401 (RFC 9728) and asked for B's resource (RFC 8707).
  assert.ok(report.discovery !== null);
  assert.match(report.discovery.resourceMetadata, /^https:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource$/);
  assert.equal(report.discovery.resource, 'https://agent-b.tether.local');
  assert.match(report.discovery.tokenEndpoint, new RegExp(`^${report.discovery.authorizationServer}/`));
  assert.deepEqual(h.tokenExchanges, { byA: 3, byB: 3 });
  assert.equal(report.deferredKeyBinding.viaSidecar, true);
  assert.equal(report.deferredKeyBinding.principal?.sub, 'alice-laptop', "the token alice's own device bound to A's sidecar key");

  // Per hop: one signature per (token, connection), verified once each, well under one per request.
  assert.deepEqual(report.hops.map((p) => p.hop), ['A->B', 'B->C']);
  for (const p of report.hops) {
    assert.ok(p.connections >= 1, `${p.hop}: connections`);
    assert.equal(p.proofsSigned, p.tokens * p.connections, `${p.hop}: proofs == tokens x connections (${JSON.stringify(p)})`);
    assert.equal(p.fullVerifications, p.proofsSigned, `${p.hop}: each proof verified once`);
    assert.ok(p.signaturesPerRequest < 1, `${p.hop}: ${p.signaturesPerRequest} signatures per request`);
    assert.equal(p.accepted, p.requests, `${p.hop}: every request accepted by the ingress`);
    assert.equal(p.cacheHits, p.requests - p.fullVerifications, `${p.hop}: the rest served from the binding cache`);
  }
  const [ab, bc] = report.hops as [HopReport, HopReport];
  assert.equal(ab.tokens, 4, "three users' tokens plus alice's tmb-bound token");
  assert.equal(bc.tokens, 3);
  assert.equal(bc.requests, 3 * CALLS, 'one call to C per lookup');
  assert.ok(ab.unauthenticated >= 2, `A's discovery crossed A->B without a token (the first 401, the metadata): ${ab.unauthenticated}`);
  assert.equal(bc.unauthenticated, 0);

  // Attacks: each refused with exactly the expected status and code.
  const expected: Record<string, [number, string | null]> = {
    T3: [401, 'invalid_token'],
    T4: [401, 'invalid_token'],
    T1: [401, 'invalid_proof'],
    T5a: [401, 'invalid_token'],
    T5b: [401, 'invalid_token'],
    T6: [400, 'invalid_grant'],
    IDP1: [401, 'invalid_token'],
    IDP2: [400, 'invalid_grant'],
    IDP3: [401, 'invalid_client'],
  };
  assert.deepEqual(report.attacks.map((a) => a.id), [...Object.keys(expected), 'TMB']);
  for (const a of report.attacks) {
    assert.ok(a.pass, `${a.id}: ${a.status} ${String(a.error)}`);
    if (a.id === 'TMB') {
      assert.equal(a.status, 0, 'no HTTP exchange at all: the TLS handshake needs a client certificate A does not have');
      assert.ok(a.error !== null);
    } else {
      assert.deepEqual([a.status, a.error], expected[a.id]);
      assert.deepEqual([a.status, a.error], [a.expected.status, a.expected.error]);
    }
  }

  assert.ok(Object.values(report.exitCodes).every((c) => c === 0), `clean shutdown of every process: ${JSON.stringify(report.exitCodes)}`);
  assert.equal(Object.keys(report.exitCodes).length, 9, 'the identity provider and eight processes of the chain');
  assert.ok(report.durationMs < 30_000, `finished in ${report.durationMs} ms`);
});

test('demo --keep-running --json: the printed MCP URL and token work through A\'s egress until SIGTERM', async () => {
  const child = spawn(process.execPath, [BIN, 'demo', '--keep-running', '--json', '--calls', '2'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      void exited.then((code) => reject(new Error(`exited ${String(code)}: ${stderr}`)));
    });
    const { report, stack } = JSON.parse(first) as { report: Report; stack: { mcpUrlViaEgressA: string; tokenForB: string; caFile: string; issuer: string } };
    assert.equal(report.ok, true);
    assert.match(stack.issuer, /^https:\/\/127\.0\.0\.1:\d+$/);
    const init = await fetch(stack.mcpUrlViaEgressA, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.tokenForB}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '0' } } }),
    });
    const text = await init.text();
    assert.equal(init.status, 200, text);
    assert.ok(init.headers.get('mcp-session-id'));
    assert.match(text, /"serverInfo":\{"name":"agent-b"/);
    // The egress adds A's identity, not a token: a request without one is refused by B's ingress.
    const bare = await fetch(stack.mcpUrlViaEgressA, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(bare.status, 401);
    await bare.body?.cancel();
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  } finally {
    clearTimeout(killer);
    child.kill('SIGKILL');
  }
});

test('demo: --requests without --basic is a usage error', async () => {
  const r = await tether(['demo', '--requests', '5']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--basic/);
});
