import type { DemoReport, StackInfo } from './report.js';

function pad(value: string | number, width: number): string {
  return String(value).padEnd(width);
}

/** The report as text (what `tether demo` prints without --json). */
export function formatDemoReport(r: DemoReport): string {
  const h = r.honest;
  const lines = [
    'tether demo: an agent delegation chain over MCP with TLS-session-bound tokens',
    'agent A (MCP client) -> A egress ==mTLS==> B ingress -> agent B (MCP server) -> B egress ==mTLS==> C ingress -> service C',
    '',
    `Honest workload: ${h.users} users, ${h.toolCalls} tool calls (${h.succeeded} ok), ${h.progressNotifications} progress notifications streamed`,
    ...[...new Set(h.principals.map((p) => p.login))].map((m) => `  logged in at the identity provider ${r.identityProvider.issuer}: ${h.principals.filter((p) => p.login === m).map((p) => p.user).join(', ')}, by ${m}`),
    r.discovery === null
      ? '  discovery: FAILED'
      : `  A discovered from B's first 401: metadata ${r.discovery.resourceMetadata} -> resource ${r.discovery.resource}, AS ${r.discovery.authorizationServer}`,
    `  token exchanges: ${h.tokenExchanges.byA} by A (user's IdP token -> A->B token), ${h.tokenExchanges.byB} by B (A->B -> B->C token)`,
    ...h.principals.map((p) => `  service C saw: sub=${p.sub ?? '-'} act=${p.actChain.join(' <- ') || '-'}   (agent B saw: sub=${p.atB.sub ?? '-'} act=${p.atB.actChain.join(' <- ') || '-'})`),
    `  deferred key binding (tmb token used through A's sidecar): ${r.deferredKeyBinding.viaSidecar ? 'ok' : 'FAILED'}`,
    ...h.errors.map((e) => `  error: ${e}`),
    '',
    'Per hop',
    `  ${pad('hop', 6)}${pad('requests', 10)}${pad('conns', 7)}${pad('tokens', 8)}${pad('proofs', 8)}${pad('verifs', 8)}${pad('cache', 7)}sig/req`,
    ...r.hops.map((p) => `  ${pad(p.hop, 6)}${pad(p.requests, 10)}${pad(p.connections, 7)}${pad(p.tokens, 8)}${pad(p.proofsSigned, 8)}${pad(p.fullVerifications, 8)}${pad(p.cacheHits, 7)}${p.signaturesPerRequest.toFixed(3)}`),
    '  (proofs signed by the egress, full verifications and binding-cache hits at the ingress)',
    '',
    'Attacks',
    `  ${pad('id', 5)}${pad('threat', 12)}${pad('where', 19)}${pad('expected', 26)}${pad('got', 46)}result`,
    ...r.attacks.map(
      (a) =>
        `  ${pad(a.id, 5)}${pad(a.threat.split(' ')[0] as string, 12)}${pad(a.where, 19)}${pad(`${a.expected.status} ${a.expected.error}`, 26)}${pad(`${a.status} ${a.error ?? '-'}`, 46)}${a.pass ? 'refused as expected' : 'FAIL'}`,
    ),
    ...r.attacks.map((a) => `  ${a.id}: ${a.attempt}`),
    '',
    `time: ${(r.durationMs / 1000).toFixed(1)} s (setup ${r.phasesMs.setup} ms, honest ${r.phasesMs.honest} ms, attacks ${r.phasesMs.attacks} ms, shutdown ${r.phasesMs.shutdown} ms)`,
    r.ok
      ? 'PASS: every honest call succeeded and every attack was refused for the right reason'
      : `FAIL: ${h.succeeded}/${h.toolCalls} honest calls ok; ${r.attacks.filter((a) => a.pass).length}/${r.attacks.length} attacks refused as expected; exit codes ${JSON.stringify(r.exitCodes)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** What `--keep-running` prints while the stack stays up. */
export function formatStack(s: StackInfo): string {
  return [
    '',
    'The stack is up (Ctrl-C to stop). Agent A\'s side needs no key: talk plain HTTP to its egress.',
    `  identity provider (login)      ${s.identityProvider}`,
    `  AS issuer                      ${s.issuer}`,
    `  AS token endpoint (mTLS)       ${s.tokenEndpoint}`,
    `  AS token endpoint via A egress ${s.tokenUrlViaEgressA}`,
    `  B's MCP endpoint via A egress  ${s.mcpUrlViaEgressA}`,
    `  B's ingress (mTLS)             ${s.ingressB}`,
    `  C's ingress (mTLS)             ${s.ingressC}`,
    `  CA                             ${s.caFile}`,
    `  PKI (certificates, keys)       ${s.pkiDir}`,
    `  processes                      ${Object.entries(s.pids).map(([k, v]) => `${k}=${String(v)}`).join(' ')}`,
    '',
    'Environment (a token for B: alice, logged in at the identity provider, via agent A; bound to A\'s sidecar key):',
    `  export TETHER_MCP_URL=${s.mcpUrlViaEgressA}`,
    `  export TETHER_CA=${s.caFile}`,
    `  export TETHER_TOKEN=${s.tokenForB}`,
    '  curl -s "$TETHER_MCP_URL" -H "authorization: Bearer $TETHER_TOKEN" -H "content-type: application/json" \\',
    '    -H "accept: application/json, text/event-stream" \\',
    '    -d \'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}\'',
    '',
  ].join('\n');
}
