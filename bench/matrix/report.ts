/**
 * The matrix's report under `outDir`: `<base>.json` (config, scenarios, results, targets,
 * verification costs, every cell), `<base>.md` (printed too) and three SVG charts over M of the
 * long-lived HTTP/2 pattern. `<base>` is matrix[-focus][-quick].
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median } from '../median.js';
import { MODES } from '../load/signer.js';
import { lineChart } from '../svg.js';
import { verifyCostTable, type VerifyCosts } from '../verify-cost.js';
import { config, only, outDir, quick } from './config.js';
import type { Cell } from './run.js';
import { modesOf, scenarios } from './scenarios.js';
import { fr2 as fr, type Figure, type ModeSummary, type Results } from './summary.js';
import type { TargetRow } from './targets.js';

export interface Summary {
  results: Results;
  targets: TargetRow[];
}

const TRANSPORT = 'TLS 1.3, P-256 client certificate, ES256 access tokens and proofs, 127.0.0.1, RS in a child process';

function fmt(x: number, digits = 1): string {
  if (!Number.isFinite(x)) return 'n/a';
  return x >= 1000 ? x.toFixed(0) : x.toFixed(digits);
}

export function write(summary: Summary, cells: Cell[], costs: VerifyCosts): void {
  mkdirSync(outDir, { recursive: true });
  const base = `${only === undefined ? 'matrix' : 'matrix-focus'}${quick ? '-quick' : ''}`;
  const date = new Date().toISOString();
  const json = {
    date,
    node: process.version,
    quick,
    config,
    transport: TRANSPORT,
    modes: MODES,
    scenarios: scenarios.map((s) => ({ id: s.id, pattern: s.pattern, m: s.m ?? null, tokens: s.tokens, description: s.description })),
    results: summary.results,
    targets: summary.targets,
    verifyCosts: costs,
    cells,
  };
  writeFileSync(join(outDir, `${base}.json`), JSON.stringify(json, null, 2) + '\n');
  const md = markdown(summary, cells, costs, date);
  writeFileSync(join(outDir, `${base}.md`), md.join('\n'));
  writeCharts(summary.results, base);
  console.log(md.join('\n'));
  console.error(`wrote ${base}.{json,md} and 3 SVG charts to ${outDir}; ${cells.length} cells`);
}

function markdown(summary: Summary, cells: Cell[], costs: VerifyCosts, date: string): string[] {
  const md: string[] = [
    `# Benchmark matrix${quick ? ' (quick)' : ''}`,
    '',
    `${date}, Node ${process.version}, ${config.repeats} repeats (mode order rotated). ${TRANSPORT}.`,
    'Each figure is the median over repeats; "x bearer" is the median (min..max) of mode / bearer measured in the same repeat and pattern.',
    'Sig/req = proofs signed by the client per request; ver/req = full proof verifications at the RS (Session-Binding + DPoP) per request.',
    '',
    '| pattern | mode | req/s | x bearer | RS CPU µs/req | x bearer | client CPU µs/req | x bearer | sig/req | ver/req | p50 ms | p99 ms | x bearer p99 | fail |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of scenarios) {
    for (const mode of modesOf(s)) {
      const r = (summary.results[s.id] as Record<string, ModeSummary>)[mode] as ModeSummary;
      md.push(
        `| ${s.id} | ${mode} | ${fmt(r.median.throughput, 0)} | ${fr(r.ratio.throughput)} | ${fmt(r.median.rsCpuUs)} | ${fr(r.ratio.rsCpuUs)} | ${fmt(r.median.clientCpuUs)} | ${fr(r.ratio.clientCpuUs)} | ` +
          `${r.median.signaturesPerRequest.toFixed(3)} | ${r.median.verificationsPerRequest.toFixed(3)} | ${r.median.p50Ms.toFixed(2)} | ${r.median.p99Ms.toFixed(2)} | ${r.ratio.p99Ms.median.toFixed(2)} | ${r.failures} |`,
      );
    }
  }
  md.push('', '## Patterns', '');
  for (const s of scenarios) md.push(`- \`${s.id}\`: ${s.description}`);
  md.push('', ...verifyCostTable(costs));
  md.push('', '## Targets', '', '| claim | measured | holds |', '|---|---|---|');
  for (const t of summary.targets) md.push(`| ${t.claim} | ${t.value} | ${t.holds === null ? '-' : t.holds ? 'yes' : '**no**'} |`);
  const resumed = summary.results['conn-per-request-resumed']?.bearer?.median.resumedShare;
  const agentConns = MODES.map((mode) => `${mode} ${median(cells.filter((c) => c.scenario === 'agent-mix' && c.mode === mode).map((c) => c.connections))}`);
  if (scenarios.some((s) => s.id === 'agent-mix')) md.push('', `Agent mix, TLS connections opened per cell (median; ${config.agent.connections * config.agent.rounds} when no connection dropped mid-burst): ${agentConns.join(', ')}.`);
  if (resumed !== undefined) md.push('', `Share of resumed handshakes at the RS in conn-per-request-resumed (bearer): ${(resumed * 100).toFixed(0)}%.`);
  md.push('');
  return md;
}

/** Throughput, RS CPU and client CPU per request over M (long-lived HTTP/2), one series per mode. */
function writeCharts(results: Results, base: string): void {
  const longs = scenarios.filter((s) => s.pattern === 'h2-long');
  const chart = (figure: Figure, title: string, yLabel: string) =>
    lineChart({
      title,
      xLabel: 'M (requests per token on one long-lived HTTP/2 connection)',
      yLabel,
      x: longs.map((s) => s.m ?? 0),
      series: MODES.map((mode) => ({ name: mode, values: longs.map((s) => ((results[s.id] as Record<string, ModeSummary>)[mode] as ModeSummary).median[figure]) })),
    });
  writeFileSync(join(outDir, `${base}-throughput.svg`), chart('throughput', 'RS throughput vs M', 'requests / s'));
  writeFileSync(join(outDir, `${base}-rs-cpu.svg`), chart('rsCpuUs', 'RS CPU per request vs M', 'µs CPU / request'));
  writeFileSync(join(outDir, `${base}-client-cpu.svg`), chart('clientCpuUs', 'Client CPU per request vs M', 'µs CPU / request'));
}
