/**
 * Smoke test of `bench/pkcs11.ts --quick` (SoftHSM2 key vs in-memory key): it runs to completion
 * in a child process within its deadline and writes both result files, with every figure measured
 * for both keys and the token's C_Sign calls equal to the signatures the bench asked for. Timing
 * itself is not asserted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('bench/pkcs11.ts --quick writes its Markdown and JSON results', { timeout: 240_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-bench-pkcs11-'));
  try {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', 'bench/pkcs11.ts', '--quick', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 200_000);
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stderr: err });
      });
    });
    assert.equal(code, 0, stderr);
    const json = JSON.parse(readFileSync(join(out, 'pkcs11-quick.json'), 'utf8')) as { quick: boolean; results: Record<string, Record<string, { cpuUs: number; wallUs: number }>> };
    assert.equal(json.quick, true);
    for (const key of ['memory', 'softhsm2']) {
      for (const figure of ['sign', 'handshake', 'warm', 'context']) {
        const sample = json.results[key]?.[figure];
        assert.ok(sample !== undefined && sample.cpuUs > 0 && sample.wallUs > 0 && Number.isFinite(sample.cpuUs), `${key} ${figure}`);
      }
    }
    const markdown = readFileSync(join(out, 'pkcs11-quick.md'), 'utf8');
    const counted = /C_Sign calls counted at the token key: (\d+) \(expected (\d+)/.exec(markdown);
    assert.ok(counted, markdown);
    assert.equal(counted[1], counted[2]);
    for (const m of ['1', '10', '100']) assert.match(markdown, new RegExp(`^\\| ${m} \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\|`, 'm'));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
