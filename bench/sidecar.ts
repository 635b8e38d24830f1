/**
 * The sidecar path against direct mTLS with bearer tokens (issue 4):
 *
 *   sidecar: load -> egress (HTTP/1.1 keep-alive or h2c) -> ingress (HTTP/2, mTLS, session-bound
 *            proof) -> app (HTTP/1.1 keep-alive)
 *   direct:  load -> server (HTTP/2, mTLS, bearer token; core verifier with minimumBinding 'none',
 *            so the JWT validation is the same work as at the ingress)
 *
 * Every component and the load generator run in their own child processes. For each concurrency
 * level the three paths run alternately (order rotated per repeat), each run with fresh tokens;
 * throughput, p99 latency and server-side CPU per request are reported as ratios to the direct run
 * of the same repeat, with median and min..max over the repeats.
 *
 *   npm run bench:sidecar              # full run   -> bench/results/sidecar.{json,md}
 *   npm run bench:sidecar -- --quick   # < 60 s     -> bench/results/sidecar-quick.{json,md}
 */
import { fork, type ChildProcess } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT, exportJWK } from 'jose';
import { createDevPki } from '@tether/pki';
import { sessionBoundConfirmation } from '@tether/core';
import type { Material, RunRequest, RunResult } from './sidecar-process.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const repeats = quick ? 3 : 5;
const tokensN = quick ? 10 : 20;
/** Concurrency level -> requests per token in one run. */
const levels: Array<{ concurrency: number; perToken: number }> = quick
  ? [
      { concurrency: 1, perToken: 20 },
      { concurrency: 32, perToken: 200 },
    ]
  : [
      { concurrency: 1, perToken: 50 },
      { concurrency: 8, perToken: 200 },
      { concurrency: 32, perToken: 500 },
    ];
const MODES = ['direct', 'sidecar-h1', 'sidecar-h2c'] as const;
type Mode = (typeof MODES)[number];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
const stat = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

class Child {
  readonly proc: ChildProcess;
  readonly ready: Promise<void>;

  constructor(readonly role: string) {
    this.proc = fork(join(here, 'sidecar-process.ts'), [role], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.ready = new Promise((resolve) => this.proc.once('message', () => resolve()));
    this.proc.on('exit', (code) => {
      if (code !== 0 && code !== null) console.error(`${role} exited with ${code}`);
    });
  }

  async ask<T>(msg: object): Promise<T> {
    await this.ready;
    return new Promise<T>((resolve) => {
      this.proc.once('message', (m) => resolve(m as T));
      this.proc.send(msg);
    });
  }

  async exit(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.send({ cmd: 'exit' });
    await exited;
  }
}

interface ModeRun extends RunResult {
  cpuMicrosPerRequest: number;
  /** The same, per server process. */
  cpuMicrosPerRequestByProcess: Record<string, number>;
  proofsSigned: number;
  proofVerifications: number;
}

async function main(): Promise<void> {
  const started = Date.now();
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const material: Material = {
    ca: pki.ca.cert,
    serverCert: pki.server.cert,
    serverKey: pki.server.key,
    clientCert: client.cert,
    clientKey: client.key,
    jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'b1', alg: 'ES256' }] },
    issuer: 'https://as.bench',
    audience: 'https://rs.bench',
  };
  const cnf = sessionBoundConfirmation(new X509Certificate(client.cert));
  let serial = 0;
  const mint = (bound: boolean) =>
    new SignJWT({ client_id: 'bench', scope: 'read', ...(bound ? { cnf } : {}) })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'b1' })
      .setIssuer(material.issuer)
      .setAudience(material.audience)
      .setSubject(`u${serial++}`)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
  // Fresh tokens for every run: no run profits from another's proof or token-validation cache.
  const freshTokens = (bound: boolean) => Promise.all(Array.from({ length: tokensN }, () => mint(bound)));

  const app = new Child('app');
  const direct = new Child('direct');
  const ingress = new Child('ingress');
  const egress = new Child('egress');
  const load = new Child('load');
  const children = [app, direct, ingress, egress, load];
  try {
    const appUrl = (await app.ask<{ url: string }>({ cmd: 'start', material })).url;
    const directUrl = (await direct.ask<{ url: string }>({ cmd: 'start', material })).url;
    const ingressUrl = (await ingress.ask<{ url: string }>({ cmd: 'start', material, upstream: appUrl })).url;
    const egressUrl = (await egress.ask<{ url: string }>({ cmd: 'start', material, upstream: ingressUrl })).url;
    await load.ask({ cmd: 'start', material });
    const servers: Record<Mode, Child[]> = { direct: [direct], 'sidecar-h1': [egress, ingress, app], 'sidecar-h2c': [egress, ingress, app] };

    async function runMode(mode: Mode, concurrency: number, perToken: number): Promise<ModeRun> {
      const tokens = await freshTokens(mode !== 'direct');
      const before = await Promise.all(servers[mode].map((c) => c.ask<{ proofsSigned: number; proofVerifications: number }>({ cmd: 'reset' })));
      const request: RunRequest = {
        cmd: 'run',
        mode,
        url: mode === 'direct' ? directUrl : egressUrl,
        path: mode === 'direct' ? '/resource' : '/api/resource',
        tokens,
        perToken,
        concurrency,
        material,
      };
      const result = await load.ask<RunResult>(request);
      const after = await Promise.all(servers[mode].map((c) => c.ask<{ cpuMicros: number; proofsSigned: number; proofVerifications: number }>({ cmd: 'report' })));
      const cpu = after.reduce((a, r) => a + r.cpuMicros, 0);
      const sum = (k: 'proofsSigned' | 'proofVerifications') => after.reduce((a, r) => a + r[k], 0) - before.reduce((a, r) => a + r[k], 0);
      // CPU includes the warm-up requests (one per stream), a small share of a run.
      const n = result.requests + concurrency;
      const byProcess = Object.fromEntries(servers[mode].map((c, i) => [c.role, (after[i] as { cpuMicros: number }).cpuMicros / n]));
      return { ...result, cpuMicrosPerRequest: cpu / n, cpuMicrosPerRequestByProcess: byProcess, proofsSigned: sum('proofsSigned'), proofVerifications: sum('proofVerifications') };
    }

    // Untimed warm-up of every path (JIT, connection pools), discarded.
    for (const mode of MODES) await runMode(mode, 8, quick ? 20 : 50);
    const results = [];
    for (const { concurrency, perToken } of levels) {
      const runs: Array<Record<Mode, ModeRun>> = [];
      for (let r = 0; r < repeats; r++) {
        const order = [...MODES.slice(r % MODES.length), ...MODES.slice(0, r % MODES.length)];
        const one = {} as Record<Mode, ModeRun>;
        for (const mode of order) one[mode] = await runMode(mode, concurrency, perToken);
        runs.push(one);
        console.error(
          `c=${concurrency} run ${r + 1}/${repeats}: ` +
            MODES.map((m) => `${m} ${one[m].throughput.toFixed(0)} req/s p99 ${one[m].p99Ms.toFixed(2)} ms`).join(', '),
        );
      }
      const ratio = (mode: Mode, k: 'throughput' | 'p99Ms' | 'p50Ms' | 'cpuMicrosPerRequest') => stat(runs.map((x) => x[mode][k] / x.direct[k]));
      const abs = (mode: Mode, k: 'throughput' | 'p99Ms' | 'p50Ms' | 'cpuMicrosPerRequest') => median(runs.map((x) => x[mode][k]));
      results.push({
        concurrency,
        requestsPerRun: tokensN * perToken,
        direct: { throughput: abs('direct', 'throughput'), p50Ms: abs('direct', 'p50Ms'), p99Ms: abs('direct', 'p99Ms'), cpuMicrosPerRequest: abs('direct', 'cpuMicrosPerRequest') },
        sidecar: Object.fromEntries(
          (['sidecar-h1', 'sidecar-h2c'] as const).map((m) => [
            m,
            {
              throughput: abs(m, 'throughput'),
              p50Ms: abs(m, 'p50Ms'),
              p99Ms: abs(m, 'p99Ms'),
              cpuMicrosPerRequest: abs(m, 'cpuMicrosPerRequest'),
              cpuMicrosPerRequestByProcess: Object.fromEntries(['egress', 'ingress', 'app'].map((role) => [role, median(runs.map((x) => x[m].cpuMicrosPerRequestByProcess[role] as number))])),
              throughputRatio: ratio(m, 'throughput'),
              p99Ratio: ratio(m, 'p99Ms'),
              p50Ratio: ratio(m, 'p50Ms'),
              cpuPerRequestRatio: ratio(m, 'cpuMicrosPerRequest'),
              proofsSignedPerRun: runs.map((x) => x[m].proofsSigned),
              proofVerificationsPerRun: runs.map((x) => x[m].proofVerifications),
            },
          ]),
        ),
        failures: runs.reduce((a, x) => a + MODES.reduce((b, m) => b + x[m].failures, 0), 0),
        runs,
      });
    }

    const result = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: availableParallelism(),
      quick,
      seconds: (Date.now() - started) / 1000,
      setup: {
        tokensPerRun: tokensN,
        repeats,
        levels,
        direct: 'load -> server: HTTP/2 over mTLS (TLS 1.3, P-256 client certificate), bearer ES256 JWT, core verifier with minimumBinding none',
        sidecar:
          'load -> egress (HTTP/1.1 keep-alive, one socket per stream; or h2c, one session) -> ingress (HTTP/2 over mTLS, session-bound proof per token and connection) -> app (HTTP/1.1 keep-alive)',
        processes: 'load generator, egress, ingress, app and direct server each in its own process; all on 127.0.0.1',
        cpu: 'server-side CPU per request: egress + ingress + app for the sidecar paths, the server for direct (load generator excluded)',
      },
      results,
    };
    const outDir = join(here, 'results');
    mkdirSync(outDir, { recursive: true });
    const name = quick ? 'sidecar-quick' : 'sidecar';
    writeFileSync(join(outDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
    const f = (x: number, d = 2) => x.toFixed(d);
    const range = (s: { median: number; min: number; max: number }) => `${f(s.median)} (${f(s.min)}..${f(s.max)})`;
    const lines = [
      `# Sidecar path vs direct mTLS with bearer tokens${quick ? ' (quick)' : ''}`,
      '',
      `${result.date}, Node ${result.node}, ${result.cpus} CPUs, ${result.seconds.toFixed(0)} s (after an untimed warm-up of every path). ${tokensN} fresh tokens per run, ${repeats} repeats per concurrency level, the three paths alternating (order rotated). Ratios are sidecar / direct from the same repeat: median (min..max).`,
      '',
      `- direct: ${result.setup.direct}`,
      `- sidecar: ${result.setup.sidecar}`,
      `- ${result.setup.processes}; ${result.setup.cpu}.`,
      '',
      '| concurrency | path | req/s | p50 ms | p99 ms | server CPU µs/req | throughput ratio | p99 ratio | CPU/req ratio |',
      '|---|---|---|---|---|---|---|---|---|',
    ];
    for (const r of results) {
      lines.push(`| ${r.concurrency} | direct (h2 mTLS, bearer) | ${f(r.direct.throughput, 0)} | ${f(r.direct.p50Ms)} | ${f(r.direct.p99Ms)} | ${f(r.direct.cpuMicrosPerRequest, 0)} | 1 | 1 | 1 |`);
      for (const m of ['sidecar-h1', 'sidecar-h2c'] as const) {
        const s = r.sidecar[m] as { throughput: number; p50Ms: number; p99Ms: number; cpuMicrosPerRequest: number; throughputRatio: ReturnType<typeof stat>; p99Ratio: ReturnType<typeof stat>; cpuPerRequestRatio: ReturnType<typeof stat> };
        lines.push(
          `| ${r.concurrency} | ${m === 'sidecar-h1' ? 'sidecar (agent HTTP/1.1)' : 'sidecar (agent h2c)'} | ${f(s.throughput, 0)} | ${f(s.p50Ms)} | ${f(s.p99Ms)} | ${f(s.cpuMicrosPerRequest, 0)} | ${range(s.throughputRatio)} | ${range(s.p99Ratio)} | ${range(s.cpuPerRequestRatio)} |`,
        );
      }
    }
    lines.push('');
    for (const r of results) {
      const cpu = (m: string) => {
        const by = (r.sidecar as Record<string, { cpuMicrosPerRequestByProcess: Record<string, number> }>)[m]!.cpuMicrosPerRequestByProcess;
        return Object.entries(by).map(([k, v]) => `${k} ${f(v, 0)}`).join(', ');
      };
      lines.push(`c=${r.concurrency}: server CPU µs/request by process (median): HTTP/1.1 agent: ${cpu('sidecar-h1')}; h2c agent: ${cpu('sidecar-h2c')}.`);
    }
    lines.push('');
    for (const r of results) {
      const s = r.sidecar as Record<string, { proofsSignedPerRun: number[]; proofVerificationsPerRun: number[] }>;
      lines.push(
        `c=${r.concurrency} (${r.requestsPerRun} requests per run): proofs signed per sidecar run ${s['sidecar-h1']!.proofsSignedPerRun.join(', ')} (h1) / ${s['sidecar-h2c']!.proofsSignedPerRun.join(', ')} (h2c), verified at the ingress ${s['sidecar-h1']!.proofVerificationsPerRun.join(', ')} / ${s['sidecar-h2c']!.proofVerificationsPerRun.join(', ')}; non-200 responses ${r.failures}.`,
      );
    }
    lines.push('');
    const md = lines.join('\n');
    writeFileSync(join(outDir, `${name}.md`), md);
    console.log(md);
  } finally {
    await Promise.all(children.map((c) => c.exit()));
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
