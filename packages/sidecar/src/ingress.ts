/**
 * The ingress sidecar: terminates mTLS in front of a local application, verifies the access token
 * and its Session-Binding Proof against this connection (the core verifier), answers refusals
 * with the draft's 401s, and proxies verified requests to the application over plain HTTP/1.1 on
 * loopback or a Unix socket, with the verified principal in one `X-Tether-Principal` header.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { constants as h2, createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import {
  createSessionBoundVerifier,
  isTetherError,
  InvalidTokenError,
  type AccessTokenValidator,
  type SessionBoundVerifier,
  type VerifiedPrincipal,
} from '@tether/core';
import { hasUnreadBody, resetOversizedHttp2Request, sendRefusal, sessionBoundTlsOptions, verifyNodeRequest } from '@tether/core/node';
import { Counter, Gauge, Registry } from 'prom-client';
import { describeEndpoint, parseEndpoint, parseLocalUpstream, SidecarConfigError, type Endpoint } from './config.js';
import { endToEndHeaders, IDENTITY_HEADERS, IDENTITY_PREFIXES } from './headers.js';
import { createLogger, type Logger, type LogOptions } from './log.js';
import { closeServer, ConnectionTracker, listen, pipeBody, startMetricsServer, type MetricsServer } from './servers.js';

export const PRINCIPAL_HEADER = 'x-tether-principal';
export const METADATA_PATH = '/.well-known/oauth-protected-resource';

export interface IngressConfig {
  /** Public mTLS listener `HOST:PORT`. */
  listen: string | Endpoint;
  /** Server certificate and key (PEM). */
  cert: string | Buffer;
  key: string | Buffer;
  /** CA certificates (PEM) that client certificates must chain to. */
  ca: string | Buffer | Array<string | Buffer>;
  /** The local application: `http://127.0.0.1:PORT[/base]` or `unix:/path`. */
  upstream: string;
  /** Token validation: a ready verifier, or a token validator from which one is built. */
  verifier?: SessionBoundVerifier;
  tokens?: AccessTokenValidator;
  /** Weakest binding accepted when building the verifier (default `session`). */
  minimumBinding?: 'session' | 'certificate';
  /** Scopes every request must carry. */
  requiredScopes?: readonly string[];
  /** Accept TLS 1.2 (default: TLS 1.3 only). */
  allowTls12?: boolean;
  /** `resource` in the protected-resource metadata (default: `https://` + the authority the client used). */
  resource?: string;
  /** `authorization_servers` in the metadata. */
  authorizationServers?: readonly string[];
  /** Pass the client's `Authorization` field on to the application (default true, so it can exchange the token onwards). */
  passAuthorization?: boolean;
  metricsListen?: string | Endpoint;
  drainTimeoutMs?: number;
  /**
   * Rotate client connections: after this many requests on one connection the ingress answers the
   * last one and closes it gracefully (GOAWAY for HTTP/2, `Connection: close` for HTTP/1.1), so
   * clients reconnect (and re-prove). Default: unlimited.
   */
  maxRequestsPerConnection?: number;
  /**
   * Longest wait, in milliseconds, from forwarding a request to the application until its response
   * headers arrive (default 30000; 0 = no limit). On expiry the request to the application is
   * aborted and the client gets `504 {"error":"upstream_timeout"}`. A response whose headers have
   * arrived is never cut by it (long-lived responses and server-sent events keep streaming).
   */
  appTimeoutMs?: number;
  log?: LogOptions;
}

/** Sizes of the ingress's per-connection state. */
export interface IngressState {
  /** Client TLS connections and HTTP/2 sessions open. */
  connections: number;
  sessions: number;
  /** Bindings in the verifier's per-connection cache. */
  bindingsCached: number;
  /** Requests in flight. */
  activeRequests: number;
}

export interface IngressStats {
  requests: number;
  /** Requests proxied to the application. */
  proxied: number;
  /** Failures here (not the verifier's), by reason. */
  failures: Record<string, number>;
  connectionsOpen: number;
}

export interface IngressSidecar {
  endpoint: Endpoint;
  /** `https://HOST:PORT`. */
  url: string;
  metrics: MetricsServer | undefined;
  verifier: SessionBoundVerifier;
  stats: IngressStats;
  registry: Registry;
  logger: Logger;
  /** Live internal state sizes (for tests and monitoring): all of them fall back when connections close. */
  state(): IngressState;
  close(): Promise<void>;
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/** Largest delay `setTimeout` honours (about 24.8 days); longer ones would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The `X-Tether-Principal` value: base64url JSON of the verified principal (without the raw claims). */
export function encodePrincipal(p: VerifiedPrincipal): string {
  return Buffer.from(JSON.stringify({ sub: p.sub, client_id: p.client_id, scope: p.scope, act: p.act, cnf: p.cnf, binding: p.binding })).toString('base64url');
}

/** Decode an `X-Tether-Principal` value (for applications behind the ingress). */
export function decodePrincipal(value: string): Pick<VerifiedPrincipal, 'sub' | 'client_id' | 'scope' | 'act' | 'cnf' | 'binding'> {
  return JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Pick<VerifiedPrincipal, 'sub' | 'client_id' | 'scope' | 'act' | 'cnf' | 'binding'>;
}

function json(res: Res, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  // A body nobody reads (metadata, 405): close an HTTP/1.1 connection rather than drain the upload.
  const close: Record<string, string> = hasUnreadBody(res.req) ? { connection: 'close' } : {};
  (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...extra, ...close });
  res.end(text);
}

/**
 * Abort a response that has already started: the client must see it cut off, never complete. (An
 * HTTP/2 stream is reset with INTERNAL_ERROR: `destroy()` without an error would send RST_STREAM
 * NO_ERROR, which a client reads as a clean end of the body.)
 */
function abortResponse(res: Res): void {
  if ('stream' in res) {
    if (!res.stream.destroyed) res.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
  } else res.destroy();
}

/** Start the ingress sidecar. Throws {@link SidecarConfigError} on bad configuration. */
export async function startIngress(config: IngressConfig): Promise<IngressSidecar> {
  const listenAt = typeof config.listen === 'string' ? parseEndpoint(config.listen, '--listen') : config.listen;
  if (listenAt.kind !== 'tcp') throw new SidecarConfigError('--listen must be HOST:PORT (the ingress terminates mTLS)');
  const metricsAt = config.metricsListen === undefined ? undefined : typeof config.metricsListen === 'string' ? parseEndpoint(config.metricsListen, '--metrics-listen') : config.metricsListen;
  const { endpoint: app, basePath } = parseLocalUpstream(config.upstream, '--upstream');
  if (config.ca === undefined) throw new SidecarConfigError('--ca is required: client certificates must chain to it');
  const minimumBinding = config.minimumBinding ?? 'session';
  if (minimumBinding !== 'session' && minimumBinding !== 'certificate') throw new SidecarConfigError('--minimum-binding must be session or certificate');
  let verifier = config.verifier;
  if (verifier === undefined) {
    if (config.tokens === undefined) throw new SidecarConfigError('one of --jwks-url, --jwks-file or --introspection-url is required');
    verifier = createSessionBoundVerifier({
      tokens: config.tokens,
      minimumBinding,
      tlsVersions: config.allowTls12 === true ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'],
      ...(config.requiredScopes === undefined ? {} : { requiredScopes: config.requiredScopes }),
    });
  }
  const v = verifier;
  const passAuthorization = config.passAuthorization ?? true;
  const drainTimeoutMs = config.drainTimeoutMs ?? 10_000;
  const maxRequests = config.maxRequestsPerConnection ?? Infinity;
  if (!(maxRequests >= 1)) throw new SidecarConfigError('--max-requests-per-connection must be at least 1');
  const appTimeoutMs = config.appTimeoutMs ?? 30_000;
  if (typeof appTimeoutMs !== 'number' || !Number.isFinite(appTimeoutMs) || appTimeoutMs < 0 || appTimeoutMs > MAX_TIMER_MS) {
    throw new SidecarConfigError(`appTimeoutMs (--app-timeout) must be a number of milliseconds from 0 (no limit) to ${MAX_TIMER_MS}`);
  }
  const served = new WeakMap<object, number>();
  const log = createLogger('ingress', config.log);
  const drop = new Set(IDENTITY_HEADERS);
  if (!passAuthorization) drop.add('authorization');

  const stats: IngressStats = { requests: 0, proxied: 0, failures: {}, connectionsOpen: 0 };
  const registry = new Registry();
  const requestsTotal = new Counter({ name: 'tether_ingress_requests_total', help: 'Requests by route (app, metadata, refused) and status', labelNames: ['route', 'status'], registers: [registry] });
  const counterFrom = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counterFrom('tether_ingress_proof_verifications_total', 'Full Session-Binding Proof verifications (signature checked)', () => v.stats.proofVerifications);
  counterFrom('tether_ingress_binding_cache_hits_total', 'Requests served from the per-connection binding cache', () => v.stats.cacheHits);
  counterFrom('tether_ingress_verified_total', 'Requests whose token and binding verified', () => v.stats.accepted);
  new Counter({
    name: 'tether_ingress_failures_total',
    help: 'Refusals and failures by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(v.stats.failures)) this.inc({ reason }, n);
      for (const [reason, n] of Object.entries(stats.failures)) this.inc({ reason }, n);
    },
  });
  const connections = new Gauge({ name: 'tether_ingress_connections', help: 'Open client TLS connections', registers: [registry] });
  new Gauge({
    name: 'tether_ingress_bindings_cached',
    help: 'Bindings held in the per-connection cache',
    registers: [registry],
    collect() {
      this.set(v.cache.size);
    },
  });
  new Gauge({
    name: 'tether_signatures_per_request',
    help: 'Proof signature verifications divided by verified-or-refused requests (lower = amortized per connection)',
    registers: [registry],
    collect() {
      this.set(v.stats.requests === 0 ? 0 : v.stats.proofVerifications / v.stats.requests);
    },
  });
  const fail = (reason: string) => (stats.failures[reason] = (stats.failures[reason] ?? 0) + 1);

  const agent = new HttpAgent({ keepAlive: true });
  const tracker = new ConnectionTracker();
  let draining = false;

  function metadata(req: Req, res: Res): void {
    const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? describeEndpoint(listenAt);
    const body: Record<string, unknown> = {
      resource: config.resource ?? `https://${authority}`,
      bearer_methods_supported: ['header'],
      tls_client_certificate_bound_access_tokens: true,
      tls_session_bound_access_tokens_required: true,
    };
    if (config.authorizationServers !== undefined && config.authorizationServers.length > 0) body.authorization_servers = [...config.authorizationServers];
    json(res, 200, body, { 'cache-control': 'max-age=300' });
  }

  function proxy(req: Req, res: Res, principal: VerifiedPrincipal, gone: () => boolean): void {
    const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
    const headers: OutgoingHttpHeaders = endToEndHeaders(req.headers, { drop, dropPrefixes: IDENTITY_PREFIXES });
    headers.host = authority;
    headers[PRINCIPAL_HEADER] = encodePrincipal(principal);
    headers['x-forwarded-proto'] = 'https';
    headers['x-forwarded-host'] = authority;
    if (req.socket.remoteAddress !== undefined) headers['x-forwarded-for'] = req.socket.remoteAddress;
    const upstream = httpRequest({
      ...(app.kind === 'unix' ? { socketPath: app.path } : { host: app.host, port: app.port }),
      method: req.method,
      path: basePath + (req.url ?? '/'),
      headers,
      agent,
    });
    // Response timeout: bounds the wait for the application's response headers, not the body.
    let timedOut = false;
    const timer =
      appTimeoutMs === 0
        ? undefined
        : setTimeout(() => {
            if (gone() || res.headersSent) return;
            timedOut = true;
            fail('upstream_timeout');
            // No method, path or headers: the path or query may carry secrets.
            log.warn({ timeoutMs: appTimeoutMs }, 'application response timed out');
            upstream.destroy(); // the application sees its request aborted
            json(res, 504, { error: 'upstream_timeout', error_description: 'the application did not answer in time' }, { 'cache-control': 'no-store' });
            // An upload still coming in is not read any more: HTTP/1.1 closes the connection (json()),
            // HTTP/2 ends the stream with RST_STREAM NO_ERROR once the answer is out (RFC 9113 8.1).
            if ('stream' in req && !req.complete) {
              req.unpipe();
              res.once('finish', () => {
                if (!req.stream.destroyed) req.stream.close(h2.NGHTTP2_NO_ERROR);
              });
            }
          }, appTimeoutMs);
    const stopTimer = () => clearTimeout(timer);
    upstream.on('error', (error) => {
      stopTimer();
      if (gone() || timedOut) return; // we cancelled it (the client left, or the timeout)
      fail('upstream_error');
      log.warn({ err: error.message }, 'application request failed');
      if (!res.headersSent) json(res, 502, { error: 'upstream_unavailable', error_description: 'the application is not reachable' }, { 'cache-control': 'no-store' });
      else abortResponse(res);
    });
    upstream.once('response', (appRes) => {
      stopTimer();
      if (timedOut) {
        appRes.destroy();
        return;
      }
      stats.proxied++;
      appRes.on('error', () => {
        // The application's response was cut off (connection closed mid-body).
        fail('upstream_reset');
        abortResponse(res);
      });
      appRes.once('end', () => (complete = true));
      const out = endToEndHeaders(appRes.headers);
      if (draining && !('stream' in req)) out.connection = 'close';
      (res as ServerResponse).writeHead(appRes.statusCode ?? 502, out);
      if ('flushHeaders' in res) res.flushHeaders();
      appRes.pipe(res as NodeJS.WritableStream);
    });
    // The client went away before the application's response was complete: cancel it. (Not
    // 'finish' / writableFinished: Http2ServerResponse reports those on a reset stream too.)
    let complete = false;
    res.once('close', () => {
      stopTimer();
      if (!complete) upstream.destroy();
    });
    if (gone()) upstream.destroy();
    pipeBody(req, upstream, () => upstream.destroy());
  }

  const tlsOptions = sessionBoundTlsOptions({ cert: config.cert, key: config.key, ca: config.ca, allowTls12: config.allowTls12 === true });
  const maxHeaderBytes = tlsOptions.settings.maxHeaderListSize;
  const server = createSecureServer(
    { ...tlsOptions, allowHTTP1: true },
    (req: Req, res: Res) => {
      // Node applies the HTTP/2 header-list limit only once the client acknowledged our SETTINGS.
      if (resetOversizedHttp2Request(req, maxHeaderBytes)) {
        fail('header_too_large');
        return;
      }
      stats.requests++;
      tracker.request(res);
      let route = 'app';
      let closed = false;
      res.once('close', () => (closed = true));
      res.once('finish', () => requestsTotal.inc({ route, status: String(res.statusCode) }));
      const path = (req.url ?? '/').split('?')[0] as string;
      if (path === METADATA_PATH || path.startsWith(`${METADATA_PATH}/`)) {
        route = 'metadata';
        if (req.method === 'GET' || req.method === 'HEAD') metadata(req, res);
        else json(res, 405, { error: 'method_not_allowed' }, { allow: 'GET, HEAD' });
        return;
      }
      if (maxRequests !== Infinity) {
        // Connection rotation: count requests per connection (the HTTP/2 session or the TLS socket).
        const session = 'stream' in req ? req.stream.session : undefined;
        const key = session ?? req.socket;
        const n = (served.get(key) ?? 0) + 1;
        served.set(key, n);
        if (n >= maxRequests) {
          // (Captured now: a finished stream no longer knows its session.)
          if (session !== undefined) res.once('close', () => session.close());
          else res.setHeader('connection', 'close');
        }
      }
      if (draining && !('stream' in req)) res.setHeader('connection', 'close');
      verifyNodeRequest(v, req).then(
        (principal) => proxy(req, res, principal, () => closed),
        (error: unknown) => {
          route = 'refused';
          const refusal = isTetherError(error) ? error : new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified' });
          log.info({ reason: refusal.reason, status: refusal.statusCode, error: refusal.error }, 'request refused');
          // The body is not read: HTTP/1.1 gets `Connection: close` (sendRefusal), and HTTP/2 a
          // RST_STREAM NO_ERROR once the response is sent (Node skips that, and keeps reading the
          // upload, if the request was resumed).
          sendRefusal(res, refusal);
        },
      );
    },
  );
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.setNoDelay(true);
    tracker.track(socket, (n) => {
      stats.connectionsOpen = n;
      connections.set(n);
    });
  });
  server.on('session', (s) => tracker.trackSession(s));
  server.on('tlsClientError', (error) => {
    fail('tls_handshake');
    log.debug({ err: error.message }, 'TLS handshake failed');
  });

  const endpoint = await listen(server, listenAt).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on ${describeEndpoint(listenAt)}: ${error.code ?? error.message}`, { cause: error });
  });
  let metrics: MetricsServer | undefined;
  try {
    metrics = metricsAt === undefined ? undefined : await startMetricsServer(registry, metricsAt, () => !draining);
  } catch (error) {
    await closeServer(server);
    throw new Error(`cannot listen on ${describeEndpoint(metricsAt as Endpoint)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
  const url = `https://${describeEndpoint(endpoint)}`;
  log.info({ listen: url, upstream: config.upstream, metrics: metrics?.url }, 'ingress ready');

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    url,
    metrics,
    verifier: v,
    stats,
    registry,
    logger: log,
    state() {
      return { connections: tracker.sockets.size, sessions: tracker.sessions.size, bindingsCached: v.cache.size, activeRequests: tracker.active };
    },
    close() {
      closing ??= (async () => {
        draining = true;
        log.info('ingress draining');
        const stopped = closeServer(server);
        // HTTP/1.1 sockets with nothing in flight are closed at once; busy ones answer with `Connection: close`.
        await tracker.drain(drainTimeoutMs, () => {
          for (const socket of tracker.sockets) {
            const busy = (socket as { _httpMessage?: unknown })._httpMessage;
            if ((socket as TLSSocket).alpnProtocol !== 'h2' && (busy === null || busy === undefined)) socket.end();
          }
        });
        await stopped;
        agent.destroy();
        await metrics?.close();
        log.info('ingress stopped');
      })();
      return closing;
    },
  };
}
