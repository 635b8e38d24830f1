/** The soak's results: soak.json (every figure and sample) and soak.md (summary, checks, attacks, samples). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ATTACKS } from './attacks.js';
import { usesPerRequestClaims, type SoakConfig } from './config.js';
import type { Tally } from './run.js';
import { MiB, type SoakSample } from './samples.js';
import { slopePerMinute, type Verdict } from './verdict.js';

const mib = (b: number) => Number((b / MiB).toFixed(2));

export type SoakResult = ReturnType<typeof buildResult>;

export function buildResult(config: SoakConfig, tally: Tally, verdict: Verdict, samples: SoakSample[], elapsedSeconds: number) {
  const { honest, attacks, attackControls, attackerCycles, attackErrors, lostExamples, unexpectedExamples } = tally;
  return {
    date: new Date().toISOString(),
    node: process.version,
    pass: verdict.pass,
    setup: setupOf(config, verdict, elapsedSeconds),
    honest: { ...honest, attackControls },
    attacks: { totals: verdict.totals, byKind: attacks, expected: ATTACKS, attackerCycles, attackerErrors: attackErrors },
    server: serverOf(verdict, samples),
    checks: verdict.checks,
    examples: { lost: lostExamples, unexpected: unexpectedExamples },
    samples: samples.map(sampleRow),
  };
}

function setupOf(config: SoakConfig, verdict: Verdict, elapsedSeconds: number) {
  const { workersN, perRequestFraction } = config;
  return {
    durationSeconds: config.duration,
    elapsedSeconds: Number(elapsedSeconds.toFixed(1)),
    honestWorkers: workersN,
    protocols: 'even workers HTTP/2, odd workers HTTP/1.1 (keep-alive, 2 sockets)',
    perRequestClaimsWorkers: Array.from({ length: workersN }, (_, i) => i).filter((i) => usesPerRequestClaims(i, perRequestFraction)).length,
    tokensPerConnection: config.tokensPerConnection,
    requestsPerToken: config.requestsPerToken,
    streamsInFlightPerWorker: config.inFlight,
    churn: config.churn,
    attackers: config.attackersN,
    tokenLifetimeSeconds: config.tokenLifetime,
    cache: { maxEntriesPerConnection: config.cachePerConnection, maxEntries: config.cacheMax },
    heapBoundMiB: config.heapBoundMiB,
    rssBoundMiB: Number(verdict.rss.boundMiB.toFixed(2)),
    rsAllocator: config.allocator.name,
    rsNodeOptions: config.rsNodeOptions,
    warmupSeconds: config.warmup,
    sampleSeconds: config.sampleEvery,
  };
}

function serverOf(verdict: Verdict, samples: SoakSample[]) {
  const { final, baseline, rss } = verdict;
  return {
    connectionsAccepted: final.connectionsAccepted,
    requests: final.requests,
    accepted: final.accepted,
    failures: final.failures,
    peakCacheSize: verdict.peakCacheSize,
    peakEntriesPerConnection: Number(verdict.peakCacheRatio.toFixed(2)),
    heapBaselineMiB: mib(baseline.heapUsed),
    heapEndMiB: mib(final.heapUsed),
    heapGrowthMiB: mib(verdict.heapGrowth),
    heapSlopeMiBPerMin: Number(slopePerMinute(verdict.heapPoints).toFixed(3)),
    heapMaxMiB: mib(Math.max(...samples.map((s) => s.heapUsed))),
    rssBaselineMiB: mib(baseline.rss),
    rssGrowth: { spanSeconds: Number(rss.spanSeconds.toFixed(0)), fittedStartMiB: Number(rss.fittedStartMiB.toFixed(2)), fittedEndMiB: Number(rss.fittedEndMiB.toFixed(2)), growthMiB: Number(rss.growthMiB.toFixed(2)), boundMiB: Number(rss.boundMiB.toFixed(2)) },
    rssEndMiB: mib(final.rss),
    rssMaxMiB: mib(Math.max(...samples.map((s) => s.rss))),
    rssSlopeMiBPerMin: Number(slopePerMinute(verdict.rssPoints).toFixed(3)),
    replayStorePeak: Math.max(...samples.map((s) => s.replayStoreSize)),
    end: { cacheSize: final.cacheSize, cacheConnections: final.cacheConnections, openConnections: final.openConnections, replayStoreSize: final.replayStoreSize },
  };
}

function sampleRow(s: SoakSample) {
  return {
    t: Number(s.t.toFixed(1)),
    phase: s.phase,
    heapUsedMiB: mib(s.heapUsed),
    heapTotalMiB: mib(s.heapTotal),
    newSpaceMiB: mib(s.newSpace),
    externalMiB: mib(s.external),
    arrayBuffersMiB: mib(s.arrayBuffers),
    rssAnonMiB: mib(s.rssAnon),
    /** Anonymous resident memory outside V8's heap: malloc (OpenSSL, nghttp2, buffers) and its fragmentation. */
    rssAnonOutsideHeapMiB: mib(s.rssAnon - s.heapTotal),
    rssMiB: mib(s.rss),
    cacheSize: s.cacheSize,
    cacheConnections: s.cacheConnections,
    replayStoreSize: s.replayStoreSize,
    openConnections: s.openConnections,
    connectionsAccepted: s.connectionsAccepted,
    serverRequests: s.requests,
    honestRequests: s.honestRequests,
    attackRequests: s.attackRequests,
    generatorHeapUsedMiB: mib(s.generatorHeapUsed),
  };
}

/** Write soak.json and soak.md to `outDir` and print the summary (and any lost or unexpected examples) to stdout. */
export function writeReport(outDir: string, result: SoakResult, elapsedSeconds: number): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'soak.json'), JSON.stringify(result, null, 2) + '\n');
  const summary = summaryLines(result, elapsedSeconds);
  writeFileSync(join(outDir, 'soak.md'), [...summary, ...tableLines(result)].join('\n'));
  console.log(summary.join('\n'));
  const { lost, unexpected } = result.examples;
  if (lost.length > 0) console.log(`lost (examples): ${lost.join(' | ')}`);
  if (unexpected.length > 0) console.log(`unexpected (examples): ${unexpected.join(' | ')}`);
}

/** The verdict, the setup, one line per side (honest, attack, server, binding cache), and the checks. */
function summaryLines(result: SoakResult, elapsedSeconds: number): string[] {
  const { setup, honest, server: s, checks } = result;
  const { totals, attackerCycles } = result.attacks;
  const { attackControls } = honest;
  return [
    `# Soak: ${result.pass ? 'PASS' : 'FAIL'}`,
    '',
    `${result.date}, Node ${result.node}; ${elapsedSeconds.toFixed(0)} s; ${setup.honestWorkers} honest workers (HTTP/2 and HTTP/1.1, ${setup.perRequestClaimsWorkers} with per-request claims), ${setup.tokensPerConnection} tokens x ${setup.requestsPerToken} requests per connection batch, churn ${setup.churn}, ${setup.attackers} attackers; binding cache limits ${setup.cache.maxEntriesPerConnection}/connection, ${setup.cache.maxEntries} total.`,
    '',
    `- honest: ${honest.requests} requests (${honest.byProtocol.h2} HTTP/2, ${honest.byProtocol['http/1.1']} HTTP/1.1), ${honest.ok} x 200, ${honest.lost} lost, ${honest.retries} client retries; ${honest.connectionCycles} client connection cycles, ${honest.proofsSigned} proofs signed; attacker-side controls ${attackControls.ok}/${attackControls.sent} x 200`,
    `- attack: ${totals.sent} requests in ${attackerCycles} cycles, ${totals.refusedAsExpected} refused as expected, ${totals.wronglyAccepted} accepted, ${totals.unexpected} other answers`,
    `- server: ${s.connectionsAccepted} TLS connections accepted, ${s.requests} requests; heap ${s.heapBaselineMiB} -> ${s.heapEndMiB} MiB after GC (growth ${s.heapGrowthMiB} MiB, slope ${s.heapSlopeMiBPerMin} MiB/min, max ${s.heapMaxMiB}); RSS ${s.rssBaselineMiB} -> ${s.rssEndMiB} MiB (max ${s.rssMaxMiB}, slope ${s.rssSlopeMiBPerMin} MiB/min; trend under load ${s.rssGrowth.fittedStartMiB} -> ${s.rssGrowth.fittedEndMiB} MiB, growth ${s.rssGrowth.growthMiB} MiB); allocator ${setup.rsAllocator}; server Node flags: ${setup.rsNodeOptions.join(' ') || 'none'}`,
    `- binding cache: peak ${s.peakCacheSize} entries, peak ${s.peakEntriesPerConnection} per connection; at the end ${s.end.cacheSize} entries / ${s.end.cacheConnections} connections, ${s.end.openConnections} open connections; replay store peak ${s.replayStorePeak}, end ${s.end.replayStoreSize}`,
    '',
    '| check | value | holds |',
    '|---|---|---|',
    ...checks.map((c) => `| ${c.check} | ${c.value} | ${c.holds ? 'yes' : '**NO**'} |`),
    '',
  ];
}

/** The attacks by kind and the server's samples. */
function tableLines(result: SoakResult): string[] {
  const { byKind, expected } = result.attacks;
  return [
    '## Attacks',
    '',
    '| attack | expected | sent | refused as expected | accepted | other |',
    '|---|---|---|---|---|---|',
    ...Object.entries(byKind).map(([k, c]) => `| ${k} | ${expected[k]!.status} ${expected[k]!.error} | ${c.sent} | ${c.refusedAsExpected} | ${c.wronglyAccepted} | ${c.unexpected} |`),
    '',
    '## Samples (resource server, after GC)',
    '',
    'Memory in MiB. heap used / total: V8 heap after a full GC, used and committed (new space, the two semi-spaces, included); anon: anonymous resident memory (RssAnon); outside heap: anon minus heap total, i.e. malloc (OpenSSL, nghttp2, buffers) and its fragmentation.',
    '',
    '| t (s) | phase | heap used | heap total | new space | external | anon | outside heap | RSS | cache entries | cache connections | replay store | open connections | connections accepted | server requests |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...result.samples.map(
      (x) =>
        `| ${x.t} | ${x.phase} | ${x.heapUsedMiB} | ${x.heapTotalMiB} | ${x.newSpaceMiB} | ${x.externalMiB} | ${x.rssAnonMiB} | ${x.rssAnonOutsideHeapMiB} | ${x.rssMiB} | ${x.cacheSize} | ${x.cacheConnections} | ${x.replayStoreSize} | ${x.openConnections} | ${x.connectionsAccepted} | ${x.serverRequests} |`,
    ),
    '',
  ];
}
