/**
 * Smoke test of the soak (issue 7): `bench/soak.ts` runs for a few seconds in a child process,
 * with honest HTTP/2 and HTTP/1.1 clients churning connections and attackers interleaved, and
 * exits 0 with a JSON summary showing no wrong acceptance, no lost honest request, a drained
 * binding cache and bounded cache sizes. Correctness only: how fast it ran and how much memory the
 * server gained are the benchmark's business (`npm run soak`, whose verdict includes the RSS bound).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Count {
  sent: number;
  refusedAsExpected: number;
  wronglyAccepted: number;
  unexpected: number;
}

test('bench/soak.ts: a short soak passes every check and writes its results', { timeout: 120_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-soak-test-'));
  try {
    const started = Date.now();
    const args = ['--duration', '12', '--connections', '6', '--tokens-per-connection', '20', '--requests-per-token', '3', '--churn', '0.7', '--attackers', '2', '--cache-per-connection', '8', '--cache-max', '40', '--warmup', '3', '--sample', '2', '--rss-bound-mib', '256', '--out', out];
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', '--expose-gc', 'bench/soak.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      let e = '';
      child.stdout.on('data', (d: Buffer) => (o += d.toString()));
      child.stderr.on('data', (d: Buffer) => (e += d.toString()));
      // The soak has its own run deadline; this only guarantees the test cannot hang if that failed.
      const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
      child.on('error', reject);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stdout: o, stderr: e });
      });
    });
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    console.log(`soak smoke run took ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const json = JSON.parse(readFileSync(join(out, 'soak.json'), 'utf8')) as {
      pass: boolean;
      honest: { requests: number; ok: number; lost: number; connectionCycles: number; byProtocol: Record<string, number>; attackControls: { sent: number; ok: number; lost: number } };
      attacks: { totals: Count; byKind: Record<string, Count>; attackerErrors: number };
      server: { connectionsAccepted: number; peakCacheSize: number; peakEntriesPerConnection: number; heapGrowthMiB: number; heapSlopeMiBPerMin: number; end: { cacheSize: number; cacheConnections: number; openConnections: number; replayStoreSize: number } };
      checks: Array<{ check: string; holds: boolean }>;
      samples: unknown[];
    };
    assert.equal(json.pass, true);
    assert.ok(json.checks.length >= 10 && json.checks.every((c) => c.holds), JSON.stringify(json.checks));
    // The memory checks are part of the soak's own verdict (their bounds are the hour run's business).
    assert.ok(json.checks.some((c) => c.check.startsWith('server RSS growth after warm-up at most 256.0 MiB')));
    assert.ok(json.checks.some((c) => c.check.startsWith('server heap growth after warm-up')));
    // No wrong acceptance, and every attack kind ran and was refused exactly as expected.
    assert.equal(json.attacks.totals.wronglyAccepted, 0);
    assert.equal(json.attacks.totals.unexpected, 0);
    assert.equal(json.attacks.attackerErrors, 0);
    assert.ok(Object.keys(json.attacks.byKind).length >= 10);
    for (const [kind, c] of Object.entries(json.attacks.byKind)) {
      assert.ok(c.sent > 0, `${kind} ran`);
      assert.equal(c.refusedAsExpected, c.sent, kind);
    }
    // No honest request lost, on both protocols, with connection churn.
    assert.equal(json.honest.lost, 0);
    assert.equal(json.honest.ok, json.honest.requests);
    assert.ok(json.honest.requests > 0);
    assert.ok((json.honest.byProtocol.h2 ?? 0) > 0 && (json.honest.byProtocol['http/1.1'] ?? 0) > 0);
    assert.ok(json.honest.connectionCycles > 1, `${json.honest.connectionCycles} connection cycles`);
    assert.equal(json.honest.attackControls.lost, 0);
    assert.ok(json.server.connectionsAccepted > json.honest.connectionCycles, `${json.server.connectionsAccepted} server connections`);
    // Caches respected their limits, then drained.
    assert.ok(json.server.peakCacheSize <= 40 && json.server.peakCacheSize > 0, `peak ${json.server.peakCacheSize}`);
    assert.ok(json.server.peakEntriesPerConnection <= 8);
    const { cacheSize, cacheConnections, openConnections } = json.server.end;
    assert.deepEqual({ cacheSize, cacheConnections, openConnections }, { cacheSize: 0, cacheConnections: 0, openConnections: 0 });
    assert.ok(Number.isFinite(json.server.heapGrowthMiB) && Number.isFinite(json.server.heapSlopeMiBPerMin));
    assert.ok(json.samples.length >= 3);

    const md = readFileSync(join(out, 'soak.md'), 'utf8');
    assert.match(md, /^# Soak: PASS/);
    assert.match(md, /## Samples \(resource server, after GC\)/);
    assert.match(md, /\| t \(s\) \| phase \| heap used \| heap total \| new space \| external \| anon \| outside heap \| RSS \|/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
