/**
 * The soak's memory verdict (issue 13 item 5) and the resource server's allocator.
 *
 * RSS growth is measured under load, robust to the sawtooth of the V8 heap and the allocator
 * (tens of MiB up and down within minutes): the least-squares line through every RSS sample after
 * warm-up, its value at the last sample minus its value at the first. A window median is not
 * robust to a square wave (which level is the majority depends on the window's phase); the fitted
 * trend of a periodic signal over many periods is close to zero, and that of a leak is the leak.
 * The bound is 5 MiB per hour after warm-up, and never less than 5 MiB: allocator noise does not
 * shrink with the run, so a shorter run is held to the same 5 MiB (a weaker check per minute), a
 * longer one to 5 MiB per hour.
 *
 * Allocator: the server runs on glibc's malloc, as Node does by default (`--rs-allocator glibc`,
 * the default); `jemalloc` preloads libjemalloc (Debian package libjemalloc2) to compare, `auto`
 * uses it when installed. bench/results/soak-first-hour.md says what the comparison showed.
 */
import { existsSync } from 'node:fs';

const MiB = 1024 * 1024;
export const RSS_BOUND_MIB_PER_HOUR = 5;

const JEMALLOC_PATHS = ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2', '/usr/lib64/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2'];

export interface Allocator {
  name: 'glibc' | 'jemalloc';
  /** Environment for the resource server child. */
  env: Record<string, string>;
  path?: string;
}

/** `auto` (jemalloc when installed, else glibc), `jemalloc` (required), or `glibc`. */
export function resolveAllocator(requested: string): Allocator {
  if (requested === 'glibc') return { name: 'glibc', env: {} };
  if (requested !== 'auto' && requested !== 'jemalloc') throw new Error('--rs-allocator must be auto, jemalloc or glibc');
  const path = JEMALLOC_PATHS.find((p) => existsSync(p));
  if (path === undefined) {
    if (requested === 'jemalloc') throw new Error(`--rs-allocator jemalloc: libjemalloc.so.2 not found (${JEMALLOC_PATHS.join(', ')}); Debian: apt-get install libjemalloc2`);
    return { name: 'glibc', env: {} };
  }
  return { name: 'jemalloc', env: { LD_PRELOAD: path }, path };
}

export interface TimedRss {
  t: number;
  rss: number;
}

export interface RssGrowth {
  /** Seconds after warm-up covered by the samples. */
  spanSeconds: number;
  /** The least-squares line through every sample after warm-up, at its first and last sample (MiB). */
  fittedStartMiB: number;
  fittedEndMiB: number;
  /** fittedEnd - fittedStart: the growth the run's trend shows, whatever the sawtooth around it. */
  growthMiB: number;
  boundMiB: number;
  holds: boolean;
}

/** RSS growth after warm-up from the samples taken under load after warm-up (see the file comment). */
export function rssGrowth(afterWarmup: TimedRss[], boundMiB?: number): RssGrowth {
  const n = afterWarmup.length;
  const first = afterWarmup[0]?.t ?? 0;
  const last = afterWarmup[n - 1]?.t ?? 0;
  const span = last - first;
  const mt = afterWarmup.reduce((a, p) => a + p.t, 0) / Math.max(1, n);
  const mv = afterWarmup.reduce((a, p) => a + p.rss / MiB, 0) / Math.max(1, n);
  let num = 0;
  let den = 0;
  for (const p of afterWarmup) {
    num += (p.t - mt) * (p.rss / MiB - mv);
    den += (p.t - mt) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  const fittedStartMiB = mv + slope * (first - mt);
  const fittedEndMiB = mv + slope * (last - mt);
  const bound = boundMiB ?? RSS_BOUND_MIB_PER_HOUR * Math.max(1, span / 3600);
  const growthMiB = fittedEndMiB - fittedStartMiB;
  return { spanSeconds: span, fittedStartMiB, fittedEndMiB, growthMiB, boundMiB: bound, holds: n >= 2 && growthMiB <= bound };
}
