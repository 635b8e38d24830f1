/**
 * The matrix's targets table: the claims the run checks (session-bound against bearer and DPoP on a
 * long-lived connection, the RS's own verification counts, the in-process verification costs), and
 * informational comparisons for the other patterns.
 */
import { median } from '../median.js';
import type { Mode } from '../load/signer.js';
import { verifyCostTargets, type VerifyCosts } from '../verify-cost.js';
import { config } from './config.js';
import type { Cell } from './run.js';
import { scenarios } from './scenarios.js';
import { fr2, fr3, pairRatio, type ModeSummary, type Results } from './summary.js';

export interface TargetRow {
  claim: string;
  scenario: string;
  value: string;
  /** null: informational. */
  holds: boolean | null;
}

const getter = (results: Results) => (sid: string, mode: Mode) => (results[sid] as Record<string, ModeSummary>)[mode] as ModeSummary;

export function targetsOf(results: Results, cells: Cell[], costs: VerifyCosts): TargetRow[] {
  const targets: TargetRow[] = [...longLivedTargets(results, cells)];
  for (const s of scenarios.filter((x) => x.pattern === 'h2-long')) {
    const runs = getter(results)(s.id, 'session').verificationsPerRun;
    targets.push({ claim: `RS proof verifications (its own counter) = N (${s.tokens}), not N x M (${s.tokens * (s.m ?? 1)}) (M=${s.m})`, scenario: s.id, value: runs.join(', '), holds: runs.every((x) => x === s.tokens) });
  }
  targets.push(...verifyCostTargets(costs, (sid, mode) => (scenarios.some((s) => s.id === sid) ? cells.filter((c) => c.scenario === sid && c.mode === mode) : [])));
  targets.push(...egressTargets(results, cells));
  for (const sid of ['conn-per-request', 'conn-per-request-resumed', 'agent-mix', 'h1-pool'].filter((x) => scenarios.some((s) => s.id === x))) {
    const d = pairRatio(cells, sid, 'session', 'dpop', 'throughput');
    const b = getter(results)(sid, 'session').ratio.throughput;
    const cpu = pairRatio(cells, sid, 'session', 'dpop', 'rsCpuUs');
    targets.push({
      claim: `${sid}: session-bound vs DPoP (informational)`,
      scenario: sid,
      value: `throughput ${d.median.toFixed(2)}x DPoP (${d.min.toFixed(2)}..${d.max.toFixed(2)}), ${b.median.toFixed(3)}x bearer; RS CPU/request ${cpu.median.toFixed(2)}x DPoP`,
      holds: null,
    });
  }
  return targets;
}

/** Long-lived HTTP/2 at M >= 100: session-bound against bearer (RS CPU, throughput) and DPoP. */
function longLivedTargets(results: Results, cells: Cell[]): TargetRow[] {
  const targets: TargetRow[] = [];
  for (const m of config.mValues.filter((x) => x >= 100 && scenarios.some((s) => s.id === `h2-long-m${x}`))) {
    const sid = `h2-long-m${m}`;
    const r = getter(results)(sid, 'session').ratio;
    targets.push({ claim: `session-bound RS CPU/request <= 1.05x bearer (long-lived h2, M=${m})`, scenario: sid, value: fr3(r.rsCpuUs), holds: r.rsCpuUs.median <= 1.05 });
    targets.push({ claim: `session-bound >= 0.97x bearer throughput (long-lived h2, M=${m})`, scenario: sid, value: fr3(r.throughput), holds: r.throughput.median >= 0.97 });
    const d = pairRatio(cells, sid, 'session', 'dpop', 'throughput');
    targets.push({ claim: `session-bound >= 2.5x DPoP throughput (long-lived h2, M=${m})`, scenario: sid, value: fr2(d), holds: d.median >= 2.5 });
    const j = pairRatio(cells, sid, 'session', 'dpop-jose', 'throughput');
    targets.push({ claim: `session-bound vs jose's standard DPoP path, throughput (long-lived h2, M=${m}; informational)`, scenario: sid, value: fr2(j), holds: null });
  }
  return targets;
}

/** Agent churn behind the egress: RS verifications per token, and the comparison with bearer and DPoP. */
function egressTargets(results: Results, cells: Cell[]): TargetRow[] {
  const egress = scenarios.find((x) => x.pattern === 'egress-churn');
  if (egress === undefined) return [];
  const get = getter(results);
  const session = get(egress.id, 'session');
  const runs = session.verificationsPerRun;
  const d = pairRatio(cells, egress.id, 'session', 'dpop', 'throughput');
  const sidecar = (mode: Mode) => median(cells.filter((c) => c.scenario === egress.id && c.mode === mode).map((c) => c.sidecarCpuUs ?? NaN));
  return [
    {
      claim: `egress-churn: RS proof verifications per cell for session-bound tokens <= one per token (${egress.tokens}), not one per agent connection (${config.perConnRequests}); 0 when the egress's upstream connection already carries the tokens' bindings (from the warm-up or an earlier repeat)`,
      scenario: egress.id,
      value: runs.join(', '),
      holds: runs.every((x) => x <= egress.tokens),
    },
    {
      claim: 'egress-churn: session-bound vs bearer and DPoP behind the same egress (informational)',
      scenario: egress.id,
      value:
        `throughput ${session.ratio.throughput.median.toFixed(3)}x bearer (${session.ratio.throughput.min.toFixed(3)}..${session.ratio.throughput.max.toFixed(3)}), ${d.median.toFixed(2)}x DPoP (${d.min.toFixed(2)}..${d.max.toFixed(2)}); ` +
        `RS CPU/request ${session.ratio.rsCpuUs.median.toFixed(2)}x bearer; egress CPU µs/request bearer ${sidecar('bearer').toFixed(0)}, session ${sidecar('session').toFixed(0)}, dpop ${sidecar('dpop').toFixed(0)}; RS verifications/request bearer ${get(egress.id, 'bearer').median.verificationsPerRequest.toFixed(3)}, session ${session.median.verificationsPerRequest.toFixed(3)}, dpop ${get(egress.id, 'dpop').median.verificationsPerRequest.toFixed(3)}`,
      holds: null,
    },
  ];
}
