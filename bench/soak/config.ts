/** The soak's options (documented in bench/soak.ts's header), read once from the command line. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, num } from '../args.js';
import { resolveAllocator, type Allocator } from '../soak-memory.js';

const benchDir = dirname(dirname(fileURLToPath(import.meta.url)));

/**
 * The server's Node flags unless --rs-node-options says otherwise: V8's young generation pinned at
 * 16 MiB per semi-space, as deploy/ recommends. Left to itself V8 shrinks the new space when the
 * server is starved of CPU and grows it back under load, which moved RSS by about 25 MiB in the
 * first hour run (bench/results/soak-first-hour.md) without any memory being retained.
 */
export const RS_NODE_OPTIONS = '--min-semi-space-size=16 --max-semi-space-size=16';

export type Protocol = 'h2' | 'http/1.1';

export interface SoakConfig {
  duration: number;
  workersN: number;
  tokensPerConnection: number;
  requestsPerToken: number;
  churn: number;
  attackersN: number;
  perRequestFraction: number;
  tokenLifetime: number;
  cachePerConnection: number;
  cacheMax: number;
  heapBoundMiB: number;
  warmup: number;
  allocator: Allocator;
  sampleEvery: number;
  outDir: string;
  /** Requests each honest worker keeps in flight. */
  inFlight: number;
  rsNodeOptions: string[];
}

export function readConfig(): SoakConfig {
  const duration = num('duration', 300);
  return {
    duration,
    workersN: Math.max(1, Math.floor(num('connections', 16))),
    tokensPerConnection: Math.max(1, Math.floor(num('tokens-per-connection', 50))),
    requestsPerToken: Math.max(1, Math.floor(num('requests-per-token', 4))),
    churn: Math.min(1, num('churn', 0.5)),
    attackersN: Math.floor(num('attackers', 2)),
    perRequestFraction: Math.min(1, num('per-request', 0.25)),
    tokenLifetime: Math.max(30, num('token-lifetime', 60)),
    cachePerConnection: Math.max(1, Math.floor(num('cache-per-connection', 32))),
    cacheMax: Math.max(1, Math.floor(num('cache-max', 512))),
    heapBoundMiB: num('heap-bound-mib', 16),
    // Warm-up covers the replay store's fill: per-request ids are kept for the proof's acceptance
    // window (proofMaxAge 300 s + clockSkew 30 s), so the live set is steady only after that.
    warmup: num('warmup', Math.min(360, duration / 5)),
    allocator: resolveAllocator(arg('rs-allocator') ?? 'glibc'),
    sampleEvery: Math.max(0.5, num('sample', 5)),
    outDir: arg('out') ?? join(benchDir, 'results'),
    inFlight: 8,
    rsNodeOptions: (arg('rs-node-options') ?? RS_NODE_OPTIONS).split(' ').filter((a) => a !== ''),
  };
}

/** Even workers (honest and attacker) speak HTTP/2, odd ones HTTP/1.1. */
export function protocolOf(index: number): Protocol {
  return index % 2 === 0 ? 'h2' : 'http/1.1';
}

/** Whether honest worker `index` signs per-request claims: one worker in round(1 / fraction). */
export function usesPerRequestClaims(index: number, fraction: number): boolean {
  return fraction > 0 && index % Math.max(1, Math.round(1 / fraction)) === 0;
}
