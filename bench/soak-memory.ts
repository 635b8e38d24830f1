/**
 * The soak's memory verdict (issue 13 item 5) and the resource server's allocator.
 *
 * RSS growth is measured under load, robust to the allocator's sawtooth: the median RSS of the
 * first window after warm-up against the median of the last window of the run (each window 1/6 of
 * the time after warm-up, at most 300 s, at least 3 samples). The bound is 5 MiB per hour
 * after warm-up, and never less than 5 MiB: allocator noise does not shrink with the run, so a
 * shorter run is held to the same 5 MiB (a weaker check per minute), a longer one to 5 MiB/hour.
 *
 * Allocator: with glibc's malloc the server's RSS creeps up under connection churn while its
 * allocated memory does not (see bench/results/soak.md); the deployment recommendation is jemalloc
 * (`LD_PRELOAD`, Debian package libjemalloc2). `--rs-allocator auto` uses it when installed.
 */
import { existsSync } from 'node:fs';
import { median } from './median.js';

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
  /** Seconds of each window. */
  windowSeconds: number;
  firstWindowMiB: number;
  lastWindowMiB: number;
  growthMiB: number;
  boundMiB: number;
  holds: boolean;
}


/** RSS growth after warm-up from the samples taken under load after warm-up (see the file comment). */
export function rssGrowth(afterWarmup: TimedRss[], boundMiB?: number): RssGrowth {
  const first = afterWarmup[0]?.t ?? 0;
  const last = afterWarmup[afterWarmup.length - 1]?.t ?? 0;
  const span = last - first;
  const windowSeconds = Math.min(300, span / 6);
  const pick = (inWindow: (t: number) => boolean, fallback: TimedRss[]) => {
    const chosen = afterWarmup.filter((s) => inWindow(s.t));
    return (chosen.length >= 3 ? chosen : fallback).map((s) => s.rss / MiB);
  };
  const head = pick((t) => t <= first + windowSeconds, afterWarmup.slice(0, 3));
  const tail = pick((t) => t >= last - windowSeconds, afterWarmup.slice(-3));
  const firstWindowMiB = median(head);
  const lastWindowMiB = median(tail);
  const growthMiB = lastWindowMiB - firstWindowMiB;
  const bound = boundMiB ?? RSS_BOUND_MIB_PER_HOUR * Math.max(1, span / 3600);
  return { windowSeconds, firstWindowMiB, lastWindowMiB, growthMiB, boundMiB: bound, holds: afterWarmup.length >= 2 && growthMiB <= bound };
}
