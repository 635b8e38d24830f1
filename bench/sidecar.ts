/**
 * The sidecar benchmark (issues 4 and 12): the same application reached over seven paths, measured
 * in the same run, each against the direct path of the same repeat:
 *
 *   direct       load -> app (plain HTTP/1.1 keep-alive): the baseline
 *   rs-mtls      load -> in-process resource server (h2 mTLS, bearer JWT, core verifier)
 *   nginx-h1/h2  load -> nginx (TLS 1.3; HTTP/1.1 or h2) -> app: the reference hop (when nginx is installed)
 *   ingress      load (SessionBoundClient, h2 mTLS) -> ingress -> app
 *   sidecar-h1/h2c  load (HTTP/1.1 or h2c) -> egress -> ingress (h2 mTLS) -> app
 *
 * Every component and the load generator run in their own processes (bench/sidecar-process.ts,
 * bench/sidecar-nginx.ts). For each concurrency level the paths run alternately (order rotated per
 * repeat), each run with fresh tokens; reported: throughput as a ratio to direct, added p50/p99
 * latency, and server-side CPU per request per process.
 *
 * It never hangs: every request has a timeout, every run a deadline (a missed one fails the bench
 * with the requests still outstanding), every question to a child a deadline, and every child
 * process is killed by PID on every exit path (bench/children.ts). Failed requests make the
 * bench exit 1 after writing its results.
 *
 *   npm run bench:sidecar              # full run (a few minutes) -> bench/results/sidecar.{json,md}
 *   npm run bench:sidecar -- --quick   # < 60 s (also TETHER_BENCH_QUICK=1) -> bench/results/sidecar-quick.{json,md}
 *
 * Options: --out DIR (results directory), --request-timeout-ms N (default 10000),
 * --run-deadline-ms N (every run's deadline; default 15 s + 3 ms per request), --no-nginx,
 * --paths a,b (only these paths, plus direct), --fault stall-app (the app never answers; tests the
 * deadline path). Environment: TETHER_BENCH_NGINX=PATH picks the nginx binary;
 * TETHER_BENCH_SIDECAR_LOG=LEVEL sets the sidecars' log level (default silent).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchMaterial, tokenMinter } from './sidecar-material.js';
import { BenchFailure, ForkedChild, installExitGuards, killAllSync, trackedChildren } from './children.js';
import { MODES, type DeadlineMissed, type Mode, type RunReply, type RunRequest } from './sidecar-load.js';
import { findNginx, NginxProcess } from './sidecar-nginx.js';
import type { Material } from './sidecar-process.js';
import { PATHS, renderMarkdown, summarizeLevel, type BenchResult, type ModeRun, type Repeat } from './sidecar-report.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    'request-timeout-ms': { type: 'string' },
    'run-deadline-ms': { type: 'string' },
    'no-nginx': { type: 'boolean', default: false },
    paths: { type: 'string' },
    fault: { type: 'string' },
  },
});
const quick = args.quick === true || process.env.TETHER_BENCH_QUICK === '1';
const repeats = quick ? 3 : 5;
const tokensN = quick ? 10 : 20;
/** Concurrency level -> requests per token in one run. */
const levels: Array<{ concurrency: number; perToken: number }> = quick
  ? [
      { concurrency: 1, perToken: 15 },
      { concurrency: 32, perToken: 100 },
    ]
  : [
      { concurrency: 1, perToken: 50 },
      { concurrency: 8, perToken: 200 },
      { concurrency: 32, perToken: 500 },
    ];
const requestTimeoutMs = Number(args['request-timeout-ms'] ?? 10_000);
const fixedDeadline = args['run-deadline-ms'] === undefined ? undefined : Number(args['run-deadline-ms']);
const deadlineFor = (requests: number) => fixedDeadline ?? 15_000 + 3 * requests;
/** --paths a,b: run only these paths (and direct, the baseline). */
const onlyPaths = args.paths?.split(',').map((x) => x.trim());
for (const p of onlyPaths ?? []) if (!(MODES as readonly string[]).includes(p)) throw new BenchFailure('bad_option', `unknown path ${p}; paths: ${MODES.join(', ')}`);
if (args.fault !== undefined && args.fault !== 'stall-app') throw new BenchFailure('bad_option', `unknown --fault ${args.fault}`);

/** Server-side processes, measured per run. */
interface Measured {
  reset(): Promise<{ proofsSigned: number; proofVerifications: number }>;
  report(): Promise<{ cpuMicros: number; proofsSigned: number; proofVerifications: number }>;
}

interface Stack {
  modes: Mode[];
  origins: Record<Mode, string>;
  measured: Record<string, Measured>;
  load: ForkedChild;
  nginx: BenchResult['nginx'];
  stop(): Promise<void>;
}

const URL_PATH: Record<Mode, string> = { direct: '/resource', 'rs-mtls': '/resource', 'nginx-h1': '/resource', 'nginx-h2': '/resource', ingress: '/resource', 'sidecar-h1': '/api/resource', 'sidecar-h2c': '/api/resource' };

async function startStack(material: Material): Promise<Stack> {
  const script = join(here, 'sidecar-process.ts');
  const [app, rs, ingress, egress, load] = ['app', 'rs-mtls', 'ingress', 'egress', 'load'].map((role) => new ForkedChild(role, script, 30_000)) as [ForkedChild, ForkedChild, ForkedChild, ForkedChild, ForkedChild];
  const start = async (c: ForkedChild, extra: Record<string, unknown> = {}) => {
    const msg = { cmd: 'start', material, ...extra };
    return (await c.ask<{ url: string }>(msg, 30_000)).url;
  };
  const appUrl = await start(app, args.fault === 'stall-app' ? { fault: 'stall' } : {});
  const rsUrl = await start(rs);
  const ingressUrl = await start(ingress, { upstream: appUrl });
  const egressUrl = await start(egress, { upstream: ingressUrl });
  await start(load);
  const binary = args['no-nginx'] === true ? undefined : findNginx();
  const nginx = binary === undefined ? undefined : await NginxProcess.start({ binary, upstream: appUrl, cert: material.serverCert, key: material.serverKey, startTimeoutMs: 15_000 });
  const viaIpc = (c: ForkedChild): Measured => ({ reset: () => c.ask({ cmd: 'reset' }, 10_000), report: () => c.ask({ cmd: 'report' }, 10_000) });
  console.error(`bench: child processes: ${trackedChildren()}`);
  return {
    modes: MODES.filter((m) => (nginx !== undefined || !m.startsWith('nginx')) && (onlyPaths === undefined || m === 'direct' || onlyPaths.includes(m))),
    origins: { direct: appUrl, 'rs-mtls': rsUrl, 'nginx-h1': nginx?.url ?? '', 'nginx-h2': nginx?.url ?? '', ingress: ingressUrl, 'sidecar-h1': egressUrl, 'sidecar-h2c': egressUrl },
    measured: { app: viaIpc(app), 'rs-mtls': viaIpc(rs), ingress: viaIpc(ingress), egress: viaIpc(egress), ...(nginx === undefined ? {} : { nginx }) },
    load,
    nginx:
      nginx === undefined
        ? { skipped: args['no-nginx'] === true ? '--no-nginx' : 'nginx not found (PATH, /usr/sbin, /usr/local/sbin; TETHER_BENCH_NGINX)' }
        : { binary: binary as string, version: nginx.version, config: 'daemon off, master_process off (one process), TLS 1.3, listen ssl http2, access log buffered to its temp dir, upstream keepalive 64' },
    stop: async () => {
      await Promise.all([app, rs, ingress, egress, load].map((c) => c.exit()));
      await nginx?.stop();
    },
  };
}

function describeMiss(label: string, miss: DeadlineMissed): string {
  const lines = [
    `${label}: the ${miss.mode} run missed its ${miss.deadlineMs} ms deadline (${miss.elapsedMs} ms elapsed, ${miss.completed}/${miss.total} timed requests done); ${miss.outstanding.length} request(s) still outstanding${miss.outstanding.length === 0 ? ' (the run was slow rather than stuck)' : ':'}`,
    ...miss.outstanding.map((o) => `  worker ${o.worker} (${o.phase}): GET ${o.url}, waiting ${o.waitingMs} ms`),
  ];
  if (miss.failureSamples.length > 0) lines.push(`  failed requests before the deadline: ${miss.failureSamples.join('; ')}`);
  return lines.join('\n');
}

async function runMode(stack: Stack, material: Material, freshTokens: (bound: boolean) => Promise<string[]>, mode: Mode, concurrency: number, perToken: number, label: string): Promise<ModeRun> {
  const tokens = await freshTokens(mode === 'ingress' || mode.startsWith('sidecar'));
  const procs = PATHS[mode].processes.map((p) => stack.measured[p] as Measured);
  const before = await Promise.all(procs.map((p) => p.reset()));
  const deadlineMs = deadlineFor(tokens.length * perToken + concurrency);
  const request: RunRequest = {
    cmd: 'run',
    mode,
    url: stack.origins[mode],
    path: URL_PATH[mode],
    tokens,
    perToken,
    concurrency,
    requestTimeoutMs,
    deadlineMs,
    material: { ca: material.ca, clientCert: material.clientCert, clientKey: material.clientKey },
  };
  // The load generator enforces the deadline and names what is outstanding; this bound catches a
  // load generator that cannot answer at all.
  const reply = await stack.load.ask<RunReply>(request, deadlineMs + 10_000).catch((error: unknown) => {
    throw new BenchFailure('run_deadline_missed', `${label}: the ${mode} run got no answer from the load generator: ${error instanceof Error ? error.message : String(error)}`);
  });
  if (reply.kind === 'deadline') throw new BenchFailure('run_deadline_missed', describeMiss(label, reply));
  const after = await Promise.all(procs.map((p) => p.report()));
  // CPU includes the warm-up requests (one per worker), a small share of a run.
  const n = reply.requests + concurrency;
  const byProcess = Object.fromEntries(PATHS[mode].processes.map((p, i) => [p, (after[i] as { cpuMicros: number }).cpuMicros / n]));
  const sum = (k: 'proofsSigned' | 'proofVerifications') => after.reduce((a, r) => a + r[k], 0) - before.reduce((a, r) => a + r[k], 0);
  if (reply.failures > 0) console.error(`bench: ${label} ${mode}: ${reply.failures} failed request(s): ${reply.failureSamples.join('; ')}`);
  return {
    requests: reply.requests,
    failures: reply.failures,
    timeouts: reply.timeouts,
    failureSamples: reply.failureSamples,
    seconds: reply.seconds,
    throughput: reply.throughput,
    p50Ms: reply.p50Ms,
    p99Ms: reply.p99Ms,
    elapsedMs: reply.elapsedMs,
    deadlineMs: reply.deadlineMs,
    cpuMicrosPerRequest: after.reduce((a, r) => a + r.cpuMicros, 0) / n,
    cpuMicrosPerRequestByProcess: byProcess,
    loadCpuMicrosPerRequest: reply.loadCpuMicros / n,
    proofsSigned: sum('proofsSigned') + reply.proofsSigned,
    proofVerifications: sum('proofVerifications'),
  };
}

async function measure(stack: Stack, material: Material, freshTokens: (bound: boolean) => Promise<string[]>) {
  const run = (mode: Mode, c: number, perToken: number, label: string) => runMode(stack, material, freshTokens, mode, c, perToken, label);
  // Untimed warm-up of every path (JIT, connection pools), discarded.
  for (const mode of stack.modes) await run(mode, 8, quick ? 10 : 50, 'warm-up');
  const results = [];
  for (const { concurrency, perToken } of levels) {
    const runs: Repeat[] = [];
    for (let r = 0; r < repeats; r++) {
      const k = r % stack.modes.length;
      const order = [...stack.modes.slice(k), ...stack.modes.slice(0, k)];
      const one: Repeat = {};
      for (const mode of order) one[mode] = await run(mode, concurrency, perToken, `c=${concurrency} repeat ${r + 1}/${repeats}`);
      runs.push(one);
      console.error(`c=${concurrency} run ${r + 1}/${repeats}: ` + stack.modes.map((m) => `${m} ${one[m]?.throughput.toFixed(0)} req/s p99 ${one[m]?.p99Ms.toFixed(2)} ms`).join(', '));
    }
    results.push(summarizeLevel(concurrency, tokensN * perToken, stack.modes, runs));
  }
  return results;
}

async function main(): Promise<number> {
  const started = Date.now();
  const { material, privateKey } = await benchMaterial();
  const stack = await startStack(material);
  const results = await measure(stack, material, tokenMinter(material, privateKey, tokensN));
  await stack.stop();
  const result: BenchResult = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    quick,
    seconds: (Date.now() - started) / 1000,
    nginx: stack.nginx,
    setup: {
      tokensPerRun: tokensN,
      repeats,
      levels,
      requestTimeoutMs,
      runDeadline: fixedDeadline === undefined ? '15 s + 3 ms per request (warm-up included)' : `${fixedDeadline} ms`,
      paths: Object.fromEntries(stack.modes.map((m) => [m, PATHS[m].description])),
      processes: 'load generator, app, in-process RS, ingress, egress and nginx each in its own process; all on 127.0.0.1',
      cpu: 'server-side CPU per request (load generator excluded), per process: forked Node processes by process.cpuUsage(), nginx from /proc/PID/stat',
    },
    results,
  };
  const outDir = args.out ?? join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const name = quick ? 'sidecar-quick' : 'sidecar';
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
  const md = renderMarkdown(result);
  writeFileSync(join(outDir, `${name}.md`), md);
  console.log(md);
  const failures = results.reduce((a, l) => a + l.failures, 0);
  if (failures > 0) console.error(`bench: FAILED: ${failures} request(s) failed (see the lines above); results written to ${outDir}`);
  return failures > 0 ? 1 : 0;
}

installExitGuards();
main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench: FAILED: ${error instanceof BenchFailure ? `[${error.code}] ${error.message}` : error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    console.error(`bench: killing child processes ${trackedChildren() || '(none left)'}`);
    killAllSync();
    process.exit(1);
  },
);
