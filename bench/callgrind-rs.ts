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
 * Also counts the steady state: 20 tokens x 100 requests per cell (M=100), session against bearer.
 *
 * Prints and writes OUTDIR/callgrind-rs.{json,md}: instructions per request of each cell, the session -
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
import { makeFixtures, type Fixtures } from './matrix/fixtures.js';
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

/** The two cells of each mode per round: every request a first presentation (M=1), and the steady state (M=100). */
const PATTERNS = [
  { id: 'm1', m: 1 },
  { id: 'm100', m: 100, tokens: 20 },
] as const;
type PatternId = (typeof PATTERNS)[number]['id'];
interface CellRun {
  round: number;
  pattern: PatternId;
  mode: Mode;
  requests: number;
}

async function runCells(rs: ForkedChild, port: number, fx: Fixtures, requests: number, rounds: number): Promise<CellRun[]> {
  const cells: CellRun[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const pattern of PATTERNS) {
      for (const mode of ['bearer', 'session'] as const) {
        const ctx = {
          creds: fx.creds,
          target: { host: '127.0.0.1', port, path: '/resource' },
          mode,
          beforeTimed: async () => void (await rs.ask({ cmd: 'reset' }, SLOW_ASK_MS)),
          outstanding: new Outstanding(),
        };
        const tokens = fx.tokens[mode].slice(0, pattern.m === 1 ? requests : pattern.tokens);
        const m = await longLivedH2(ctx, tokens, pattern.m, CONCURRENCY, true);
        await rs.ask({ cmd: 'report' }, SLOW_ASK_MS);
        console.error(`round ${round} ${pattern.id} ${mode}: ${m.requests} requests, ${m.failures} failures`);
        // A refused or lost request would make the count per request mean something else.
        if (m.failures > 0) throw new Error(`round ${round} ${pattern.id} ${mode}: ${m.failures} of ${m.requests} requests failed`);
        cells.push({ round, pattern: pattern.id, mode, requests: m.requests });
      }
    }
  }
  return cells;
}

async function main(): Promise<void> {
  installExitGuards();
  const positional = process.argv[2]?.startsWith('--') === false ? process.argv[2] : undefined;
  const outDir = resolve(positional ?? arg('out') ?? '/tmp/tether-callgrind-rs');
  const requests = num('requests', 300);
  const rounds = num('rounds', 8);
  const cacheSim = process.argv.includes('--cache-sim');
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const fx = await makeFixtures(requests);
  const rs = new ForkedChild('rs', join(benchDir, 'matrix-rs.ts'), SLOW_ASK_MS, { args: [fx.dir, '0'], execPath: nodeUnderCallgrind(outDir, cacheSim) });
  try {
    const { port } = (await rs.ready) as { port: number };
    const cells = await runCells(rs, port, fx, requests, rounds);
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
function report(outDir: string, pid: number, cells: CellRun[], samples: number, requests: number): void {
  const totals = dumpTotals(outDir, pid);
  const cellCost = cells.map((c, i) => ({ ...c, perRequest: per(totals[2 * i + 2] as Events, c.requests) }));
  const loops = 1 + 2 * cells.length + 2;
  const rows = ['primitive', 'session-proof', 'dpop', 'dpop-jose'];
  const perCall = Object.fromEntries(rows.map((r, i) => [r, per(totals[loops + 2 * i + 1] as Events, samples)]));
  const primitive = perCall.primitive as Events;
  const cost = (round: number, pattern: PatternId, mode: Mode) => cellCost.find((c) => c.round === round && c.pattern === pattern && c.mode === mode)?.perRequest ?? {};
  const byRound = [...new Set(cells.map((c) => c.round))].map((round) => {
    const extra = minus(cost(round, 'm1', 'session'), cost(round, 'm1', 'bearer'));
    const m100 = { bearer: cost(round, 'm100', 'bearer'), session: cost(round, 'm100', 'session') };
    return {
      round,
      extra,
      extraIrOverPrimitive: Number(((extra.Ir ?? NaN) / (primitive.Ir ?? NaN)).toFixed(3)),
      m100,
      m100IrSessionOverBearer: Number(((m100.session.Ir ?? NaN) / (m100.bearer.Ir ?? NaN)).toFixed(3)),
    };
  });
  // Round 0 is the JIT's and the token cache's warm-up; a GC that falls in one cell or the other moves a round's figure.
  const spread = (xs: number[]) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
  const settled = byRound.filter((r) => r.round > 0);
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    requestsPerCell: requests,
    dumps: totals.length,
    cells: cellCost,
    perCall,
    byRound,
    extraIrOverPrimitive: spread(settled.map((r) => r.extraIrOverPrimitive)),
    m100IrSessionOverBearer: spread(settled.map((r) => r.m100IrSessionOverBearer)),
  };
  writeFileSync(join(outDir, 'callgrind-rs.json'), JSON.stringify(out, null, 2) + '\n');
  writeFileSync(join(outDir, 'callgrind-rs.md'), markdown(out).join('\n') + '\n');
  console.log(markdown(out).join('\n'));
}

interface Spread {
  median: number;
  min: number;
  max: number;
}
interface Report {
  date: string;
  node: string;
  requestsPerCell: number;
  perCall: Record<string, Events>;
  byRound: Array<{ round: number; extra: Events; extraIrOverPrimitive: number; m100: { bearer: Events; session: Events }; m100IrSessionOverBearer: number }>;
  extraIrOverPrimitive: Spread;
  m100IrSessionOverBearer: Spread;
}

function markdown(r: Report): string[] {
  const events = Object.keys(r.perCall.primitive ?? {});
  const cols = (e: Events) => events.map((k) => (e[k] ?? 0).toLocaleString('en-US')).join(' | ');
  const head = (first: string, last: string[]) => [`| ${first} | ${[...events, ...last].join(' | ')} |`, `|---|${[...events, ...last].map(() => '---').join('|')}|`];
  return [
    '# Instructions per request at the resource server (callgrind)',
    '',
    `${r.date}, Node ${r.node}; \`node --import tsx bench/callgrind-rs.ts OUTDIR\` (see its header): the matrix RS under callgrind, single-threaded V8; per round, for bearer then session: ${r.requestsPerCell} requests with a token each (M=1, session proofs signed before the cell), then 20 tokens x 100 requests (M=100). The access tokens are in the validation cache from the second round on. Counts per request (cells) or per call (loops, in the same RS process).`,
    '',
    `- **First presentation: ${r.extraIrOverPrimitive.median}x the primitive's instructions** (session - bearer at M=1 over a raw ES256 verification; median of rounds 1 and on, ${r.extraIrOverPrimitive.min}..${r.extraIrOverPrimitive.max}).`,
    `- **Steady state (M=100): session ${r.m100IrSessionOverBearer.median}x bearer's instructions per request** (${r.m100IrSessionOverBearer.min}..${r.m100IrSessionOverBearer.max}).`,
    '',
    'A round moves with where V8 happens to collect garbage (in one cell or the other). Instructions are not time: cache misses, mispredictions and another process on the same core cost time without instructions.',
    '',
    '## One call, in-process loops',
    '',
    ...head('row', []),
    ...Object.entries(r.perCall).map(([name, e]) => `| ${name} | ${cols(e)} |`),
    '',
    '## By round: first presentation (session - bearer, M=1) and the steady state (M=100)',
    '',
    ...head('round', ['extra Ir / primitive Ir', 'M=100 bearer Ir', 'M=100 session Ir', 'M=100 session / bearer']),
    ...r.byRound.map(
      (b) => `| ${b.round} | ${cols(b.extra)} | ${b.extraIrOverPrimitive} | ${(b.m100.bearer.Ir ?? 0).toLocaleString('en-US')} | ${(b.m100.session.Ir ?? 0).toLocaleString('en-US')} | ${b.m100IrSessionOverBearer} |`,
    ),
  ];
}

await main();
