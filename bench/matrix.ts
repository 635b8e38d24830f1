/**
 * Benchmark matrix: session binding against bearer, RFC 8705 certificate binding and DPoP, over
 * several traffic patterns. The resource server (bench/matrix-rs.ts) runs in a child process built
 * from the library's public entry points; this process is the load generator (bench/load.ts).
 *
 * Modes: bearer over mTLS (reference), certificate-bound (RFC 8705), session-bound,
 * session-bound with per-request claims (jti/htm/htu), DPoP (RFC 9449).
 * Patterns:
 * - `h2-long`: one long-lived HTTP/2 connection, N tokens x M requests (M = 1, 10, 100, 1000;
 *   N = R / M so every cell has R requests), 32 streams in flight;
 * - `conn-per-request` / `conn-per-request-resumed`: a new TLS 1.3 connection per request
 *   (HTTP/1.1, `Connection: close`), full handshake / PSK session resumption;
 * - `h1-pool`: an HTTP/1.1 keep-alive pool (6 connections, tokens spread over them);
 * - `agent-mix`: bursts of tool calls by several users sharing a connection, idle gaps longer than
 *   the RS idle timeout so connections drop, reconnection with resumption.
 *
 * Each repeat runs every (pattern, mode) cell, the mode order rotating between repeats; every figure
 * is also reported as a ratio to bearer measured in the same repeat and pattern (median, min..max).
 *
 *   npm run bench                       # full matrix (a few minutes)
 *   npm run bench -- --quick            # smoke run (< 60 s)
 *   node --import tsx bench/matrix.ts --quick --out DIR
 *   node --import tsx bench/matrix.ts --only h2-long-m100,h2-long-m1000 --repeats 9   # focus run -> matrix-focus.*
 *
 * Environment: TETHER_BENCH_RS_NODE_OPTIONS="FLAGS" adds Node flags to the RS children (for example
 * `--cpu-prof --cpu-prof-dir=DIR` to profile them); TETHER_BENCH_RS_PROFILE_DIR=DIR writes one CPU profile per
 * cell (DIR/<pattern>-<mode>-<n>.cpuprofile, the timed part only); TETHER_BENCH_RS_TIME_VERIFY=1 prints the
 * wall time (median, mean) of each node:crypto verify call and of each verifier.verify() in every cell
 * and in the verify-costs loops (the signature primitive where the server runs it against the tight
 * loop), with the RS's user/system CPU and its main-thread/other-threads split per request (it
 * wraps both functions: do not use its run's figures as results). TETHER_BENCH_HPACK=BYTES sets the RS's HTTP/2 `headerTableSize` and the load
 * client's `maxDeflateDynamicTableSize` (an experiment: can a larger HPACK table carry the
 * per-request tokens and proofs cheaper?). Unset: Node's 4 KiB defaults.
 *
 * Output: matrix[-quick].json, matrix[-quick].md, matrix[-quick]-throughput.svg,
 * matrix[-quick]-rs-cpu.svg, matrix[-quick]-client-cpu.svg under bench/results/ (or --out DIR).
 */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { createDevPki } from '@tether/pki';
import { certificateBoundConfirmation, sessionBoundConfirmation } from '@tether/core';
import { jwkThumbprint, publicJwkOf } from '@tether/core/dpop';
import {
  MODES,
  agentMix,
  churnBehindEgress,
  connectionPerRequest,
  keepAlivePool,
  longLivedH2,
  type AgentMixShape,
  type CellMeasurement,
  type LoadCredentials,
  type Mode,
  type PatternContext,
} from './load.js';
import { lineChart } from './svg.js';
import { ForkedChild, installExitGuards } from './children.js';
import { Outstanding, withRunDeadline } from './deadline.js';
import { verifyCostTable, verifyCostTargets, type VerifyCosts } from './verify-cost.js';
import { median } from './median.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outIndex = args.indexOf('--out');
/** Deadline of one cell (one pattern, one mode), ms: a cell that misses it fails the run, naming its outstanding requests. */
const CELL_DEADLINE_MS = 120_000;
/** Deadline of one IPC question to an RS child, ms. */
const ASK_TIMEOUT_MS = 30_000;
const outDir = outIndex >= 0 && args[outIndex + 1] !== undefined ? resolve(args[outIndex + 1] as string) : join(here, 'results');

const config = quick
  ? {
      repeats: 2,
      longRequests: 500,
      mValues: [1, 10, 100, 1000],
      concurrency: 32,
      perConnRequests: 60,
      perConnWorkers: 8,
      perConnTokens: 30,
      poolSize: 6,
      poolTokens: 6,
      poolM: 50,
      idleMs: 200,
      agent: { connections: 2, usersPerConnection: 3, burst: 5, rounds: 2, gapMs: 250 } satisfies AgentMixShape,
    }
  : {
      repeats: 5,
      longRequests: 2000,
      mValues: [1, 10, 100, 1000],
      concurrency: 32,
      perConnRequests: 300,
      perConnWorkers: 8,
      perConnTokens: 60,
      poolSize: 6,
      poolTokens: 20,
      poolM: 100,
      idleMs: 300,
      agent: { connections: 4, usersPerConnection: 4, burst: 10, rounds: 3, gapMs: 400 } satisfies AgentMixShape,
    };

type TokenKind = 'bearer' | 'certificate' | 'session' | 'dpop';
const tokenKind: Record<Mode, TokenKind> = { bearer: 'bearer', certificate: 'certificate', session: 'session', 'session-per-request': 'session', dpop: 'dpop', 'dpop-jose': 'dpop' };

interface Scenario {
  id: string;
  pattern: 'h2-long' | 'h2-long-presigned' | 'conn-per-request' | 'conn-per-request-resumed' | 'h1-pool' | 'agent-mix' | 'egress-churn';
  /** The modes this pattern runs (default: all). */
  modes?: readonly Mode[];
  /** Requests per token on one connection (h2-long and h1-pool). */
  m?: number;
  tokens: number;
  description: string;
  /** Which RS process serves it. */
  rs: 'main' | 'idle';
  run: (ctx: PatternContext, tokens: string[]) => Promise<CellMeasurement>;
}

const allScenarios: Scenario[] = [
  ...config.mValues.map((m): Scenario => {
    const n = Math.max(1, Math.round(config.longRequests / m));
    return {
      id: `h2-long-m${m}`,
      pattern: 'h2-long',
      m,
      tokens: n,
      description: `one HTTP/2 connection, ${n} tokens x ${m} requests, ${config.concurrency} streams in flight`,
      rs: 'main',
      run: (ctx, t) => longLivedH2(ctx, t.slice(0, n), m, config.concurrency),
    };
  }),
  {
    // The RS cost of a first presentation, apart from the load generator's pace: signing as it goes,
    // the client is slower in session mode than in bearer, so the RS reads fewer requests per
    // wake-up and pays more per request for reasons that are not the proof.
    id: 'h2-long-m1-presigned',
    pattern: 'h2-long-presigned',
    m: 1,
    tokens: config.longRequests,
    description: `as h2-long-m1 (${config.longRequests} tokens x 1 request), the session proofs signed before the timed window`,
    modes: ['bearer', 'session'],
    rs: 'main',
    run: (ctx, t) => longLivedH2(ctx, t.slice(0, config.longRequests), 1, config.concurrency, true),
  },
  {
    id: 'conn-per-request',
    pattern: 'conn-per-request',
    tokens: config.perConnTokens,
    description: `new TLS 1.3 connection per request (full handshake, HTTP/1.1), ${config.perConnRequests} requests, ${config.perConnWorkers} workers`,
    rs: 'main',
    run: (ctx, t) => connectionPerRequest(ctx, t.slice(0, config.perConnTokens), config.perConnRequests, config.perConnWorkers, false),
  },
  {
    id: 'conn-per-request-resumed',
    pattern: 'conn-per-request-resumed',
    tokens: config.perConnTokens,
    description: `new TLS 1.3 connection per request (PSK resumption, HTTP/1.1), ${config.perConnRequests} requests, ${config.perConnWorkers} workers`,
    rs: 'main',
    run: (ctx, t) => connectionPerRequest(ctx, t.slice(0, config.perConnTokens), config.perConnRequests, config.perConnWorkers, true),
  },
  {
    id: 'h1-pool',
    pattern: 'h1-pool',
    m: config.poolM,
    tokens: config.poolTokens,
    description: `HTTP/1.1 keep-alive pool of ${config.poolSize}, ${config.poolTokens} tokens x ${config.poolM} requests`,
    rs: 'main',
    run: (ctx, t) => keepAlivePool(ctx, t.slice(0, config.poolTokens), config.poolM, config.poolSize),
  },
  {
    id: 'agent-mix',
    pattern: 'agent-mix',
    tokens: config.agent.connections * config.agent.usersPerConnection,
    description:
      `agent-like mix: ${config.agent.connections} HTTP/2 connections x ${config.agent.usersPerConnection} users, bursts of ${config.agent.burst} calls, ` +
      `${config.agent.rounds} rounds, ${config.agent.gapMs} ms idle gaps > ${config.idleMs} ms RS idle timeout (connection dropped; next burst resumes; a connection dropped mid-burst is reopened and the call retried once)`,
    rs: 'idle',
    run: (ctx, t) => agentMix(ctx, t, config.agent),
  },
  {
    id: 'egress-churn',
    pattern: 'egress-churn',
    tokens: config.perConnTokens,
    description:
      `agent churn behind the egress sidecar: a new plain HTTP/1.1 connection from the agent to the egress for every request (${config.perConnRequests} requests, ${config.perConnWorkers} agents, ${config.perConnTokens} tokens); ` +
      'the egress keeps its HTTP/2 mTLS connection to the RS and adds the Session-Binding Proofs (Bearer tokens); DPoP: the agent signs a proof per request, the egress forwards it',
    modes: ['bearer', 'session', 'dpop'],
    rs: 'main',
    run: async (ctx, t) => {
      const egress = egressSidecar as { child: ForkedChild; address: { host: string; port: number } };
      const meas = await churnBehindEgress({ ...ctx, beforeTimed: async () => (await ctx.beforeTimed(), await egress.child.ask({ cmd: 'reset' }, ASK_TIMEOUT_MS)) }, egress.address, t.slice(0, config.perConnTokens), config.perConnRequests, config.perConnWorkers);
      const report = await egress.child.ask<{ cpuMicros: number; proofsSigned: number }>({ cmd: 'report' }, ASK_TIMEOUT_MS);
      return { ...meas, sidecarCpuMicros: report.cpuMicros };
    },
  },
];
/** The egress sidecar of the `egress-churn` pattern (a bench/sidecar-process.ts child), started in main. */
let egressSidecar: { child: ForkedChild; address: { host: string; port: number } } | undefined;
const modesOf = (s: Scenario): readonly Mode[] => s.modes ?? MODES;
/** `--only ID,ID`: run a subset of the patterns (results go to matrix-focus.*). */
const only = outIndexOf('--only')?.split(',');
const scenarios = only === undefined ? allScenarios : allScenarios.filter((s) => only.includes(s.id));
if (scenarios.length === 0) throw new Error(`--only matched no pattern; known: ${allScenarios.map((s) => s.id).join(', ')}`);
const repeatsArg = outIndexOf('--repeats');
if (repeatsArg !== undefined) config.repeats = Math.max(1, Number(repeatsArg));

function outIndexOf(flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

// ---------------------------------------------------------------------------------------------

const stat = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

interface RsReport {
  cpuMicros: number;
  stats: { requests: number; accepted: number; proofVerifications: number; cacheHits: number; dpopProofVerifications: number; failures: Record<string, number> };
  connections: number;
  resumed: number;
}

/** One cell's figures (per request where it says so). */
interface Cell {
  repeat: number;
  scenario: string;
  mode: Mode;
  requests: number;
  failures: number;
  throughput: number;
  rsCpuUs: number;
  clientCpuUs: number;
  signatures: number;
  signaturesPerRequest: number;
  verifications: number;
  verificationsPerRequest: number;
  cacheHits: number;
  /** Connections the client opened in the timed window. */
  connections: number;
  /** Connections the RS accepted after its counters were reset, and how many of those were resumed. */
  rsConnections: number;
  resumed: number;
  p50Ms: number;
  p99Ms: number;
  rsFailures: Record<string, number>;
  /** CPU µs per request of the sidecar in the path (egress-churn), else null. */
  sidecarCpuUs: number | null;
}

const FIGURES = ['throughput', 'rsCpuUs', 'clientCpuUs', 'p50Ms', 'p99Ms'] as const;
type Figure = (typeof FIGURES)[number];

async function main(): Promise<void> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'tether-matrix-'));
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  writeFileSync(join(dir, 'ca.pem'), pki.ca.cert);
  writeFileSync(join(dir, 'server.pem'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key);
  // The RS measures the in-process verification costs with the client's certificate and key.
  writeFileSync(join(dir, 'client.pem'), client.cert);
  writeFileSync(join(dir, 'client.key'), client.key);
  const { privateKey: asKey, publicKey: asPublic } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = { keys: [{ ...(await exportJWK(asPublic)), kid: 'b1', alg: 'ES256' }] };
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));

  const certificate = new X509Certificate(client.cert);
  const dpopKey: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const dpopJwk = publicJwkOf(dpopKey);
  const creds: LoadCredentials = {
    certPem: client.cert,
    keyPem: client.key,
    caPem: pki.ca.cert,
    privateKey: createPrivateKey(client.key),
    certificate,
    dpopKey,
    dpopJwk,
  };
  const cnfs: Record<TokenKind, unknown> = {
    bearer: undefined,
    certificate: certificateBoundConfirmation(certificate),
    session: sessionBoundConfirmation(certificate),
    dpop: { jkt: await jwkThumbprint(dpopJwk) },
  };
  const mint = (cnf: unknown, sub: string) =>
    new SignJWT({ client_id: 'bench', scope: 'read', ...(cnf === undefined ? {} : { cnf }) })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'b1' })
      .setIssuer('https://as.bench')
      .setAudience('https://rs.bench')
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(asKey);
  const maxTokens = Math.max(...scenarios.map((s) => s.tokens));
  const tokens = {} as Record<TokenKind, string[]>;
  for (const kind of Object.keys(cnfs) as TokenKind[]) {
    tokens[kind] = [];
    for (let i = 0; i < maxTokens; i++) tokens[kind].push(await mint(cnfs[kind], `${kind}-u${i}`));
  }

  // Two RS processes built the same way: `main` keeps connections open; `idle` drops a connection
  // after config.idleMs without traffic (the keep-alive timeout the agent-like mix runs into).
  const servers = { main: startRs('rs-main', dir, 0), idle: startRs('rs-idle', dir, config.idleMs) };
  const egressChild = scenarios.some((x) => x.pattern === 'egress-churn') ? new ForkedChild('egress', join(here, 'sidecar-process.ts'), ASK_TIMEOUT_MS) : undefined;
  try {
    const ports = { main: ((await servers.main.ready) as { port: number }).port, idle: ((await servers.idle.ready) as { port: number }).port };
    if (egressChild !== undefined) {
      const material = { ca: pki.ca.cert, serverCert: pki.server.cert, serverKey: pki.server.key, clientCert: client.cert, clientKey: client.key, jwks, issuer: 'https://as.bench', audience: 'https://rs.bench' };
      const start = { cmd: 'start', material, upstream: `https://127.0.0.1:${ports.main}` };
      const { url } = await egressChild.ask<{ url: string }>(start, ASK_TIMEOUT_MS);
      egressSidecar = { child: egressChild, address: { host: '127.0.0.1', port: Number(new URL(url).port) } };
    }

    const runCell = async (scenario: Scenario, mode: Mode, repeat: number): Promise<Cell> => {
      const rs = servers[scenario.rs];
      const target = { host: '127.0.0.1', port: ports[scenario.rs], path: mode === 'dpop-jose' ? '/jose/resource' : '/resource' };
      const outstanding = new Outstanding();
      // `profile` names the cell (its CPU profile with TETHER_BENCH_RS_PROFILE_DIR, its timing lines).
      const reset = { cmd: 'reset', profile: `${scenario.id}-${mode}` };
      const ctx: PatternContext = { creds, target, mode, beforeTimed: () => rs.ask(reset, ASK_TIMEOUT_MS), outstanding };
      const meas = await withRunDeadline(`cell ${scenario.id}/${mode} (repeat ${repeat})`, CELL_DEADLINE_MS, outstanding, scenario.run(ctx, tokens[tokenKind[mode]]));
      const rep = await rs.ask<RsReport>({ cmd: 'report' }, ASK_TIMEOUT_MS);
      const n = meas.requests;
      const verifications = rep.stats.proofVerifications + rep.stats.dpopProofVerifications;
      return {
        repeat,
        scenario: scenario.id,
        mode,
        requests: n,
        failures: meas.failures,
        throughput: n / meas.seconds,
        rsCpuUs: rep.cpuMicros / n,
        clientCpuUs: meas.clientCpuMicros / n,
        signatures: meas.signatures,
        signaturesPerRequest: meas.signatures / n,
        verifications,
        verificationsPerRequest: verifications / n,
        cacheHits: rep.stats.cacheHits,
        connections: meas.connectionsOpened,
        rsConnections: rep.connections,
        resumed: rep.resumed,
        p50Ms: meas.p50Ms,
        p99Ms: meas.p99Ms,
        rsFailures: rep.stats.failures,
        sidecarCpuUs: meas.sidecarCpuMicros === undefined ? null : meas.sidecarCpuMicros / n,
      };
    };

    // Warm-up (not recorded): JIT, JWT validation cache, TLS contexts. Every mode once on a
    // long-lived connection, then every other pattern once with session-bound credentials.
    const warm = scenarios.find((s) => s.pattern === 'h2-long') ?? (scenarios[0] as Scenario);
    for (const mode of modesOf(warm)) await runCell(warm, mode, -1);
    for (const s of scenarios.filter((x) => x.pattern !== 'h2-long')) await runCell(s, 'session', -1);

    const cells: Cell[] = [];
    for (let r = 0; r < config.repeats; r++) {
      for (const scenario of scenarios) {
        const modes = modesOf(scenario);
        const order = modes.map((_, i) => modes[(i + r) % modes.length] as Mode);
        for (const mode of order) {
          const t0 = Date.now();
          const cell = await runCell(scenario, mode, r);
          cells.push(cell);
          if (process.env.BENCH_VERBOSE !== undefined) {
            console.error(`${scenario.id} ${mode}: ${cell.requests} req, ${cell.throughput.toFixed(0)} req/s, ${cell.failures} failures, ${Date.now() - t0} ms, rs fail ${JSON.stringify(cell.rsFailures)} conns ${cell.connections}/${cell.rsConnections} resumed ${cell.resumed}`);
          }
        }
      }
      console.error(`repeat ${r + 1}/${config.repeats} done (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }

    // Per-verification costs in the RS process, after the matrix (same run, same machine state).
    const question = { cmd: 'verify-costs', samples: quick ? 300 : 2000, rounds: quick ? 2 : 5 };
    const costs = await servers.main.ask<VerifyCosts>(question, 300_000);
    const result = summarize(cells, costs);
    write(result, cells, costs);
  } finally {
    await Promise.all([servers.main.exit(), servers.idle.exit(), egressChild?.exit()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Fork an RS child (bench/matrix-rs.ts); every question to it has a deadline, and it is killed by PID on every exit path. */
function startRs(role: string, dir: string, idleMs: number): ForkedChild {
  const execArgv = (process.env.TETHER_BENCH_RS_NODE_OPTIONS ?? '').split(' ').filter((a) => a !== '');
  return new ForkedChild(role, join(here, 'matrix-rs.ts'), ASK_TIMEOUT_MS, { args: [dir, String(idleMs)], execArgv });
}

// ---------------------------------------------------------------------------------------------

interface ModeSummary {
  median: Record<Figure | 'signaturesPerRequest' | 'verificationsPerRequest' | 'connectionsPerRequest' | 'resumedShare', number>;
  /** mode / bearer in the same repeat and scenario. */
  ratio: Record<Figure, { median: number; min: number; max: number }>;
  signaturesPerRun: number[];
  verificationsPerRun: number[];
  failures: number;
  rsFailures: Record<string, number>;
}

function summarize(cells: Cell[], costs: VerifyCosts) {
  const results: Record<string, Record<string, ModeSummary>> = {};
  for (const s of scenarios) {
    results[s.id] = {};
    for (const mode of modesOf(s)) {
      const mine = cells.filter((c) => c.scenario === s.id && c.mode === mode);
      const ratio = {} as ModeSummary['ratio'];
      for (const f of FIGURES) {
        const rs = mine.map((c) => {
          const b = cells.find((x) => x.scenario === s.id && x.mode === 'bearer' && x.repeat === c.repeat) as Cell;
          return c[f] / b[f];
        });
        ratio[f] = stat(rs);
      }
      const rsFailures: Record<string, number> = {};
      for (const c of mine) for (const [k, v] of Object.entries(c.rsFailures)) rsFailures[k] = (rsFailures[k] ?? 0) + v;
      (results[s.id] as Record<string, ModeSummary>)[mode] = {
        median: {
          throughput: median(mine.map((c) => c.throughput)),
          rsCpuUs: median(mine.map((c) => c.rsCpuUs)),
          clientCpuUs: median(mine.map((c) => c.clientCpuUs)),
          p50Ms: median(mine.map((c) => c.p50Ms)),
          p99Ms: median(mine.map((c) => c.p99Ms)),
          signaturesPerRequest: median(mine.map((c) => c.signaturesPerRequest)),
          verificationsPerRequest: median(mine.map((c) => c.verificationsPerRequest)),
          connectionsPerRequest: median(mine.map((c) => c.connections / c.requests)),
          resumedShare: median(mine.map((c) => (c.rsConnections === 0 ? 0 : c.resumed / c.rsConnections))),
        },
        ratio,
        signaturesPerRun: mine.map((c) => c.signatures),
        verificationsPerRun: mine.map((c) => c.verifications),
        failures: mine.reduce((a, c) => a + c.failures, 0),
        rsFailures,
      };
    }
  }
  // Cross-mode ratios in the same repeat (session / dpop).
  const pairRatio = (scenario: string, a: Mode, b: Mode, f: Figure) =>
    stat(
      cells
        .filter((c) => c.scenario === scenario && c.mode === a)
        .map((c) => c[f] / (cells.find((x) => x.scenario === scenario && x.mode === b && x.repeat === c.repeat) as Cell)[f]),
    );
  const get = (sid: string, mode: Mode) => (results[sid] as Record<string, ModeSummary>)[mode] as ModeSummary;
  const targets: Array<{ claim: string; scenario: string; value: string; holds: boolean | null }> = [];
  const fr3 = (r: { median: number; min: number; max: number }) => `${r.median.toFixed(3)} (${r.min.toFixed(3)}..${r.max.toFixed(3)})`;
  for (const m of config.mValues.filter((x) => x >= 100 && scenarios.some((s) => s.id === `h2-long-m${x}`))) {
    const sid = `h2-long-m${m}`;
    const r = get(sid, 'session').ratio;
    targets.push({ claim: `session-bound RS CPU/request <= 1.05x bearer (long-lived h2, M=${m})`, scenario: sid, value: fr3(r.rsCpuUs), holds: r.rsCpuUs.median <= 1.05 });
    targets.push({ claim: `session-bound >= 0.97x bearer throughput (long-lived h2, M=${m})`, scenario: sid, value: fr3(r.throughput), holds: r.throughput.median >= 0.97 });
    const d = pairRatio(sid, 'session', 'dpop', 'throughput');
    targets.push({ claim: `session-bound >= 2.5x DPoP throughput (long-lived h2, M=${m})`, scenario: sid, value: `${d.median.toFixed(2)} (${d.min.toFixed(2)}..${d.max.toFixed(2)})`, holds: d.median >= 2.5 });
    const j = pairRatio(sid, 'session', 'dpop-jose', 'throughput');
    targets.push({ claim: `session-bound vs jose's standard DPoP path, throughput (long-lived h2, M=${m}; informational)`, scenario: sid, value: `${j.median.toFixed(2)} (${j.min.toFixed(2)}..${j.max.toFixed(2)})`, holds: null });
  }
  for (const s of scenarios.filter((x) => x.pattern === 'h2-long')) {
    const runs = get(s.id, 'session').verificationsPerRun;
    targets.push({ claim: `RS proof verifications (its own counter) = N (${s.tokens}), not N x M (${s.tokens * (s.m ?? 1)}) (M=${s.m})`, scenario: s.id, value: runs.join(', '), holds: runs.every((x) => x === s.tokens) });
  }
  targets.push(...verifyCostTargets(costs, (sid, mode) => (scenarios.some((s) => s.id === sid) ? cells.filter((c) => c.scenario === sid && c.mode === mode) : [])));
  const egress = scenarios.find((x) => x.pattern === 'egress-churn');
  if (egress !== undefined) {
    const session = get(egress.id, 'session');
    const runs = session.verificationsPerRun;
    targets.push({
      claim: `egress-churn: RS proof verifications per cell for session-bound tokens <= one per token (${egress.tokens}), not one per agent connection (${config.perConnRequests}); 0 when the egress's upstream connection already carries the tokens' bindings (from the warm-up or an earlier repeat)`,
      scenario: egress.id,
      value: runs.join(', '),
      holds: runs.every((x) => x <= egress.tokens),
    });
    const d = pairRatio(egress.id, 'session', 'dpop', 'throughput');
    const sidecar = (mode: Mode) => median(cells.filter((c) => c.scenario === egress.id && c.mode === mode).map((c) => c.sidecarCpuUs ?? NaN));
    targets.push({
      claim: 'egress-churn: session-bound vs bearer and DPoP behind the same egress (informational)',
      scenario: egress.id,
      value:
        `throughput ${session.ratio.throughput.median.toFixed(3)}x bearer (${session.ratio.throughput.min.toFixed(3)}..${session.ratio.throughput.max.toFixed(3)}), ${d.median.toFixed(2)}x DPoP (${d.min.toFixed(2)}..${d.max.toFixed(2)}); ` +
        `RS CPU/request ${session.ratio.rsCpuUs.median.toFixed(2)}x bearer; egress CPU µs/request bearer ${sidecar('bearer').toFixed(0)}, session ${sidecar('session').toFixed(0)}, dpop ${sidecar('dpop').toFixed(0)}; RS verifications/request bearer ${get(egress.id, 'bearer').median.verificationsPerRequest.toFixed(3)}, session ${session.median.verificationsPerRequest.toFixed(3)}, dpop ${get(egress.id, 'dpop').median.verificationsPerRequest.toFixed(3)}`,
      holds: null,
    });
  }
  for (const sid of ['conn-per-request', 'conn-per-request-resumed', 'agent-mix', 'h1-pool'].filter((x) => scenarios.some((s) => s.id === x))) {
    const d = pairRatio(sid, 'session', 'dpop', 'throughput');
    const b = get(sid, 'session').ratio.throughput;
    const cpu = pairRatio(sid, 'session', 'dpop', 'rsCpuUs');
    targets.push({
      claim: `${sid}: session-bound vs DPoP (informational)`,
      scenario: sid,
      value: `throughput ${d.median.toFixed(2)}x DPoP (${d.min.toFixed(2)}..${d.max.toFixed(2)}), ${b.median.toFixed(3)}x bearer; RS CPU/request ${cpu.median.toFixed(2)}x DPoP`,
      holds: null,
    });
  }
  return { results, targets };
}

function fmt(x: number, digits = 1): string {
  if (!Number.isFinite(x)) return 'n/a';
  return x >= 1000 ? x.toFixed(0) : x.toFixed(digits);
}
const fr = (r: { median: number; min: number; max: number }) => `${r.median.toFixed(2)} (${r.min.toFixed(2)}..${r.max.toFixed(2)})`;

function write(summary: ReturnType<typeof summarize>, cells: Cell[], costs: VerifyCosts): void {
  mkdirSync(outDir, { recursive: true });
  const base = `${only === undefined ? 'matrix' : 'matrix-focus'}${quick ? '-quick' : ''}`;
  const json = {
    date: new Date().toISOString(),
    node: process.version,
    quick,
    config,
    transport: 'TLS 1.3, P-256 client certificate, ES256 access tokens and proofs, 127.0.0.1, RS in a child process',
    modes: MODES,
    scenarios: scenarios.map((s) => ({ id: s.id, pattern: s.pattern, m: s.m ?? null, tokens: s.tokens, description: s.description })),
    results: summary.results,
    targets: summary.targets,
    verifyCosts: costs,
    cells,
  };
  writeFileSync(join(outDir, `${base}.json`), JSON.stringify(json, null, 2) + '\n');

  const md: string[] = [
    `# Benchmark matrix${quick ? ' (quick)' : ''}`,
    '',
    `${json.date}, Node ${json.node}, ${config.repeats} repeats (mode order rotated). ${json.transport}.`,
    'Each figure is the median over repeats; "x bearer" is the median (min..max) of mode / bearer measured in the same repeat and pattern.',
    'Sig/req = proofs signed by the client per request; ver/req = full proof verifications at the RS (Session-Binding + DPoP) per request.',
    '',
    '| pattern | mode | req/s | x bearer | RS CPU µs/req | x bearer | client CPU µs/req | x bearer | sig/req | ver/req | p50 ms | p99 ms | x bearer p99 | fail |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of scenarios) {
    for (const mode of modesOf(s)) {
      const r = (summary.results[s.id] as Record<string, ModeSummary>)[mode] as ModeSummary;
      md.push(
        `| ${s.id} | ${mode} | ${fmt(r.median.throughput, 0)} | ${fr(r.ratio.throughput)} | ${fmt(r.median.rsCpuUs)} | ${fr(r.ratio.rsCpuUs)} | ${fmt(r.median.clientCpuUs)} | ${fr(r.ratio.clientCpuUs)} | ` +
          `${r.median.signaturesPerRequest.toFixed(3)} | ${r.median.verificationsPerRequest.toFixed(3)} | ${r.median.p50Ms.toFixed(2)} | ${r.median.p99Ms.toFixed(2)} | ${r.ratio.p99Ms.median.toFixed(2)} | ${r.failures} |`,
      );
    }
  }
  md.push('', '## Patterns', '');
  for (const s of scenarios) md.push(`- \`${s.id}\`: ${s.description}`);
  md.push('', ...verifyCostTable(costs));
  md.push('', '## Targets', '', '| claim | measured | holds |', '|---|---|---|');
  for (const t of summary.targets) md.push(`| ${t.claim} | ${t.value} | ${t.holds === null ? '-' : t.holds ? 'yes' : '**no**'} |`);
  const resumed = summary.results['conn-per-request-resumed']?.bearer?.median.resumedShare;
  const agentConns = MODES.map((mode) => `${mode} ${median(cells.filter((c) => c.scenario === 'agent-mix' && c.mode === mode).map((c) => c.connections))}`);
  if (scenarios.some((s) => s.id === 'agent-mix')) md.push('', `Agent mix, TLS connections opened per cell (median; ${config.agent.connections * config.agent.rounds} when no connection dropped mid-burst): ${agentConns.join(', ')}.`);
  if (resumed !== undefined) md.push('', `Share of resumed handshakes at the RS in conn-per-request-resumed (bearer): ${(resumed * 100).toFixed(0)}%.`);
  md.push('');
  writeFileSync(join(outDir, `${base}.md`), md.join('\n'));

  const longs = scenarios.filter((s) => s.pattern === 'h2-long');
  const chart = (figure: Figure, title: string, yLabel: string) =>
    lineChart({
      title,
      xLabel: 'M (requests per token on one long-lived HTTP/2 connection)',
      yLabel,
      x: longs.map((s) => s.m ?? 0),
      series: MODES.map((mode) => ({ name: mode, values: longs.map((s) => ((summary.results[s.id] as Record<string, ModeSummary>)[mode] as ModeSummary).median[figure]) })),
    });
  writeFileSync(join(outDir, `${base}-throughput.svg`), chart('throughput', 'RS throughput vs M', 'requests / s'));
  writeFileSync(join(outDir, `${base}-rs-cpu.svg`), chart('rsCpuUs', 'RS CPU per request vs M', 'µs CPU / request'));
  writeFileSync(join(outDir, `${base}-client-cpu.svg`), chart('clientCpuUs', 'Client CPU per request vs M', 'µs CPU / request'));
  console.log(md.join('\n'));
  console.error(`wrote ${base}.{json,md} and 3 SVG charts to ${outDir}; ${cells.length} cells`);
}

installExitGuards();
main().catch((error: unknown) => {
  console.error(error);
  // Exit now: a cell that missed its deadline may still hold sockets; the exit guard kills the RS children.
  process.exit(1);
});
