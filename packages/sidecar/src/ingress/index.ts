/**
 * The ingress sidecar: terminates mTLS in front of a local application, verifies the access token
 * and its Session-Binding Proof against this connection (the core verifier), answers refusals
 * with the draft's 401s, and proxies verified requests to the application over plain HTTP/1.1 on
 * loopback or a Unix socket, with the verified principal in one `X-Tether-Principal` header.
 *
 * This file wires the pieces: options.ts (defaults, validation), handle.ts (one request),
 * proxy.ts (to the application), connections.ts (idle timeout, rotation), metadata.ts (RFC 9728),
 * metrics.ts, principal.ts; and owns start-up, readiness and the graceful close.
 */
import { Agent as HttpAgent } from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { Server as NetServer } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { isExternalClientKey } from '@tether/core';
import { guardHttp2Session, proxyProtocolListener, sessionBoundTlsOptions } from '@tether/core/node';
import { describeEndpoint, SidecarConfigError, type Endpoint } from '../config.js';
import { certificateInUse, certificateUnusable, type ActiveCredentials } from '../credentials/source.js';
import { createLogger, type Logger } from '../log.js';
import { AppProbe } from './app-probe.js';
import { closeServer, ConnectionTracker, listen, startMetricsServer, type MetricsServer, type Readiness } from '../servers.js';
import { ClientConnections } from './connections.js';
import { createClientErrorHandler, createRequestHandler } from './handle.js';
import { createIngressMetrics, type IngressMetrics } from './metrics.js';
import { resolveIngressOptions, type IngressConfig, type IngressOptions } from './options.js';
import { createProxy } from './proxy.js';
import type { IngressSidecar, IngressStats } from './types.js';

export { encodePrincipal, decodePrincipal, PRINCIPAL_HEADER, type ForwardedPrincipal } from './principal.js';
export { METADATA_PATH } from './metadata.js';
export { INGRESS_ERRORS, type IngressErrorCode } from './errors.js';
export { resolveIngressOptions, INGRESS_DEFAULTS, type IngressConfig, type IngressOptions } from './options.js';
export type { IngressSidecar, IngressState, IngressStats } from './types.js';
export type { CertificateInUse } from '../credentials/source.js';

/** Start the ingress sidecar. Throws {@link SidecarConfigError} on bad configuration. */
export async function startIngress(config: IngressConfig): Promise<IngressSidecar> {
  return startResolvedIngress(resolveIngressOptions(config));
}

/** Everything a running ingress holds. */
interface Running {
  options: IngressOptions;
  log: Logger;
  stats: IngressStats;
  metrics: IngressMetrics;
  tracker: ConnectionTracker;
  agent: HttpAgent;
  server: Http2SecureServer;
  /** What listens on `--listen`: the TLS server itself, or the PROXY protocol listener in front of it. */
  listener: Http2SecureServer | NetServer;
  draining: boolean;
  /** The certificate, key and client CA of new connections (what the server's secure context holds). */
  active: ActiveCredentials;
  /** Stops following credential reloads. */
  unfollow: () => void;
  /** Reachability of the application, probed while the metrics listener runs (for `/readyz`). */
  probe: AppProbe;
}

/** The server's TLS options for `credentials` (the same ones at start and after every reload). */
function serverTlsOptions(credentials: ActiveCredentials, allowTls12: boolean): ReturnType<typeof sessionBoundTlsOptions> {
  const { key } = credentials;
  // Token-held keys are for clients (the egress); the ingress's server key is a PEM file.
  if (isExternalClientKey(key)) throw new SidecarConfigError('--key pkcs11:... is supported by tether egress only');
  return sessionBoundTlsOptions({ cert: credentials.cert, key, ca: credentials.ca, allowTls12 });
}

/**
 * Each accepted reload becomes the secure context of new connections (same TLS options, new
 * certificate, key and client CA); connections already established keep theirs until they close.
 */
function followCredentials(r: Running): () => void {
  return r.options.credentials.subscribe((next, trigger) => {
    try {
      r.server.setSecureContext(serverTlsOptions(next, r.options.allowTls12));
    } catch (error) {
      r.log.error({ generation: next.generation, trigger, err: error instanceof Error ? error.message : String(error) }, 'ingress certificate not applied; the current one stays in use');
      return;
    }
    r.active = next;
    r.log.info({ generation: next.generation, fingerprint: next.fingerprint, notAfter: next.notAfter.toISOString(), trigger }, 'ingress certificate switched: new connections use it');
  });
}

function createServer(r: Omit<Running, 'server' | 'listener'>): Http2SecureServer {
  const { options } = r;
  const tlsOptions = serverTlsOptions(r.active, options.allowTls12);
  const connections = new ClientConnections({
    idleTimeoutMs: options.idleTimeoutMs,
    maxRequestsPerConnection: options.maxRequestsPerConnection,
    onIdleClose: () => r.stats.idleClosed++,
  });
  const draining = () => r.draining;
  const proxy = createProxy({ options, agent: r.agent, log: r.log, fail: r.metrics.fail, proxied: () => r.stats.proxied++, draining });
  const handler = createRequestHandler({
    verifier: options.verifier,
    metadata: { resource: options.resource, authorizationServers: options.authorizationServers, listen: options.listen },
    maxHeaderBytes: tlsOptions.settings.maxHeaderListSize,
    connections,
    tracker: r.tracker,
    metrics: r.metrics,
    stats: r.stats,
    log: r.log,
    proxy,
    draining,
  });
  // allowHalfOpen false (the default, stated): a client's FIN ends our side too, no CLOSE-WAIT.
  const server = createSecureServer({ ...tlsOptions, allowHTTP1: true, allowHalfOpen: false }, handler);
  server.on('secureConnection', (socket: TLSSocket) => {
    // A handshake that completed after the drain began: the drain has already closed what it
    // knew, and the server's close would wait for this one until its idle timeout.
    if (r.draining) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    r.tracker.track(socket, r.metrics.connections);
    connections.addSocket(socket);
  });
  server.on('session', (session) => {
    r.tracker.trackSession(session);
    connections.addSession(session);
    // Rapid reset (CVE-2023-44487) and sessions nobody reads any more end at once; a quiet
    // session with a stream in flight is PINGed (idle ones are closed by `connections` too).
    guardHttp2Session(session, {
      idleTimeoutMs: options.idleTimeoutMs,
      onDestroy: (reason) => {
        if (reason !== 'idle') r.metrics.fail(`h2_${reason}`);
      },
    });
  });
  server.on('clientError', createClientErrorHandler(r));
  server.on('tlsClientError', (error) => {
    r.metrics.fail('tls_handshake');
    r.log.debug({ err: error.message }, 'TLS handshake failed');
  });
  return server;
}

/** `--proxy-protocol`: the PROXY v2 listener in front of the TLS server; refused connections are counted and logged. */
function proxyListener(server: Http2SecureServer, r: Omit<Running, 'server' | 'listener'>): NetServer {
  return proxyProtocolListener(server, {
    onRefused: (reason) => {
      r.metrics.fail('proxy_protocol');
      r.log.debug({ reason }, 'connection without a valid PROXY protocol header closed');
    },
  });
}

/** `/readyz`: first failing condition wins. */
function readiness(r: Running): Readiness {
  if (r.draining) return { ready: false, reason: 'draining' };
  if (!r.listener.listening) return { ready: false, reason: 'not_listening' };
  const unusable = certificateUnusable(r.active);
  if (unusable !== undefined) return { ready: false, reason: unusable };
  return r.probe.reachable === false ? { ready: false, reason: 'upstream_unreachable' } : { ready: true };
}

async function startListening(r: Running): Promise<{ endpoint: Endpoint; metrics: MetricsServer | undefined }> {
  const { listen: listenAt, metricsListen } = r.options;
  const endpoint = await listen(r.listener, listenAt).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on ${describeEndpoint(listenAt)}: ${error.code ?? error.message}`, { cause: error });
  });
  if (metricsListen === undefined) return { endpoint, metrics: undefined };
  try {
    await r.probe.start();
    // /healthz is liveness: 200 as long as the process answers; readiness is /readyz.
    return { endpoint, metrics: await startMetricsServer(r.metrics.registry, metricsListen, () => true, () => readiness(r)) };
  } catch (error) {
    r.probe.stop();
    await closeServer(r.listener);
    throw new Error(`cannot listen on ${describeEndpoint(metricsListen)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
}

/** Graceful close: stop accepting, GOAWAY / close idle HTTP/1.1, wait for in-flight requests up to the drain timeout. */
async function drain(r: Running, metrics: MetricsServer | undefined): Promise<void> {
  r.draining = true;
  r.unfollow();
  r.probe.stop();
  r.log.info('ingress draining');
  const stopped = closeServer(r.listener);
  // HTTP/1.1 sockets with nothing in flight are closed at once; busy ones answer with `Connection: close`.
  await r.tracker.drain(r.options.drainTimeoutMs, () => {
    for (const socket of r.tracker.sockets) {
      const busy = (socket as { _httpMessage?: unknown })._httpMessage;
      if ((socket as TLSSocket).alpnProtocol !== 'h2' && (busy === null || busy === undefined)) socket.end();
    }
  });
  await stopped;
  r.agent.destroy();
  await metrics?.close();
  r.log.info('ingress stopped');
}

/** Start an ingress from options {@link resolveIngressOptions} checked (as `tether ingress` does). */
export async function startResolvedIngress(options: IngressOptions): Promise<IngressSidecar> {
  const log = createLogger('ingress', options.log);
  const stats: IngressStats = { requests: 0, proxied: 0, failures: {}, connectionsOpen: 0, idleClosed: 0 };
  const parts: Omit<Running, 'server' | 'listener'> = {
    options,
    log,
    stats,
    metrics: createIngressMetrics(options.verifier, stats),
    tracker: new ConnectionTracker(),
    agent: new HttpAgent({ keepAlive: true }),
    draining: false,
    active: options.credentials.current(),
    unfollow: () => undefined,
    probe: new AppProbe(options.app),
  };
  // The same object: closures given `parts` see `draining` and `active` change.
  const server = createServer(parts);
  const r: Running = Object.assign(parts, { server, listener: options.proxyProtocol ? proxyListener(server, parts) : server });
  r.unfollow = followCredentials(r);
  const { endpoint, metrics } = await startListening(r).catch((error: unknown) => {
    r.unfollow();
    throw error;
  });
  const url = `https://${describeEndpoint(endpoint)}`;
  log.info({ listen: url, upstream: options.upstream, metrics: metrics?.url, idleTimeoutMs: options.idleTimeoutMs }, 'ingress ready');
  let closing: Promise<void> | undefined;
  return {
    endpoint,
    url,
    metrics,
    verifier: options.verifier,
    stats,
    registry: r.metrics.registry,
    logger: log,
    state() {
      return { connections: r.tracker.sockets.size, sessions: r.tracker.sessions.size, bindingsCached: options.verifier.cache.size, activeRequests: r.tracker.active };
    },
    readiness: () => readiness(r),
    certificate: () => certificateInUse(r.active),
    close() {
      closing ??= drain(r, metrics);
      return closing;
    },
  };
}
