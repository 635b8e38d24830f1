import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBuilt, killAll, tether } from './helpers/cli.js';

before(ensureBuilt);
after(killAll);

interface Report {
  ok: boolean;
  honest: { requests: number; succeeded: number; clientConnections: number; proofsSigned: number; server: { proofVerifications: number; cacheHits: number; accepted: number } };
  attacks: Array<{ id: string; status: number; error: string; expected: { status: number; error: string }; blocked: boolean; asExpected: boolean }>;
  resourceExitCode: number | null;
  durationMs: number;
}

test('demo --basic --json: honest calls succeed on one connection, every attack is blocked as expected', async () => {
  const r = await tether(['demo', '--basic', '--json'], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'one JSON document');
  const report = JSON.parse(lines[0] as string) as Report;
  assert.equal(report.ok, true, JSON.stringify(report));
  assert.equal(report.honest.requests, 300);
  assert.equal(report.honest.succeeded, 300);
  assert.equal(report.honest.clientConnections, 1);
  assert.equal(report.honest.proofsSigned, 3);
  assert.equal(report.honest.server.accepted, 300);
  assert.equal(report.honest.server.proofVerifications, 3);
  assert.equal(report.honest.server.cacheHits, 297);
  assert.deepEqual(report.attacks.map((a) => a.id), ['T1', 'T2', 'T4']);
  for (const a of report.attacks) {
    assert.ok(a.blocked && a.asExpected, `${a.id}: ${a.status} ${a.error}`);
    assert.deepEqual([a.status, a.error], [a.expected.status, a.expected.error]);
  }
  assert.deepEqual(report.attacks.map((a) => a.error), ['invalid_proof', 'invalid_token', 'invalid_token']);
  assert.equal(report.resourceExitCode, 0, 'the resource child shut down cleanly');
  assert.ok(report.durationMs < 10_000, `finished in ${report.durationMs} ms: ${JSON.stringify((report as { phasesMs?: unknown }).phasesMs)}`);
});

test('demo --basic (table): PASS line, exit 0', async () => {
  const r = await tether(['demo', '--basic', '--requests', '5', '--key-type', 'ed25519'], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^PASS: /m);
  assert.match(r.stdout, /^ {2}T1 .*401 invalid_proof +401 invalid_proof +blocked$/m);
  assert.match(r.stdout, /^ {2}T2 .*401 invalid_token +blocked$/m);
  assert.match(r.stdout, /^ {2}T4 .*401 invalid_token +blocked$/m);
});
