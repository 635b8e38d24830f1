/**
 * One agent request, top to bottom: route -> credentials -> policy -> body -> send (with the retry
 * rules) -> relay. Every refusal is a {@link SidecarError} from the egress error table, answered as
 * `{"error", "error_description"}`; an agent that went away gets nothing and cancels upstream.
 */
import { PROOF_HEADER } from '@tether/core';
import { endToEndHeaders } from '../headers.js';
import type { Logger } from '../log.js';
import type { ConnectionTracker } from '../servers.js';
import { errorMessage, SidecarError } from '../shared/errors.js';
import { sendError, type AnyResponse } from '../shared/respond.js';
import type { TokenSource } from '../token-source.js';
import { readBody } from './body.js';
import { isDiscovery, sendDiscovery } from './discovery.js';
import { egressError } from './errors.js';
import type { EgressMetrics } from './metrics.js';
import type { EgressOptions, RouteSpec } from './options.js';
import { relay } from './relay.js';
import { AgentGoneError, sendWithRetries, type RetryEvents } from './retry.js';
import { bearerToken, checkAudience, resolveRoute, type Credentials, type RouteTable } from './routing.js';
import { AgentLink, UpstreamTimeoutError, type AgentRequest, type Outbound, type UpstreamResponse } from './upstream/exchange.js';
import type { UpstreamPool } from './upstream/pool.js';

const PROOF_HEADER_LOWER = PROOF_HEADER.toLowerCase();
/** Agent fields never forwarded as they are: its proof (it cannot inject one) and `Authorization` (set from its credentials). */
const AGENT_DROP: ReadonlySet<string> = new Set([PROOF_HEADER_LOWER, 'authorization']);

/** A configured route with its upstream connections. */
export interface ActiveRoute extends RouteSpec {
  pool: UpstreamPool;
}

export interface HandlerContext {
  routes: RouteTable<ActiveRoute>;
  options: EgressOptions;
  metrics: EgressMetrics;
  log: Logger;
  tracker: ConnectionTracker;
  tokenSource: TokenSource | undefined;
  /** The deferred key binding document (discovery.ts). */
  discovery: unknown;
  draining(): boolean;
}

/** What one request knows about its agent. */
interface AgentState {
  /** Route name for metrics and logs (`-` until known). */
  route: string;
  /** When the request reached the handler (performance.now()). */
  started: number;
  /** Gone when the agent went away before the response was relayed in full. */
  link: AgentLink;
}

/**
 * Count the request exactly once, when its response closes (however it ends: answered, refused,
 * cut off, or the agent gone), with the status sent (0 when none was) and its duration; and tell
 * the link, which cancels the upstream request if that was before the response was relayed in full.
 */
function watchAgent(ctx: HandlerContext, res: AnyResponse): AgentState {
  const state: AgentState = { route: '-', started: performance.now(), link: new AgentLink() };
  res.once('close', () => {
    ctx.metrics.answered(state.route, res.headersSent ? res.statusCode : 0, (performance.now() - state.started) / 1000);
    // Only a close before the response was relayed in full means the agent left (AgentLink.complete).
    // Cancelling after a complete response would reset an upstream stream that has not quite closed
    // yet: one RST_STREAM per request trips the upstream's HTTP/2 rapid-reset limit (nghttp2: 1000,
    // then 33/s), which answers with GOAWAY INTERNAL_ERROR and stops reading the connection (the
    // restart-test hang).
    state.link.leave();
  });
  return state;
}

/** The request handler of the agent listener. */
export function createHandler(ctx: HandlerContext): (req: AgentRequest, res: AnyResponse) => Promise<void> {
  return async (req, res) => {
    ctx.metrics.request();
    ctx.tracker.request(res);
    const agent = watchAgent(ctx, res);
    try {
      await forward(ctx, req, res, agent);
    } catch (error) {
      answerFailure(ctx, res, agent, error);
    }
  };
}

async function forward(ctx: HandlerContext, req: AgentRequest, res: AnyResponse, agent: AgentState): Promise<void> {
  if (ctx.draining()) throw egressError('ERR_EGRESS_SHUTTING_DOWN');
  if (isDiscovery(ctx.routes, req.url, req.headers)) {
    agent.route = 'discovery';
    sendDiscovery(res, ctx.discovery);
    return;
  }
  const { route, path } = resolveRoute(ctx.routes, req.url, req.headers);
  agent.route = route.name;
  const method = (req.method ?? 'GET').toUpperCase();
  // Both usually known at once (the agent's token, no body): awaited only when they are not.
  const found = credentialsFor(ctx, req, route);
  const credentials = found instanceof Promise ? await found : found;
  if (!credentials.own) enforcePolicy(ctx, route, credentials.token, method, path);
  const headers = upstreamHeaders(ctx, req, route, credentials.authorization);
  const read = readBody(req, ctx.options.retryBufferBytes);
  const outbound: Outbound = { method, path, headers, body: read instanceof Promise ? await read : read, token: credentials.token, agent: agent.link };
  const upstream = await send(ctx, route, outbound);
  if (credentials.own && upstream.status === 401 && credentials.token !== undefined) {
    ctx.tokenSource?.invalidate(route.audiences[0] as string, route.scope, credentials.token);
  }
  if (agent.link.gone) {
    // The agent hung up while we waited for the upstream: cancel, do not relay.
    upstream.abort();
    return;
  }
  const link = agent.link;
  relay(upstream, res, { route: route.name, method, agent: link, onComplete: () => link.complete(), metrics: ctx.metrics, log: ctx.log });
  if (ctx.log.isLevelEnabled('debug')) ctx.log.debug({ route: route.name, method, path, status: upstream.status, ms: Math.round(performance.now() - agent.started) }, 'request');
}

type RequestCredentials = Credentials & { own: boolean };

/** The agent's credentials, or (routes with `egressToken`, agent without `Authorization`) a token the egress obtains. */
function credentialsFor(ctx: HandlerContext, req: AgentRequest, route: ActiveRoute): RequestCredentials | Promise<RequestCredentials> {
  const fromAgent = bearerToken(req.rawHeaders);
  const source = ctx.tokenSource;
  if (fromAgent.authorization !== undefined || !route.egressToken || source === undefined) return { token: fromAgent.token, authorization: fromAgent.authorization, own: false };
  return egressCredentials(ctx, route, source);
}

/** A token the egress obtains for `route` from the token endpoint. */
async function egressCredentials(ctx: HandlerContext, route: ActiveRoute, source: TokenSource): Promise<RequestCredentials> {
  const before = source.fetches;
  try {
    const token = await source.get(route.audiences[0] as string, route.scope);
    return { token, authorization: `Bearer ${token}`, own: true };
  } catch (error) {
    ctx.log.warn({ route: route.name, err: errorMessage(error) }, 'could not obtain a token');
    throw egressError('ERR_EGRESS_TOKEN_UNAVAILABLE', { cause: error });
  } finally {
    ctx.metrics.tokensFetched(source.fetches - before);
  }
}

function enforcePolicy(ctx: HandlerContext, route: ActiveRoute, token: string | undefined, method: string, path: string): void {
  try {
    checkAudience(ctx.options.tokenPolicy, route.audiences, token);
  } catch (error) {
    if (error instanceof SidecarError) ctx.log.warn({ route: route.name, reason: error.reason, method, path }, 'policy violation: request refused');
    throw error;
  }
}

/** End-to-end fields of the agent's request; its `Session-Binding-Proof` is dropped (the agent cannot inject proofs). */
function upstreamHeaders(ctx: HandlerContext, req: AgentRequest, route: ActiveRoute, authorization: string | undefined): Outbound['headers'] {
  if (req.headers[PROOF_HEADER_LOWER] !== undefined) ctx.log.info({ route: route.name }, 'dropped a Session-Binding-Proof sent by the agent');
  const headers = endToEndHeaders(req.headers, { drop: AGENT_DROP });
  if (authorization !== undefined) headers.authorization = authorization;
  return headers;
}

/** The retry events of each route, made once per handler context. */
const retryEventsByContext = new WeakMap<HandlerContext, Map<string, RetryEvents>>();

function retryEvents(ctx: HandlerContext, route: string): RetryEvents {
  let byRoute = retryEventsByContext.get(ctx);
  if (byRoute === undefined) retryEventsByContext.set(ctx, (byRoute = new Map()));
  let events = byRoute.get(route);
  if (events === undefined) byRoute.set(route, (events = routeRetryEvents(ctx, route)));
  return events;
}

function routeRetryEvents(ctx: HandlerContext, route: string): RetryEvents {
  return {
    connectRetry: (error, delay) => {
      ctx.metrics.connectRetry();
      ctx.log.debug({ route, err: error.message, delay }, 'upstream connection attempt failed; trying again');
    },
    connectionRetry: (error) => {
      ctx.metrics.connectionRetry();
      ctx.log.debug({ route, err: error.message }, 'upstream connection went away before a response; sending again on a new connection');
    },
    freshProofRetry: (error) => {
      ctx.metrics.freshProofRetry();
      ctx.log.info({ route, error }, 'binding refused upstream; retrying once on a fresh proof');
    },
    freshProofImpossible: () => ctx.metrics.failure('binding_refused_streamed_body'),
  };
}

/** Send with the retry rules; upstream failures become ERR_EGRESS_UPSTREAM_TIMEOUT / _UNAVAILABLE. */
async function send(ctx: HandlerContext, route: ActiveRoute, outbound: Outbound): Promise<UpstreamResponse> {
  try {
    return await sendWithRetries((o) => route.pool.send(o), outbound, ctx.options.connectRetryMs, retryEvents(ctx, route.name));
  } catch (error) {
    if (error instanceof SidecarError || error instanceof AgentGoneError) throw error;
    if (error instanceof UpstreamTimeoutError) {
      ctx.log.warn({ route: route.name, timeoutMs: error.timeoutMs }, 'upstream response timed out');
      throw egressError('ERR_EGRESS_UPSTREAM_TIMEOUT', { cause: error });
    }
    ctx.log.warn({ route: route.name, err: errorMessage(error) }, 'upstream request failed');
    throw egressError('ERR_EGRESS_UPSTREAM_UNAVAILABLE', { cause: error });
  }
}

function answerFailure(ctx: HandlerContext, res: AnyResponse, agent: AgentState, error: unknown): void {
  if (error instanceof AgentGoneError || agent.link.gone) {
    // Nobody to answer: the upstream request (if any) was cancelled.
    ctx.metrics.failure('agent_gone');
    ctx.log.debug({ route: agent.route, err: errorMessage(error) }, 'the agent went away before the response');
    if (!res.headersSent) res.destroy();
    return;
  }
  if (error instanceof SidecarError) {
    ctx.metrics.failure(error.reason);
    sendError(res, error);
    return;
  }
  ctx.metrics.failure('internal');
  ctx.log.error({ err: errorMessage(error) }, 'internal error');
  sendError(res, egressError('ERR_EGRESS_INTERNAL'));
}
