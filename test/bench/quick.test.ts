/**
 * Smoke test of the benchmark matrix: `bench/matrix.ts --quick` runs to completion in a child
 * process and writes its JSON, Markdown and SVG files with the expected structure. Timing is not
 * checked (CI machines vary); only that every cell ran and every request succeeded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MODES = ['bearer', 'certificate', 'session', 'session-per-request', 'dpop', 'dpop-jose'];
const PATTERNS = ['h2-long-m1', 'h2-long-m10', 'h2-long-m100', 'h2-long-m1000', 'h2-long-m1-presigned', 'conn-per-request', 'conn-per-request-resumed', 'h1-pool', 'agent-mix', 'egress-churn'];
/** Modes per pattern: every mode, except agent churn behind the egress (bearer, session-bound, DPoP) and the presigned first presentation (bearer, session-bound). */
const modesOf = (p: string) => (p === 'egress-churn' ? ['bearer', 'session', 'dpop'] : p === 'h2-long-m1-presigned' ? ['bearer', 'session'] : MODES);

test('bench/matrix.ts --quick writes JSON, Markdown and SVG results', { timeout: 180_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-bench-test-'));
  try {
    const started = Date.now();
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', 'bench/matrix.ts', '--quick', '--out', out], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('exit', (c) => resolve({ code: c, stderr: err }));
    });
    assert.equal(code, 0, stderr);
    console.log(`quick matrix took ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const json = JSON.parse(readFileSync(join(out, 'matrix-quick.json'), 'utf8')) as {
      quick: boolean;
      modes: string[];
      scenarios: Array<{ id: string; pattern: string; tokens: number }>;
      results: Record<string, Record<string, { median: Record<string, number>; ratio: Record<string, { median: number; min: number; max: number }>; failures: number; signaturesPerRun: number[] }>>;
      targets: Array<{ claim: string; value: string; holds: boolean | null }>;
      verifyCosts: Record<string, { cpuUsPerCall: number }>;
      cells: Array<{ scenario: string; mode: string; repeat: number; requests: number; verifications: number; cacheHits: number }>;
    };
    assert.equal(json.quick, true);
    assert.deepEqual(json.modes, MODES);
    assert.deepEqual(json.scenarios.map((s) => s.id), PATTERNS);
    for (const p of PATTERNS) {
      for (const m of modesOf(p)) {
        const r = json.results[p]?.[m];
        assert.ok(r, `${p}/${m} missing`);
        for (const f of ['throughput', 'rsCpuUs', 'clientCpuUs', 'p50Ms', 'p99Ms', 'signaturesPerRequest', 'verificationsPerRequest']) {
          assert.equal(typeof r.median[f], 'number', `${p}/${m} ${f}`);
        }
        assert.ok(r.median.throughput! > 0);
        for (const f of ['throughput', 'rsCpuUs', 'clientCpuUs', 'p50Ms', 'p99Ms']) assert.ok(Number.isFinite(r.ratio[f]?.median), `${p}/${m} ratio ${f}`);
        assert.equal(r.failures, 0, `${p}/${m} had failed requests`);
      }
      // Bearer is the reference: its ratios are exactly 1; bearer signs nothing.
      assert.equal(json.results[p]?.bearer?.ratio.throughput?.median, 1);
      assert.equal(json.results[p]?.bearer?.median.signaturesPerRequest, 0);
      // DPoP and per-request claims: the RS verifies one proof per request everywhere.
      if (modesOf(p).includes('dpop')) assert.equal(json.results[p]?.dpop?.median.verificationsPerRequest, 1);
      if (modesOf(p).includes('session-per-request')) {
        assert.equal(json.results[p]?.['session-per-request']?.median.verificationsPerRequest, 1);
        assert.equal(json.results[p]?.['dpop-jose']?.median.verificationsPerRequest, 1);
      }
    }
    // The resource server's own counters (not the load generator's): on one connection it verifies
    // N proofs for N tokens x M requests and serves the rest from its binding cache; DPoP verifies
    // one proof per request; bearer and certificate-bound requests verify none.
    const longScenarios = json.scenarios.filter((s) => s.pattern === 'h2-long' || s.pattern === 'h2-long-presigned');
    assert.equal(longScenarios.length, 5);
    for (const s of longScenarios) {
      const mine = json.cells.filter((c) => c.scenario === s.id && c.repeat >= 0);
      const session = mine.filter((c) => c.mode === 'session');
      assert.equal(session.length, 2, s.id);
      for (const c of session) {
        assert.equal(c.verifications, s.tokens, `${s.id}: RS proof verifications = N (${s.tokens}), not N x M (${c.requests})`);
        assert.equal(c.cacheHits, c.requests - s.tokens, `${s.id}: every other request is a binding-cache hit`);
      }
      for (const c of mine.filter((x) => x.mode === 'dpop' || x.mode === 'session-per-request')) assert.equal(c.verifications, c.requests, `${s.id} ${c.mode}: one verification per request`);
      for (const c of mine.filter((x) => x.mode === 'bearer' || x.mode === 'certificate')) assert.equal(c.verifications, 0, `${s.id} ${c.mode}`);
    }
    // Agent churn behind the egress: one new agent connection per request, yet at most one RS proof
    // verification per token (the egress's upstream connection carries the bindings).
    for (const c of json.cells.filter((x) => x.scenario === 'egress-churn' && x.mode === 'session')) {
      assert.ok(c.verifications <= (json.scenarios.find((s) => s.id === 'egress-churn')?.tokens ?? 0), `egress-churn: ${c.verifications} verifications`);
    }
    assert.ok(json.targets.length > 0 && json.targets.every((t) => typeof t.claim === 'string' && typeof t.value === 'string'));
    assert.ok(json.cells.length >= PATTERNS.reduce((n, p) => n + modesOf(p).length, 0));
    // The primitive row and the in-process verification costs, measured in the RS process.
    for (const row of ['primitive', 'session-proof', 'dpop', 'dpop-jose']) assert.ok((json.verifyCosts[row]?.cpuUsPerCall ?? 0) > 0, row);

    const md = readFileSync(join(out, 'matrix-quick.md'), 'utf8');
    assert.match(md, /^# Benchmark matrix \(quick\)/);
    assert.match(md, /\| pattern \| mode \| req\/s \| x bearer \|/);
    for (const p of PATTERNS) for (const m of modesOf(p)) assert.ok(md.includes(`| ${p} | ${m} |`), `table row ${p}/${m}`);
    assert.match(md, /## Targets/);
    assert.match(md, /\| primitive \| raw `crypto\.verify` ES256/);

    for (const name of ['throughput', 'rs-cpu', 'client-cpu']) {
      const svg = readFileSync(join(out, `matrix-quick-${name}.svg`), 'utf8');
      assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      assert.match(svg, /<\/svg>\n$/);
      for (const m of MODES) assert.ok(svg.includes(`data-name="${m}"`), `${name}.svg series ${m}`);
      assert.equal((svg.match(/<polyline /g) ?? []).length, MODES.length);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
