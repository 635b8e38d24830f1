/**
 * The egress sidecar (draft Appendix B): the agent talks plain HTTP/1.1 or h2c to it on loopback or
 * a Unix socket and sends only `Authorization: Bearer`; the egress holds the mTLS key, opens one
 * mTLS connection per destination (HTTP/2 preferred), derives the exporter once per connection and
 * attaches a Session-Binding Proof signed once per (token, connection).
 *
 * Layout: options.ts (defaults, validation) -> agent-listener.ts (front socket, h1 / h2c) ->
 * handle.ts (one request: routing.ts, body.ts, retry.ts, upstream/*, relay.ts) ; metrics.ts,
 * discovery.ts, errors.ts (the error table).
 */
import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import { ConnectionProofSigner, sessionBoundConfirmation } from '@tether/core';
import { describeEndpoint, SidecarConfigError, type Endpoint } from '../config.js';
import { createLogger } from '../log.js';
import { ConnectionTracker, startMetricsServer, type MetricsServer } from '../servers.js';
import { TokenSource } from '../token-source.js';
import { listenForAgents, type AgentListener } from './agent-listener.js';
import { discoveryDocument } from './discovery.js';
import { createHandler, type ActiveRoute, type HandlerContext } from './handle.js';
import { EgressMetrics } from './metrics.js';
import { resolveEgressOptions, type EgressOptions } from './options.js';
import { routeTable } from './routing.js';
import type { EgressConfig, EgressSidecar, EgressState } from './types.js';
import { UpstreamPool } from './upstream/pool.js';

export { DISCOVERY_PATH } from './discovery.js';
export { EGRESS_ERRORS, type EgressErrorCode } from './errors.js';
export { EGRESS_DEFAULTS, resolveEgressOptions, type EgressOptions } from './options.js';
export type { EgressConfig, EgressRoute, EgressSidecar, EgressState, EgressStats } from './types.js';

/** How long shutdown lets upstream sessions close gracefully before destroying them. */
const UPSTREAM_CLOSE_WAIT_MS = 1000;

function proofSigner(options: EgressOptions, metrics: EgressMetrics): ConnectionProofSigner {
  try {
    return new ConnectionProofSigner({
      cert: options.cert,
      key: options.key,
      preferRs256: options.preferRs256,
      tlsVersions: options.allowTls12 ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'],
      refreshAfter: options.proofRefreshAfter,
      onSign: () => metrics.proofSigned(),
      onHit: () => metrics.proofCacheHit(),
    });
  } catch (error) {
    throw new SidecarConfigError(error instanceof Error ? error.message : String(error), { cause: error });
  }
}

function upstreamTls(options: EgressOptions): ConnectionOptions {
  return {
    cert: options.cert,
    key: options.key,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    minVersion: options.allowTls12 ? 'TLSv1.2' : 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  };
}

function cachedProofs(signer: ConnectionProofSigner): number {
  let n = 0;
  for (const state of signer.live) n += state.proofs.size;
  return n;
}

async function metricsListener(ctx: HandlerContext, at: Endpoint | undefined, agents: AgentListener): Promise<MetricsServer | undefined> {
  if (at === undefined) return undefined;
  try {
    return await startMetricsServer(ctx.metrics.registry, at, () => !ctx.draining());
  } catch (error) {
    await agents.stop();
    throw new Error(`cannot listen on ${describeEndpoint(at)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
}

function egressState(signer: ConnectionProofSigner, routes: Iterable<ActiveRoute>, tracker: ConnectionTracker): EgressState {
  let upstreamSessions = 0;
  for (const r of routes) upstreamSessions += r.pool.sessions.size;
  return {
    connectionStates: signer.live.size,
    cachedProofs: cachedProofs(signer),
    upstreamSessions,
    agentConnections: tracker.sockets.size,
    agentSessions: tracker.sessions.size,
    activeRequests: tracker.active,
  };
}

/** Close the upstream sessions gracefully, waiting up to {@link UPSTREAM_CLOSE_WAIT_MS}, then destroy what is left. */
async function closePools(pools: readonly UpstreamPool[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(pools.map((p) => p.close())), new Promise((r) => (timer = setTimeout(r, UPSTREAM_CLOSE_WAIT_MS)))]);
  clearTimeout(timer);
  for (const p of pools) p.destroy();
}

/** Start the egress sidecar. Throws {@link SidecarConfigError} on bad configuration. */
export async function startEgress(config: EgressConfig): Promise<EgressSidecar> {
  const options = resolveEgressOptions(config);
  const log = createLogger('egress', options.log);
  // The proofs-cached gauge reads the signer, whose callbacks count into the metrics.
  const signerRef: { current?: ConnectionProofSigner } = {};
  const metrics = new EgressMetrics(() => (signerRef.current === undefined ? 0 : cachedProofs(signerRef.current)));
  const signer = (signerRef.current = proofSigner(options, metrics));
  const tls = upstreamTls(options);
  const poolOptions = { tls, signer, log, connectTimeoutMs: options.connectTimeoutMs, upstreamTimeoutMs: options.upstreamTimeoutMs, onConnection: (open: boolean) => metrics.upstreamConnection(open) };
  const routes = routeTable<ActiveRoute>(options.routes.map((spec) => ({ ...spec, pool: new UpstreamPool(spec.origin, poolOptions) })));
  let draining = false;
  const tracker = new ConnectionTracker();
  const ctx: HandlerContext = {
    routes,
    options,
    metrics,
    log,
    tracker,
    tokenSource: options.tokenEndpoint === undefined ? undefined : new TokenSource(options.tokenEndpoint, tls),
    discovery: discoveryDocument(sessionBoundConfirmation(new X509Certificate(options.cert)), routes.values()),
    draining: () => draining,
  };
  const handler = createHandler(ctx);
  const agents = await listenForAgents({
    at: options.listen,
    socketMode: options.socketMode,
    idleTimeoutMs: options.agentIdleTimeoutMs,
    tracker,
    onRequest: (req, res) => void handler(req, res),
    onRefused: (status, reason) => metrics.refused(status, reason),
    onConnections: (open) => metrics.agentConnections(open),
  });
  const metricsServer = await metricsListener(ctx, options.metricsListen, agents);
  const endpoint = agents.endpoint;
  const url = endpoint.kind === 'tcp' ? `http://${describeEndpoint(endpoint)}` : describeEndpoint(endpoint);
  log.info({ listen: url, routes: options.routes.map((r) => ({ name: r.name, upstream: r.origin.origin + r.basePath, audience: r.audiences })), metrics: metricsServer?.url }, 'egress ready');

  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    log.info('egress draining');
    const stopped = agents.stop();
    await tracker.drain(options.drainTimeoutMs, () => agents.closeIdle());
    await stopped;
    await closePools([...routes.values()].map((r) => r.pool));
    await metricsServer?.close();
    log.info('egress stopped');
  };
  return {
    endpoint,
    url,
    metrics: metricsServer,
    stats: metrics.stats,
    registry: metrics.registry,
    logger: log,
    state: () => egressState(signer, routes.values(), tracker),
    close: () => (closing ??= close()),
  };
}
