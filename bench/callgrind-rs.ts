/**
 * Instructions per request at the resource server, counted by callgrind: what a first
 * Session-Binding-Proof verification costs the RS beyond bearer, against the raw ES256 primitive,
 * in a measure the timing noise of a shared machine does not move (issue 13 item 2).
 *
 * The matrix RS (bench/matrix-rs.ts) runs under `valgrind --tool=callgrind`, with V8 single-threaded
 * so that its GC and compiler work is counted in the cell that caused it; this process (native) is
 * the load generator. Each cell is the matrix's h2-long-m1-presigned cell: one HTTP/2 connection,
 * every request a different token, the session proofs signed before the cell. The token set is the
 * same in every round, so from the second round on both modes find their access tokens in the
 * validation cache and differ by the proof alone (as in the matrix). The RS calls
 * `process.cpuUsage()` at each cell's reset and report and around each verify-costs loop, and
 * every such call starts a new callgrind dump (`--dump-before=uv_getrusage`): the dump that ends
 * at a report is exactly that cell, the one that ends a loop exactly that loop.
 *
 *   node --import tsx bench/callgrind-rs.ts OUTDIR [--requests 300] [--rounds 8] [--cache-sim]
 *
 * `--cache-sim` adds callgrind's cache and branch simulation (about 2x slower): per request and per
 * call, first-level data misses (D1mr + D1mw), last-level misses (DLmr + DLmw + ILmr) and
 * mispredicted branches (Bcm + Bim) beside the instructions (Ir).
 *
 * Prints and writes OUTDIR/callgrind-rs.json: instructions per request of each cell, the session -
 * bearer difference per round, the primitive's instructions per call (the verify-costs loop, same
 * process), and their ratio; OUTDIR/cg.* are the dumps (`callgrind_annotate` them). Instructions
 * are not time: cache misses and contention are not in them, which is the point of the comparison
 * with the matrix's CPU figures.
 */
import { chmodSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ForkedChild, installExitGuards } from './children.js';
import { Outstanding } from './deadline.js';
import { arg, num } from './args.js';
import { benchDir } from './matrix/config.js';
import { makeFixtures } from './matrix/fixtures.js';
import { longLivedH2 } from './load/patterns.js';
import type { Mode } from './load/signer.js';
import { median } from './median.js';

/** Under valgrind everything is 20-100x slower: questions to the RS get this long. */
const SLOW_ASK_MS = 900_000;
const CONCURRENCY = 32;

function nodeUnderCallgrind(outDir: string, cacheSim: boolean): string {
  const path = join(outDir, 'node-under-callgrind.sh');
  const sim = cacheSim ? ' --cache-sim=yes --branch-sim=yes' : '';
  writeFileSync(
    path,
    `#!/bin/sh\nexec valgrind --tool=callgrind${sim} --dump-before=uv_getrusage --callgrind-out-file=${outDir}/cg.%p ${process.execPath} --single-threaded "$@"\n`,
  );
  chmodSync(path, 0o755);
  return path;
}

type Events = Record<string, number>;

/** The event totals (`events:` and `summary:` lines) of every dump of process `pid`, in dump order. */
function dumpTotals(outDir: string, pid: number): Events[] {
  const prefix = `cg.${pid}.`;
  return readdirSync(outDir)
    .filter((f) => f.startsWith(prefix))
    .map((f) => ({ n: Number(f.slice(prefix.length)), f }))
    .sort((a, b) => a.n - b.n)
    .map(({ f }) => {
      const text = readFileSync(join(outDir, f), 'utf8');
      const names = text.match(/^events: (.+)$/m)?.[1]?.split(' ');
      const values = text.match(/^summary: (.+)$/m)?.[1]?.split(' ').map(Number);
      if (names === undefined || values === undefined) throw new Error(`${f}: no events or summary line`);
      return Object.fromEntries(names.map((name, i) => [name, values[i] ?? 0]));
    });
}

/** Ir, and with the simulation D1 misses, last-level misses and mispredicted branches, per `n`. */
function per(e: Events, n: number): Events {
  const out: Events = { Ir: Math.round((e.Ir ?? 0) / n) };
  if (e.D1mr !== undefined) {
    out.D1miss = Math.round(((e.D1mr ?? 0) + (e.D1mw ?? 0)) / n);
    out.LLmiss = Math.round(((e.DLmr ?? 0) + (e.DLmw ?? 0) + (e.ILmr ?? 0)) / n);
    out.mispredicts = Math.round(((e.Bcm ?? 0) + (e.Bim ?? 0)) / n);
  }
  return out;
}

const minus = (a: Events, b: Events): Events => Object.fromEntries(Object.keys(a).map((k) => [k, (a[k] ?? 0) - (b[k] ?? 0)]));

async function main(): Promise<void> {
  installExitGuards();
  const outDir = resolve(process.argv[2] ?? arg('out') ?? '/tmp/tether-callgrind-rs');
  const requests = num('requests', 300);
  const rounds = num('rounds', 8);
  const cacheSim = process.argv.includes('--cache-sim');
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const fx = await makeFixtures(requests);
  const rs = new ForkedChild('rs', join(benchDir, 'matrix-rs.ts'), SLOW_ASK_MS, { args: [fx.dir, '0'], execPath: nodeUnderCallgrind(outDir, cacheSim) });
  const { port } = (await rs.ready) as { port: number };
  const cells: Array<{ round: number; mode: Mode; requests: number; failures: number }> = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['bearer', 'session'] as const) {
        const ctx = {
          creds: fx.creds,
          target: { host: '127.0.0.1', port, path: '/resource' },
          mode,
          beforeTimed: async () => void (await rs.ask({ cmd: 'reset' }, SLOW_ASK_MS)),
          outstanding: new Outstanding(),
        };
        const m = await longLivedH2(ctx, fx.tokens[mode], 1, CONCURRENCY, true);
        await rs.ask({ cmd: 'report' }, SLOW_ASK_MS);
        cells.push({ round, mode, requests: m.requests, failures: m.failures });
        console.error(`round ${round} ${mode}: ${m.requests} requests, ${m.failures} failures`);
      }
    }
    const samples = 200;
    const costs = { cmd: 'verify-costs', samples, rounds: 1 };
    await rs.ask(costs, SLOW_ASK_MS);
    // valgrind writes the last dump as the RS exits.
    await rs.exit(120_000);
    report(outDir, rs.pid, cells, samples, requests);
  } finally {
    rs.kill();
    rmSync(fx.dir, { recursive: true, force: true });
  }
}

/**
 * Dump order: 1 start-up; per cell, the dump ending at its reset (connection, presigning) then the
 * one ending at its report (the cell); then verify-costs: the DPoP warm-up loop (2), and per row
 * (primitive, session-proof, dpop, dpop-jose) the step before it and its loop.
 */
function report(outDir: string, pid: number, cells: Array<{ round: number; mode: Mode; requests: number; failures: number }>, samples: number, requests: number): void {
  const totals = dumpTotals(outDir, pid);
  const cellCost = cells.map((c, i) => ({ ...c, perRequest: per(totals[2 * i + 2] as Events, c.requests) }));
  const loops = 1 + 2 * cells.length + 2;
  const rows = ['primitive', 'session-proof', 'dpop', 'dpop-jose'];
  const perCall = Object.fromEntries(rows.map((r, i) => [r, per(totals[loops + 2 * i + 1] as Events, samples)]));
  const primitive = perCall.primitive as Events;
  const byRound = [...new Set(cells.map((c) => c.round))].map((round) => {
    const cost = (mode: Mode) => cellCost.find((c) => c.round === round && c.mode === mode)?.perRequest ?? {};
    const extra = minus(cost('session'), cost('bearer'));
    return { round, bearer: cost('bearer'), session: cost('session'), extra, extraIrOverPrimitive: Number(((extra.Ir ?? NaN) / (primitive.Ir ?? NaN)).toFixed(3)) };
  });
  // Round 0 is the JIT's and the token cache's warm-up; a GC that falls in one cell or the other moves a round's figure.
  const settled = byRound.filter((r) => r.round > 0).map((r) => r.extraIrOverPrimitive);
  const extraIrOverPrimitive = { median: median(settled), min: Math.min(...settled), max: Math.max(...settled) };
  const out = { date: new Date().toISOString(), node: process.version, requestsPerCell: requests, dumps: totals.length, cells: cellCost, perCall, byRound, extraIrOverPrimitive };
  writeFileSync(join(outDir, 'callgrind-rs.json'), JSON.stringify(out, null, 2) + '\n');
  writeFileSync(join(outDir, 'callgrind-rs.md'), markdown(out).join('\n') + '\n');
  console.log(JSON.stringify({ perCall, byRound: byRound.map((r) => ({ round: r.round, extra: r.extra, extraIrOverPrimitive: r.extraIrOverPrimitive })) }));
}

interface Report {
  date: string;
  node: string;
  requestsPerCell: number;
  perCall: Record<string, Events>;
  byRound: Array<{ round: number; bearer: Events; session: Events; extra: Events; extraIrOverPrimitive: number }>;
  extraIrOverPrimitive: { median: number; min: number; max: number };
}

function markdown(r: Report): string[] {
  const events = Object.keys(r.perCall.primitive ?? {});
  const row = (name: string, e: Events, extra = '') => `| ${name} | ${events.map((k) => (e[k] ?? 0).toLocaleString('en-US')).join(' | ')} |${extra}`;
  return [
    '# Instructions per request at the resource server (callgrind)',
    '',
    `${r.date}, Node ${r.node}; \`node --import tsx bench/callgrind-rs.ts OUTDIR\` (see its header): the matrix RS under callgrind, single-threaded V8, h2-long-m1-presigned cells of ${r.requestsPerCell} requests, the access tokens cached from the second round on. Counts per request (cells) or per call (loops, in the same RS process).`,
    '',
    '## One call, in-process loops',
    '',
    `| row | ${events.join(' | ')} |`,
    `|---|${events.map(() => '---').join('|')}|`,
    ...Object.entries(r.perCall).map(([name, e]) => row(name, e)),
    '',
    '## First presentation at the RS: session - bearer, per request, by round',
    '',
    'The first rounds carry the JIT warming up and the token validation cache filling.',
    '',
    `| round | ${events.join(' | ')} | extra Ir / primitive Ir |`,
    `|---|${events.map(() => '---').join('|')}|---|`,
    ...r.byRound.map((b) => row(String(b.round), b.extra, ` ${b.extraIrOverPrimitive} |`)),
    '',
    `A first presentation costs the RS ${r.extraIrOverPrimitive.median}x the primitive's instructions (median of rounds 1 and on; ${r.extraIrOverPrimitive.min}..${r.extraIrOverPrimitive.max}).`,
  ];
}

await main();
