/**
 * The matrix's figures per (pattern, mode): medians over repeats, and every figure as a ratio to
 * bearer measured in the same repeat and pattern (median, min..max).
 */
import { median } from '../median.js';
import type { Mode } from '../load/signer.js';
import type { Cell } from './run.js';
import { modesOf, scenarios } from './scenarios.js';

export const FIGURES = ['throughput', 'rsCpuUs', 'clientCpuUs', 'p50Ms', 'p99Ms'] as const;
export type Figure = (typeof FIGURES)[number];
export interface Range {
  median: number;
  min: number;
  max: number;
}

/** A range as "median (min..max)" with 2 or 3 decimals. */
export const fr2 = (r: Range) => `${r.median.toFixed(2)} (${r.min.toFixed(2)}..${r.max.toFixed(2)})`;
export const fr3 = (r: Range) => `${r.median.toFixed(3)} (${r.min.toFixed(3)}..${r.max.toFixed(3)})`;

export const stat = (xs: number[]): Range => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

export interface ModeSummary {
  median: Record<Figure | 'signaturesPerRequest' | 'verificationsPerRequest' | 'connectionsPerRequest' | 'resumedShare', number>;
  /** mode / bearer in the same repeat and scenario. */
  ratio: Record<Figure, Range>;
  signaturesPerRun: number[];
  verificationsPerRun: number[];
  failures: number;
  rsFailures: Record<string, number>;
}

/** Scenario id -> mode -> summary. */
export type Results = Record<string, Record<string, ModeSummary>>;

/** Every selected (pattern, mode): medians and ratios to bearer. */
export function summarize(cells: Cell[]): Results {
  const results: Results = {};
  for (const s of scenarios) {
    results[s.id] = {};
    for (const mode of modesOf(s)) (results[s.id] as Record<string, ModeSummary>)[mode] = summarizeMode(cells, s.id, mode);
  }
  return results;
}

function summarizeMode(cells: Cell[], scenario: string, mode: Mode): ModeSummary {
  const mine = cells.filter((c) => c.scenario === scenario && c.mode === mode);
  const ratio = {} as ModeSummary['ratio'];
  for (const f of FIGURES) {
    const rs = mine.map((c) => {
      const b = cells.find((x) => x.scenario === scenario && x.mode === 'bearer' && x.repeat === c.repeat) as Cell;
      return c[f] / b[f];
    });
    ratio[f] = stat(rs);
  }
  const rsFailures: Record<string, number> = {};
  for (const c of mine) for (const [k, v] of Object.entries(c.rsFailures)) rsFailures[k] = (rsFailures[k] ?? 0) + v;
  return {
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

/** Cross-mode ratio in the same repeat (for example session / dpop) of one figure. */
export function pairRatio(cells: Cell[], scenario: string, a: Mode, b: Mode, f: Figure): Range {
  return stat(
    cells
      .filter((c) => c.scenario === scenario && c.mode === a)
      .map((c) => c[f] / (cells.find((x) => x.scenario === scenario && x.mode === b && x.repeat === c.repeat) as Cell)[f]),
  );
}
