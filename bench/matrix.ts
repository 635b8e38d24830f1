/**
 * Benchmark matrix: session binding against bearer, RFC 8705 certificate binding and DPoP, over
 * several traffic patterns. The resource server (bench/matrix-rs.ts) runs in a child process built
 * from the library's public entry points; this process is the load generator (bench/load/).
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
 * client's `maxDeflateDynamicTableSize`. Unset: tether's SESSION_BOUND_HEADER_TABLE_SIZE (16 KiB)
 * on both sides, as `sessionBoundTlsOptions` and tether's clients set it; 4096 gives Node's defaults.
 *
 * Output: matrix[-quick].json, matrix[-quick].md, matrix[-quick]-throughput.svg,
 * matrix[-quick]-rs-cpu.svg, matrix[-quick]-client-cpu.svg under bench/results/ (or --out DIR).
 *
 * Parts: bench/matrix/config.ts (flags and sizes), scenarios.ts (the patterns), fixtures.ts (PKI,
 * credentials, tokens), run.ts (cells against the RS children), summary.ts and targets.ts (ratios
 * and claims), report.ts (JSON, Markdown, SVG).
 */
import { rmSync } from 'node:fs';
import { installExitGuards } from './children.js';
import type { VerifyCosts } from './verify-cost.js';
import { config, quick } from './matrix/config.js';
import { makeFixtures } from './matrix/fixtures.js';
import { write } from './matrix/report.js';
import { forkEgress, runRepeats, startEgress, startRs } from './matrix/run.js';
import { scenarios } from './matrix/scenarios.js';
import { summarize } from './matrix/summary.js';
import { targetsOf } from './matrix/targets.js';

async function main(): Promise<void> {
  const started = Date.now();
  const fixtures = await makeFixtures(Math.max(...scenarios.map((s) => s.tokens)));
  const { dir } = fixtures;
  // Two RS processes built the same way: `main` keeps connections open; `idle` drops a connection
  // after config.idleMs without traffic (the keep-alive timeout the agent-like mix runs into).
  const servers = { main: startRs('rs-main', dir, 0), idle: startRs('rs-idle', dir, config.idleMs) };
  const egressChild = forkEgress();
  try {
    const ports = { main: ((await servers.main.ready) as { port: number }).port, idle: ((await servers.idle.ready) as { port: number }).port };
    if (egressChild !== undefined) await startEgress(egressChild, fixtures, ports.main);
    const cells = await runRepeats({ servers, ports, fixtures }, started);

    // Per-verification costs in the RS process, after the matrix (same run, same machine state).
    const question = { cmd: 'verify-costs', samples: quick ? 300 : 2000, rounds: quick ? 2 : 5 };
    const costs = await servers.main.ask<VerifyCosts>(question, 300_000);
    const results = summarize(cells);
    write({ results, targets: targetsOf(results, cells, costs) }, cells, costs);
  } finally {
    await Promise.all([servers.main.exit(), servers.idle.exit(), egressChild?.exit()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

installExitGuards();
main().catch((error: unknown) => {
  console.error(error);
  // Exit now: a cell that missed its deadline may still hold sockets; the exit guard kills the RS children.
  process.exit(1);
});
