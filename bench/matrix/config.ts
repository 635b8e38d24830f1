/**
 * Flags and sizes of the benchmark matrix (bench/matrix.ts): `--quick` (smoke sizes), `--out DIR`,
 * `--only ID,ID` (a subset of the patterns, results to matrix-focus.*), `--repeats N`.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentMixShape } from '../load/patterns.js';
import { arg } from '../args.js';

/** The bench/ directory: the RS and sidecar children's scripts, and bench/results/. */
export const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const quick = process.argv.includes('--quick');
export const outDir = arg('out') !== undefined ? resolve(arg('out') as string) : join(benchDir, 'results');
/** `--only ID,ID`: run a subset of the patterns (results go to matrix-focus.*). */
export const only = arg('only')?.split(',');

/** Deadline of one cell (one pattern, one mode), ms: a cell that misses it fails the run, naming its outstanding requests. */
export const CELL_DEADLINE_MS = 120_000;
/** Deadline of one IPC question to an RS child, ms. */
export const ASK_TIMEOUT_MS = 30_000;

export const config = quick
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

const repeatsArg = arg('repeats');
if (repeatsArg !== undefined) config.repeats = Math.max(1, Number(repeatsArg));
