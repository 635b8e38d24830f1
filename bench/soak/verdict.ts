/**
 * The soak's verdict: the memory figures of the resource server after warm-up and the checks the
 * run must pass (listed in bench/soak.ts's header).
 */
import { arg, num } from '../args.js';
import { rssGrowth, type RssGrowth } from '../soak-memory.js';
import type { SoakConfig } from './config.js';
import { attackTotals, type AttackCount, type Tally } from './run.js';
import { MiB, type SoakSample } from './samples.js';

export interface Check {
  check: string;
  holds: boolean;
  value: string;
}

export interface Verdict {
  /** The first sample under load after warm-up (the first sample if there is none). */
  baseline: SoakSample;
  final: SoakSample;
  heapGrowth: number;
  /** Heap and RSS (MiB) at every sample under load after warm-up and at the end, for their slopes. */
  heapPoints: Array<{ t: number; v: number }>;
  rssPoints: Array<{ t: number; v: number }>;
  rss: RssGrowth;
  totals: AttackCount;
  peakCacheSize: number;
  peakCacheRatio: number;
  checks: Check[];
  pass: boolean;
}

export function verdictOf(config: SoakConfig, tally: Tally, samples: SoakSample[], final: SoakSample): Verdict {
  const afterWarmup = samples.filter((s) => s.phase === 'run');
  const baseline = afterWarmup[0] ?? samples[0]!;
  const heapGrowth = final.heapUsed - baseline.heapUsed;
  const heapPoints = [...afterWarmup, final].map((s) => ({ t: s.t, v: s.heapUsed / MiB }));
  const rssPoints = [...afterWarmup, final].map((s) => ({ t: s.t, v: s.rss / MiB }));
  // Read here rather than with the other options, as the soak always has (an invalid value fails after the run).
  const rssBound = arg('rss-bound-mib');
  const rss = rssGrowth(afterWarmup, rssBound === undefined ? undefined : num('rss-bound-mib', 0));
  const totals = attackTotals(tally.attacks);
  const peakCacheSize = Math.max(...samples.map((s) => s.peakCacheSize));
  const peakCacheRatio = Math.max(...samples.map((s) => s.peakCacheRatio));
  const figures = { baseline, final, heapGrowth, heapPoints, rssPoints, rss, totals, peakCacheSize, peakCacheRatio };
  const checks = checksOf(config, tally, figures);
  return { ...figures, checks, pass: checks.every((c) => c.holds) };
}

function checksOf(config: SoakConfig, tally: Tally, v: Omit<Verdict, 'checks' | 'pass'>): Check[] {
  const { honest, attackControls, attackErrors } = tally;
  const { totals, final, rss } = v;
  const { cacheMax, cachePerConnection, heapBoundMiB } = config;
  return [
    { check: 'no attack request accepted', holds: totals.wronglyAccepted === 0, value: `${totals.wronglyAccepted} of ${totals.sent}` },
    { check: 'every attack refused with the exact expected status and error', holds: totals.unexpected === 0 && attackErrors === 0, value: `${totals.unexpected} unexpected, ${attackErrors} attacker-cycle errors` },
    { check: 'no honest request lost', holds: honest.lost === 0 && attackControls.lost === 0, value: `${honest.lost + attackControls.lost} of ${honest.requests + attackControls.sent}` },
    { check: 'binding cache drained after close (0 entries, 0 connections)', holds: final.cacheSize === 0 && final.cacheConnections === 0, value: `${final.cacheSize} entries, ${final.cacheConnections} connections` },
    { check: 'server holds no connection after close', holds: final.openConnections === 0, value: `${final.openConnections}` },
    { check: `binding cache never above maxEntries (${cacheMax})`, holds: v.peakCacheSize <= cacheMax, value: `peak ${v.peakCacheSize}` },
    { check: `entries per cached connection never above maxEntriesPerConnection (${cachePerConnection})`, holds: v.peakCacheRatio <= cachePerConnection, value: `peak ${v.peakCacheRatio.toFixed(1)}` },
    { check: `server heap growth after warm-up below ${heapBoundMiB} MiB`, holds: v.heapGrowth / MiB < heapBoundMiB, value: `${(v.heapGrowth / MiB).toFixed(2)} MiB` },
    {
      check: `server RSS growth after warm-up at most ${rss.boundMiB.toFixed(1)} MiB (least-squares trend of every sample under load over ${rss.spanSeconds.toFixed(0)} s)`,
      holds: rss.holds,
      value: `${rss.growthMiB.toFixed(2)} MiB (trend ${rss.fittedStartMiB.toFixed(1)} -> ${rss.fittedEndMiB.toFixed(1)} MiB)`,
    },
    { check: 'honest and attack traffic both ran', holds: honest.requests > 0 && totals.sent > 0, value: `${honest.requests} honest, ${totals.sent} attack` },
  ];
}

/** Least-squares slope of `points` (v per second), per minute. */
export function slopePerMinute(points: Array<{ t: number; v: number }>): number {
  if (points.length < 2) return 0;
  const mt = points.reduce((a, p) => a + p.t, 0) / points.length;
  const mv = points.reduce((a, p) => a + p.v, 0) / points.length;
  let numerator = 0;
  let denominator = 0;
  for (const p of points) {
    numerator += (p.t - mt) * (p.v - mv);
    denominator += (p.t - mt) ** 2;
  }
  return denominator === 0 ? 0 : (numerator / denominator) * 60;
}
