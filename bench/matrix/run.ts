/**
 * Running the matrix's cells (one pattern, one mode) against the RS children (bench/matrix-rs.ts)
 * and the egress sidecar child: a warm-up, then every cell of every repeat with the mode order
 * rotating between repeats. Each cell's figures combine the load generator's measurement with the
 * RS's own counters, reset before the timed window.
 */
import { join } from 'node:path';
import { ForkedChild } from '../children.js';
import { Outstanding, withRunDeadline } from '../deadline.js';
import type { PatternContext } from '../load/patterns.js';
import type { CellMeasurement } from '../load/recorder.js';
import type { Mode } from '../load/signer.js';
import { ASK_TIMEOUT_MS, CELL_DEADLINE_MS, benchDir, config } from './config.js';
import { tokenKind, type Fixtures } from './fixtures.js';
import { modesOf, scenarios, useEgressSidecar, type Scenario } from './scenarios.js';

interface RsReport {
  cpuMicros: number;
  stats: { requests: number; accepted: number; proofVerifications: number; cacheHits: number; dpopProofVerifications: number; failures: Record<string, number> };
  connections: number;
  resumed: number;
}

/** One cell's figures (per request where it says so). */
export interface Cell {
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

/** What the cells run against: the two RS children, their ports, and the client's credentials and tokens. */
export interface Rig {
  servers: Record<Scenario['rs'], ForkedChild>;
  ports: Record<Scenario['rs'], number>;
  fixtures: Fixtures;
}

/** Fork an RS child (bench/matrix-rs.ts); every question to it has a deadline, and it is killed by PID on every exit path. */
export function startRs(role: string, dir: string, idleMs: number): ForkedChild {
  const execArgv = (process.env.TETHER_BENCH_RS_NODE_OPTIONS ?? '').split(' ').filter((a) => a !== '');
  return new ForkedChild(role, join(benchDir, 'matrix-rs.ts'), ASK_TIMEOUT_MS, { args: [dir, String(idleMs)], execArgv });
}

/** Fork the egress sidecar child (bench/sidecar-process.ts) when a selected pattern needs it. */
export function forkEgress(): ForkedChild | undefined {
  return scenarios.some((x) => x.pattern === 'egress-churn') ? new ForkedChild('egress', join(benchDir, 'sidecar-process.ts'), ASK_TIMEOUT_MS) : undefined;
}

/** Start the egress sidecar in front of the main RS and hand it to the `egress-churn` pattern. */
export async function startEgress(egressChild: ForkedChild, fx: Fixtures, upstreamPort: number): Promise<void> {
  const { pki, client, jwks } = fx;
  const material = { ca: pki.ca.cert, serverCert: pki.server.cert, serverKey: pki.server.key, clientCert: client.cert, clientKey: client.key, jwks, issuer: 'https://as.bench', audience: 'https://rs.bench' };
  const start = { cmd: 'start', material, upstream: `https://127.0.0.1:${upstreamPort}` };
  const { url } = await egressChild.ask<{ url: string }>(start, ASK_TIMEOUT_MS);
  useEgressSidecar({ child: egressChild, address: { host: '127.0.0.1', port: Number(new URL(url).port) } });
}

async function runCell(rig: Rig, scenario: Scenario, mode: Mode, repeat: number): Promise<Cell> {
  const rs = rig.servers[scenario.rs];
  const target = { host: '127.0.0.1', port: rig.ports[scenario.rs], path: mode === 'dpop-jose' ? '/jose/resource' : '/resource' };
  const outstanding = new Outstanding();
  // `profile` names the cell (its CPU profile with TETHER_BENCH_RS_PROFILE_DIR, its timing lines).
  const reset = { cmd: 'reset', profile: `${scenario.id}-${mode}` };
  const ctx: PatternContext = { creds: rig.fixtures.creds, target, mode, beforeTimed: () => rs.ask(reset, ASK_TIMEOUT_MS), outstanding };
  const meas = await withRunDeadline(`cell ${scenario.id}/${mode} (repeat ${repeat})`, CELL_DEADLINE_MS, outstanding, scenario.run(ctx, rig.fixtures.tokens[tokenKind[mode]]));
  const rep = await rs.ask<RsReport>({ cmd: 'report' }, ASK_TIMEOUT_MS);
  return toCell(scenario, mode, repeat, meas, rep);
}

function toCell(scenario: Scenario, mode: Mode, repeat: number, meas: CellMeasurement, rep: RsReport): Cell {
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
}

/** Warm up, then run every cell of every repeat; returns the recorded cells. */
export async function runRepeats(rig: Rig, started: number): Promise<Cell[]> {
  // Warm-up (not recorded): JIT, JWT validation cache, TLS contexts. Every mode once on a
  // long-lived connection, then every other pattern once with session-bound credentials.
  const warm = scenarios.find((s) => s.pattern === 'h2-long') ?? (scenarios[0] as Scenario);
  for (const mode of modesOf(warm)) await runCell(rig, warm, mode, -1);
  for (const s of scenarios.filter((x) => x.pattern !== 'h2-long')) await runCell(rig, s, 'session', -1);

  const cells: Cell[] = [];
  for (let r = 0; r < config.repeats; r++) {
    for (const scenario of scenarios) {
      const modes = modesOf(scenario);
      const order = modes.map((_, i) => modes[(i + r) % modes.length] as Mode);
      for (const mode of order) {
        const t0 = Date.now();
        const cell = await runCell(rig, scenario, mode, r);
        cells.push(cell);
        if (process.env.BENCH_VERBOSE !== undefined) {
          console.error(`${scenario.id} ${mode}: ${cell.requests} req, ${cell.throughput.toFixed(0)} req/s, ${cell.failures} failures, ${Date.now() - t0} ms, rs fail ${JSON.stringify(cell.rsFailures)} conns ${cell.connections}/${cell.rsConnections} resumed ${cell.resumed}`);
        }
      }
    }
    console.error(`repeat ${r + 1}/${config.repeats} done (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  return cells;
}
