/**
 * Smoke test of the sidecar soak: `bench/sidecar-soak.ts` runs a few seconds of 32-worker rounds
 * (HTTP/1.1 and h2c agents, fresh tokens) through egress and ingress in their own processes and
 * exits 0 with every request answered and no CLOSE-WAIT socket left after any round. The long run
 * is `npm run soak:sidecar`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

test('bench/sidecar-soak.ts: a short soak loses nothing and leaves no CLOSE-WAIT socket', { timeout: 150_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-sidecar-soak-'));
  try {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', 'bench/sidecar-soak.ts', '--duration', '4', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      const timer = setTimeout(() => child.kill('SIGTERM'), 120_000);
      child.on('error', reject);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve({ code: c, output: text });
      });
    });
    assert.equal(code, 0, output);
    const json = JSON.parse(readFileSync(join(out, 'sidecar-soak.json'), 'utf8')) as { pass: boolean; total: number; failed: number; roundsWithCloseWait: number; rounds: Array<{ mode: string; requests: number }> };
    assert.equal(json.pass, true);
    assert.equal(json.failed, 0);
    assert.equal(json.roundsWithCloseWait, 0);
    assert.ok(json.rounds.length >= 2, `${json.rounds.length} rounds`);
    assert.deepEqual([...new Set(json.rounds.map((r) => r.mode))].sort(), ['sidecar-h1', 'sidecar-h2c']);
    assert.equal(json.total, json.rounds.reduce((a, r) => a + r.requests, 0));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
