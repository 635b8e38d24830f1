/**
 * The sidecar benchmark (bench/sidecar.ts) in smoke mode, and its guarantees of never hanging:
 *
 * - `--quick` runs to completion, every run well within its deadline, writes JSON and Markdown with
 *   every path (the nginx rows whenever nginx is installed), and leaves no child process behind.
 * - With an application that never answers, the first run misses its deadline: the bench exits 1
 *   naming the outstanding requests (worker, URL, how long waiting) and kills every child.
 * - SIGTERM in the middle of a run: the bench exits and kills every child, nginx included.
 *
 * Timing is asserted only where a defect would show as tens of milliseconds (a Nagle stall) and by
 * the deadlines (machines vary); the full run is `npm run bench:sidecar`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNginx } from '../../bench/sidecar-nginx.js';
import type { BenchResult } from '../../bench/sidecar-report.js';

const nginx = findNginx();

interface Bench {
  child: ChildProcess;
  stderr: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Start the bench; it is SIGKILLed after `limitMs` so that the test itself can never hang. */
function startBench(args: string[], limitMs: number): Bench {
  const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', 'bench/sidecar.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => {
    err += `\n[test] bench still running after ${limitMs} ms: SIGKILL\n`;
    child.kill('SIGKILL');
  }, limitMs);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // 'exit' may come before the pipes are drained.
      setImmediate(() => resolve({ code, signal, stdout: out, stderr: err }));
    });
  });
  return { child, stderr: () => err, done };
}

/** The PIDs the bench announced (`bench: child processes: role=pid, ...`). */
function childPids(stderr: string): Map<string, number> {
  const line = /^bench: child processes: (.*)$/m.exec(stderr);
  assert.ok(line, `the bench did not list its child processes:\n${stderr}`);
  return new Map((line[1] as string).split(', ').map((e) => [e.split('=')[0] as string, Number(e.split('=')[1])]));
}

/** Alive and not a zombie (a zombie has exited; only its parent has not reaped it yet). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function assertAllGone(pids: Map<string, number>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = [...pids].filter(([, pid]) => alive(pid));
    if (left.length === 0) return;
    if (Date.now() > deadline) {
      for (const [, pid] of left) process.kill(pid, 'SIGKILL');
      assert.fail(`child processes outlived the bench by ${timeoutMs} ms: ${left.map(([r, p]) => `${r}=${p}`).join(', ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function waitForText(bench: Bench, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(bench.stderr())) {
    if (bench.child.exitCode !== null || bench.child.signalCode !== null) assert.fail(`the bench exited before printing ${pattern}:\n${bench.stderr()}`);
    if (Date.now() > deadline) assert.fail(`the bench did not print ${pattern} within ${timeoutMs} ms:\n${bench.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('bench/sidecar.ts --quick: every path runs within its deadline, results written, no child left', { timeout: 240_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-sidecar-bench-test-'));
  try {
    const started = Date.now();
    const { code, stdout, stderr } = await startBench(['--quick', '--out', out], 200_000).done;
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    console.log(`quick sidecar bench took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await assertAllGone(childPids(stderr));
    if (nginx !== undefined) assert.ok(childPids(stderr).has('nginx'), 'nginx was started');

    const json = JSON.parse(readFileSync(join(out, 'sidecar-quick.json'), 'utf8')) as BenchResult;
    assert.equal(json.quick, true);
    assert.deepEqual(json.results.map((l) => l.concurrency), [1, 32]);
    const modes = ['direct', 'rs-mtls', ...(nginx === undefined ? [] : ['nginx-h1', 'nginx-h2']), 'ingress', 'sidecar-h1', 'sidecar-h2c'];
    assert.deepEqual(Object.keys(json.setup.paths), modes);
    if (nginx === undefined) assert.ok('skipped' in json.nginx);
    else assert.match('version' in json.nginx ? json.nginx.version : '', /nginx\//);
    for (const level of json.results) {
      assert.equal(level.failures, 0, `c=${level.concurrency}: failed requests`);
      assert.equal(level.runs.length, json.setup.repeats);
      for (const run of level.runs) {
        for (const [mode, r] of Object.entries(run)) assert.ok(r.elapsedMs < r.deadlineMs, `c=${level.concurrency} ${mode}: ${r.elapsedMs} ms of a ${r.deadlineMs} ms deadline`);
      }
      for (const m of modes) {
        const p = level.paths[m as keyof typeof level.paths];
        assert.ok(p, `c=${level.concurrency}: path ${m} missing`);
        assert.ok(p.throughput > 0 && Number.isFinite(p.throughputRatio.median) && Number.isFinite(p.addedP50Ms.median) && Number.isFinite(p.addedP99Ms.median), `c=${level.concurrency} ${m}`);
        for (const proc of p.processes) assert.ok(Number.isFinite(p.cpuMicrosPerRequestByProcess[proc]), `c=${level.concurrency} ${m}: CPU of ${proc}`);
      }
      assert.equal(level.paths.direct?.throughputRatio.median, 1);
      assert.equal(level.paths.direct?.addedP99Ms.median, 0);
      // Session binding: one proof per token and connection (more only after a reconnect), all verified.
      for (const m of ['ingress', 'sidecar-h1', 'sidecar-h2c'] as const) {
        const p = level.paths[m];
        assert.ok(p?.proofsSignedPerRun.every((n) => n >= json.setup.tokensPerRun), `${m} proofs signed ${p?.proofsSignedPerRun.join(',')}`);
        assert.ok(p?.proofVerificationsPerRun.every((n) => n >= json.setup.tokensPerRun), `${m} proofs verified ${p?.proofVerificationsPerRun.join(',')}`);
      }
    }
    // The one timing bound, generous for a shared 2-core machine: one sequential HTTP/1.1 agent
    // request through both sidecars adds milliseconds, not the ~40 ms of a Nagle + delayed-ACK stall
    // (egress agent sockets without setNoDelay; moved here from the functional resilience test).
    const c1 = json.results[0]?.paths['sidecar-h1'];
    assert.ok(c1 !== undefined && c1.addedP50Ms.median < 20, `c=1 sidecar-h1 added p50 ${c1?.addedP50Ms.median} ms`);
    if (nginx !== undefined) {
      // nginx's CPU comes from /proc (10 ms ticks): over the c=32 runs it is certainly above zero.
      assert.ok((json.results[1]?.paths['nginx-h1']?.cpuMicrosPerRequestByProcess.nginx ?? 0) > 0, 'nginx CPU measured');
    }

    const md = readFileSync(join(out, 'sidecar-quick.md'), 'utf8');
    assert.match(md, /^# Sidecar benchmark: .* \(quick\)/);
    assert.match(md, /\| concurrency \| path \| req\/s \| x direct \| p50 ms \| added p50 ms \| p99 ms \| added p99 ms \| server CPU µs\/req \| by process \(µs\/req\) \|/);
    for (const c of [1, 32]) {
      assert.ok(md.includes(`| ${c} | direct to app | `), `direct row c=${c}`);
      assert.ok(md.includes(`| ${c} | egress (h2c) -> ingress -> app | `), `sidecar row c=${c}`);
      if (nginx !== undefined) {
        assert.ok(md.includes(`| ${c} | nginx (TLS, HTTP/1.1) -> app | `), `nginx row c=${c}`);
        assert.ok(md.includes(`| ${c} | nginx (TLS, h2) -> app | `), `nginx h2 row c=${c}`);
      }
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('bench/sidecar.ts: a run that misses its deadline fails loudly, naming the outstanding requests, and kills every child', { timeout: 120_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-sidecar-bench-test-'));
  try {
    const started = Date.now();
    const { code, stderr } = await startBench(['--quick', '--fault', 'stall-app', '--run-deadline-ms', '3000', '--out', out], 90_000).done;
    assert.equal(code, 1, stderr);
    // The warm-up of the first path (direct, 8 workers) meets the stalled application.
    assert.match(stderr, /bench: FAILED: \[run_deadline_missed\] warm-up: the direct run missed its 3000 ms deadline \(\d+ ms elapsed, 0\/\d+ timed requests done\); 8 request\(s\) still outstanding:/);
    for (let w = 0; w < 8; w++) assert.match(stderr, new RegExp(`  worker ${w} \\(warm-up\\): GET http://127\\.0\\.0\\.1:\\d+/resource, waiting \\d+ ms`));
    const waited = [...stderr.matchAll(/waiting (\d+) ms/g)].map((m) => Number(m[1]));
    assert.ok(waited.every((ms) => ms >= 2500 && ms < 10_000), `waiting times ${waited.join(', ')}`);
    await assertAllGone(childPids(stderr));
    assert.ok(!existsSync(join(out, 'sidecar-quick.json')), 'no results from a failed run');
    console.log(`deadline failure reported after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('bench/sidecar.ts: SIGTERM during a run kills every child process', { timeout: 120_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tether-sidecar-bench-test-'));
  try {
    const bench = startBench(['--quick', '--fault', 'stall-app', '--run-deadline-ms', '60000', '--out', out], 90_000);
    await waitForText(bench, /^bench: child processes: .*load=\d+/m, 60_000);
    const pids = childPids(bench.stderr());
    if (nginx !== undefined) assert.ok(pids.has('nginx'), 'nginx was started');
    bench.child.kill('SIGTERM');
    const { code, stderr } = await bench.done;
    assert.equal(code, 143, stderr);
    assert.match(stderr, /bench: SIGTERM received; killing child processes /);
    await assertAllGone(pids);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
