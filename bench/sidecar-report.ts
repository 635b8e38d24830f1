/**
 * Aggregation and Markdown for the sidecar benchmark (bench/sidecar.ts): per concurrency level and
 * path, medians over the repeats, and per repeat the ratio / difference to the direct run of the
 * same repeat (median and min..max).
 */
import type { Mode, RunResult } from './sidecar-load.js';

/** What each path is and which server-side processes it spends CPU in. */
export const PATHS: Record<Mode, { label: string; processes: string[]; description: string }> = {
  direct: {
    label: 'direct to app',
    processes: ['app'],
    description: 'load -> app: plain HTTP/1.1 keep-alive (the baseline: no hop, no TLS, no token check)',
  },
  'rs-mtls': {
    label: 'in-process RS (h2 mTLS, bearer)',
    processes: ['rs-mtls'],
    description: 'load -> resource server: HTTP/2 over mTLS (TLS 1.3), bearer ES256 JWT checked in-process by the core verifier (minimumBinding none)',
  },
  'nginx-h1': {
    label: 'nginx (TLS, HTTP/1.1) -> app',
    processes: ['nginx', 'app'],
    description: 'load -> nginx: HTTPS/1.1 keep-alive, TLS 1.3, no client certificate -> app: HTTP/1.1 keep-alive upstream pool',
  },
  'nginx-h2': {
    label: 'nginx (TLS, h2) -> app',
    processes: ['nginx', 'app'],
    description: 'load -> nginx: HTTP/2 over TLS 1.3, one connection, no client certificate -> app: HTTP/1.1 keep-alive upstream pool',
  },
  ingress: {
    label: 'ingress only -> app',
    processes: ['ingress', 'app'],
    description: 'load (SessionBoundClient: HTTP/2 over mTLS, one proof per token and connection) -> ingress (session-bound token check) -> app: HTTP/1.1 keep-alive',
  },
  'sidecar-h1': {
    label: 'egress (HTTP/1.1) -> ingress -> app',
    processes: ['egress', 'ingress', 'app'],
    description: 'load: plain HTTP/1.1 keep-alive, one socket per worker -> egress (signs the proof) -> ingress: HTTP/2 over mTLS -> app: HTTP/1.1 keep-alive',
  },
  'sidecar-h2c': {
    label: 'egress (h2c) -> ingress -> app',
    processes: ['egress', 'ingress', 'app'],
    description: 'load: h2c, one session -> egress (signs the proof) -> ingress: HTTP/2 over mTLS -> app: HTTP/1.1 keep-alive',
  },
};

/** One path in one repeat: the load generator's result with the servers' CPU and proofs added. */
export interface ModeRun extends Omit<RunResult, 'kind' | 'loadCpuMicros'> {
  cpuMicrosPerRequest: number;
  cpuMicrosPerRequestByProcess: Record<string, number>;
  loadCpuMicrosPerRequest: number;
  /** Proofs signed by the load generator and the egress together. */
  proofsSigned: number;
  proofVerifications: number;
}

export type Repeat = Partial<Record<Mode, ModeRun>>;

export interface Stat {
  median: number;
  min: number;
  max: number;
}

export interface PathSummary {
  label: string;
  processes: string[];
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicrosPerRequest: number;
  cpuMicrosPerRequestByProcess: Record<string, number>;
  throughputRatio: Stat;
  addedP50Ms: Stat;
  addedP99Ms: Stat;
  cpuPerRequestRatio: Stat;
  proofsSignedPerRun: number[];
  proofVerificationsPerRun: number[];
  failures: number;
}

export interface LevelSummary {
  concurrency: number;
  requestsPerRun: number;
  paths: Partial<Record<Mode, PathSummary>>;
  failures: number;
  /** The largest share of its deadline any run of this level used. */
  maxDeadlineUse: number;
  runs: Repeat[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const stat = (xs: number[]): Stat => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

export function summarizeLevel(concurrency: number, requestsPerRun: number, modes: readonly Mode[], runs: Repeat[]): LevelSummary {
  const get = (r: Repeat, m: Mode) => r[m] as ModeRun;
  const paths: Partial<Record<Mode, PathSummary>> = {};
  for (const m of modes) {
    const of = (k: 'throughput' | 'p50Ms' | 'p99Ms' | 'cpuMicrosPerRequest') => median(runs.map((r) => get(r, m)[k]));
    paths[m] = {
      label: PATHS[m].label,
      processes: PATHS[m].processes,
      throughput: of('throughput'),
      p50Ms: of('p50Ms'),
      p99Ms: of('p99Ms'),
      cpuMicrosPerRequest: of('cpuMicrosPerRequest'),
      cpuMicrosPerRequestByProcess: Object.fromEntries(PATHS[m].processes.map((p) => [p, median(runs.map((r) => get(r, m).cpuMicrosPerRequestByProcess[p] as number))])),
      throughputRatio: stat(runs.map((r) => get(r, m).throughput / get(r, 'direct').throughput)),
      addedP50Ms: stat(runs.map((r) => get(r, m).p50Ms - get(r, 'direct').p50Ms)),
      addedP99Ms: stat(runs.map((r) => get(r, m).p99Ms - get(r, 'direct').p99Ms)),
      cpuPerRequestRatio: stat(runs.map((r) => get(r, m).cpuMicrosPerRequest / get(r, 'direct').cpuMicrosPerRequest)),
      proofsSignedPerRun: runs.map((r) => get(r, m).proofsSigned),
      proofVerificationsPerRun: runs.map((r) => get(r, m).proofVerifications),
      failures: runs.reduce((a, r) => a + get(r, m).failures, 0),
    };
  }
  const all = runs.flatMap((r) => modes.map((m) => get(r, m)));
  return {
    concurrency,
    requestsPerRun,
    paths,
    failures: all.reduce((a, x) => a + x.failures, 0),
    maxDeadlineUse: Math.max(...all.map((x) => x.elapsedMs / x.deadlineMs)),
    runs,
  };
}

export interface BenchResult {
  date: string;
  node: string;
  cpus: number;
  quick: boolean;
  seconds: number;
  nginx: { binary: string; version: string; config: string } | { skipped: string };
  setup: {
    tokensPerRun: number;
    repeats: number;
    levels: Array<{ concurrency: number; perToken: number }>;
    requestTimeoutMs: number;
    runDeadline: string;
    paths: Partial<Record<Mode, string>>;
    processes: string;
    cpu: string;
  };
  results: LevelSummary[];
}

const f = (x: number, d = 2) => x.toFixed(d);
const range = (s: Stat, d = 2) => `${f(s.median, d)} (${f(s.min, d)}..${f(s.max, d)})`;
const sg = (x: number) => `${x >= 0 ? '+' : ''}${f(x)}`;
const signed = (s: Stat) => `${sg(s.median)} (${sg(s.min)}..${sg(s.max)})`;

function failuresByPath(level: LevelSummary): string {
  const failing = Object.entries(level.paths).filter(([, p]) => p.failures > 0);
  if (failing.length === 0) return 'none';
  return failing
    .map(([m, p]) => {
      const samples = level.runs.flatMap((run) => run[m as Mode]?.failureSamples ?? []);
      return `${m} ${p.failures} (e.g. ${[...new Set(samples.map((x) => x.replace(/^worker \d+ /, '')))].slice(0, 3).join('; ')})`;
    })
    .join(', ');
}

export function renderMarkdown(r: BenchResult): string {
  const modes = Object.keys(r.setup.paths) as Mode[];
  const nginx = 'skipped' in r.nginx ? `nginx rows skipped: ${r.nginx.skipped}` : `${r.nginx.version} (${r.nginx.config})`;
  const failed = r.results.reduce((a, l) => a + l.failures, 0);
  const lines = [
    `# Sidecar benchmark: tether sidecars and nginx against direct calls to the app${r.quick ? ' (quick)' : ''}`,
    '',
    ...(failed === 0 ? [] : [`**FAILED: ${failed} request(s) failed** (the bench exited 1); per level and path below the table.`, '']),
    `${r.date}, Node ${r.node}, ${r.cpus} CPUs, ${f(r.seconds, 0)} s (after an untimed warm-up of every path). ${r.setup.tokensPerRun} fresh tokens per run, ${r.setup.repeats} repeats per concurrency level, the paths alternating (order rotated per repeat). "x direct" and the added latencies compare each run with the direct run of the same repeat: median (min..max) over the repeats. The load generator and every server share the machine's CPUs, and the machine is shared with other work: the numbers are noisy.`,
    '',
    ...modes.map((m) => `- ${PATHS[m].label}: ${r.setup.paths[m]}`),
    `- nginx: ${nginx}`,
    `- ${r.setup.processes}; ${r.setup.cpu}.`,
    `- Every request has a ${r.setup.requestTimeoutMs} ms timeout; every run has a deadline of ${r.setup.runDeadline}. The slowest run used ${f(100 * Math.max(...r.results.map((l) => l.maxDeadlineUse)), 0)} % of its deadline.`,
    '',
    '| concurrency | path | req/s | x direct | p50 ms | added p50 ms | p99 ms | added p99 ms | server CPU µs/req | by process (µs/req) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const level of r.results) {
    for (const m of modes) {
      const p = level.paths[m] as PathSummary;
      const base = m === 'direct';
      const by = Object.entries(p.cpuMicrosPerRequestByProcess).map(([k, v]) => `${k} ${f(v, 0)}`).join(', ');
      lines.push(
        `| ${level.concurrency} | ${p.label} | ${f(p.throughput, 0)} | ${base ? '1' : range(p.throughputRatio)} | ${f(p.p50Ms)} | ${base ? '0' : signed(p.addedP50Ms)} | ${f(p.p99Ms)} | ${base ? '0' : signed(p.addedP99Ms)} | ${f(p.cpuMicrosPerRequest, 0)} | ${by} |`,
      );
    }
  }
  lines.push('');
  for (const level of r.results) {
    const proofs = (m: Mode) => {
      const p = level.paths[m];
      return p === undefined ? undefined : `${m} signed ${p.proofsSignedPerRun.join(', ')}, verified ${p.proofVerificationsPerRun.join(', ')}`;
    };
    const parts = (['ingress', 'sidecar-h1', 'sidecar-h2c'] as const).map(proofs).filter((x) => x !== undefined);
    lines.push(`c=${level.concurrency} (${level.requestsPerRun} requests per run): proofs per run: ${parts.join('; ')}; failed requests: ${failuresByPath(level)}.`);
  }
  lines.push('');
  return lines.join('\n');
}
