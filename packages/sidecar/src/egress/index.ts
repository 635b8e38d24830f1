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
import { sessionBoundConfirmation, type ConnectionProofSigner } from '@tether/core';
import { describeEndpoint, type Endpoint } from '../config.js';
import { certificateInUse, certificateUnusable, fixedSource, reloadableSource, type CredentialsSource } from '../credentials/source.js';
import { createLogger } from '../log.js';
import { ConnectionTracker, startMetricsServer, type MetricsServer, type Readiness } from '../servers.js';
import { TokenSource } from '../token-source.js';
import { listenForAgents, type AgentListener } from './agent-listener.js';
import { discoveryDocument } from './discovery.js';
import { Generations, type Generation, type GenerationSettings, type RotationTargets } from './generations.js';
import { createHandler, type ActiveRoute, type HandlerContext } from './handle.js';
import { EgressMetrics } from './metrics.js';
import { optionName, resolveEgressOptions, type EgressOptions } from './options.js';
import { routeTable } from './routing.js';
import type { EgressConfig, EgressSidecar, EgressState } from './types.js';
import { UpstreamPool, type PoolOptions } from './upstream/pool.js';

export { DISCOVERY_PATH } from './discovery.js';
export { EGRESS_ERRORS, type EgressErrorCode } from './errors.js';
export { EGRESS_DEFAULTS, resolveEgressOptions, type EgressOptions } from './options.js';
export type { EgressConfig, EgressRoute, EgressSidecar, EgressState, EgressStats } from './types.js';

/** How long shutdown lets upstream sessions close gracefully before destroying them. */
const UPSTREAM_CLOSE_WAIT_MS = 1000;

/** Reloadable `credentials`, or the fixed `cert` / `key` / `ca`. */
function credentialsSource(options: EgressOptions): CredentialsSource {
  if (options.credentials !== undefined) return reloadableSource(options.credentials);
  return fixedSource({ cert: options.cert, key: options.key ?? '', ca: options.ca }, optionName('cert'));
}

function generationSettings(options: EgressOptions, metrics: EgressMetrics): GenerationSettings {
  return {
    allowTls12: options.allowTls12,
    preferRs256: options.preferRs256,
    proofRefreshAfter: options.proofRefreshAfter,
    onSign: () => metrics.proofSigned(),
    onHit: () => metrics.proofCacheHit(),
  };
}

function cachedProofs(signer: ConnectionProofSigner): number {
  let n = 0;
  for (const state of signer.live) n += state.proofs.size;
  return n;
}

/** Proofs cached over the upstream connections of every generation. */
function allCachedProofs(generations: Generations | undefined): number {
  let n = 0;
  for (const g of generations?.live() ?? []) n += cachedProofs(g.signer);
  return n;
}

/** `/readyz`: not draining, and the certificate in use within its validity. */
function readiness(draining: boolean, generations: Generations): Readiness {
  if (draining) return { ready: false, reason: 'draining' };
  const unusable = certificateUnusable(generations.current().credentials);
  return unusable === undefined ? { ready: true } : { ready: false, reason: unusable };
}

/** The deferred key binding document for `generation`'s certificate. */
function discoveryFor(generation: Generation, routes: HandlerContext['routes']): unknown {
  return discoveryDocument(sessionBoundConfirmation(generation.signer.certificate), routes.values());
}

/**
 * On a certificate switch: tokens are fetched with the new certificate first (so the first
 * requests after the switch do not wait for them), then the pools, the token cache and the
 * discovery document move to the new generation.
 */
function rotationTargets(ctx: HandlerContext): RotationTargets {
  return {
    async prepare(next) {
      const result = await ctx.tokenSource?.prefetch(next);
      if (result !== undefined && result.failed > 0) ctx.log.warn({ generation: next.number, failed: result.failed }, 'could not fetch tokens with the new certificate; they are fetched on first use');
    },
    switched(next) {
      ctx.tokenSource?.switched(next);
      ctx.discovery = discoveryFor(next, ctx.routes);
      for (const route of ctx.routes.values()) route.pool.rotate();
    },
  };
}

async function metricsListener(ctx: HandlerContext, at: Endpoint | undefined, agents: AgentListener, ready: () => Readiness): Promise<MetricsServer | undefined> {
  if (at === undefined) return undefined;
  try {
    return await startMetricsServer(ctx.metrics.registry, at, () => !ctx.draining(), ready);
  } catch (error) {
    await agents.stop();
    throw new Error(`cannot listen on ${describeEndpoint(at)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
}

function egressState(generations: Generations, routes: Iterable<ActiveRoute>, tracker: ConnectionTracker): EgressState {
  let upstreamSessions = 0;
  for (const r of routes) upstreamSessions += r.pool.sessions.size;
  let connectionStates = 0;
  for (const g of generations.live()) connectionStates += g.signer.live.size;
  return {
    connectionStates,
    cachedProofs: allCachedProofs(generations),
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

/** The agent listener (with the request handler) and the operations listener. */
async function listenEgress(ctx: HandlerContext, ready: () => Readiness): Promise<{ agents: AgentListener; metricsServer: MetricsServer | undefined }> {
  const handler = createHandler(ctx);
  const { options, metrics } = ctx;
  const agents = await listenForAgents({
    at: options.listen,
    socketMode: options.socketMode,
    idleTimeoutMs: options.agentIdleTimeoutMs,
    tracker: ctx.tracker,
    onRequest: (req, res) => void handler(req, res),
    onRefused: (status, reason) => metrics.refused(status, reason),
    onConnections: (open) => metrics.agentConnections(open),
  });
  return { agents, metricsServer: await metricsListener(ctx, options.metricsListen, agents, ready) };
}

/** Start the egress sidecar. Throws {@link SidecarConfigError} on bad configuration. */
export async function startEgress(config: EgressConfig): Promise<EgressSidecar> {
  const options = resolveEgressOptions(config);
  const log = createLogger('egress', options.log);
  // The proofs-cached gauge reads the signers, whose callbacks count into the metrics.
  const ref: { generations?: Generations } = {};
  const metrics = new EgressMetrics(() => allCachedProofs(ref.generations));
  const generations = (ref.generations = new Generations(credentialsSource(options), generationSettings(options, metrics), log));
  const tokenSource = options.tokenEndpoint === undefined ? undefined : new TokenSource(options.tokenEndpoint, () => generations.current(), { onBackgroundFetch: () => metrics.tokensFetched(1) });
  const poolOptions: PoolOptions = {
    generation: () => generations.current(),
    tokens: tokenSource,
    log,
    connectTimeoutMs: options.connectTimeoutMs,
    upstreamTimeoutMs: options.upstreamTimeoutMs,
    onConnection: (open: boolean) => metrics.upstreamConnection(open),
  };
  const routes = routeTable<ActiveRoute>(options.routes.map((spec) => ({ ...spec, pool: new UpstreamPool(spec.origin, poolOptions) })));
  let draining = false;
  const tracker = new ConnectionTracker();
  const ctx: HandlerContext = { routes, options, metrics, log, tracker, tokenSource, discovery: discoveryFor(generations.current(), routes), draining: () => draining };
  generations.follow(rotationTargets(ctx));
  let listening: Awaited<ReturnType<typeof listenEgress>>;
  try {
    listening = await listenEgress(ctx, () => readiness(draining, generations));
  } catch (error) {
    void generations.close();
    throw error;
  }
  const { agents, metricsServer } = listening;
  const endpoint = agents.endpoint;
  const url = endpoint.kind === 'tcp' ? `http://${describeEndpoint(endpoint)}` : describeEndpoint(endpoint);
  log.info({ listen: url, routes: options.routes.map((r) => ({ name: r.name, upstream: r.origin.origin + r.basePath, audience: r.audiences })), metrics: metricsServer?.url }, 'egress ready');

  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    void generations.close();
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
    state: () => egressState(generations, routes.values(), tracker),
    readiness: () => readiness(draining, generations),
    certificate: () => certificateInUse(generations.current().credentials),
    close: () => (closing ??= close()),
  };
}
