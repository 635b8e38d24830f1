/**
 * The egress sidecar (draft Appendix B): the agent talks plain HTTP/1.1 or h2c to it on loopback or
 * a Unix socket and sends only `Authorization: Bearer`; the egress holds the mTLS key, opens one
 * mTLS connection per destination (HTTP/2 preferred), derives the exporter once per connection and
 * attaches a Session-Binding Proof signed once per (token, connection).
 */
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import {
  connect as http2Connect,
  constants as h2,
  createServer as createH2cServer,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, isIP, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { ConnectionProofSigner, parseWwwAuthenticate, PROOF_HEADER, sessionBoundConfirmation } from '@tether/core';
import { resetOversizedHttp2Request } from '@tether/core/node';
import { Counter, Gauge, Registry } from 'prom-client';
import { describeEndpoint, isLoopback, parseEndpoint, SidecarConfigError, type Endpoint } from './config.js';
import { endToEndHeaders, rawValues } from './headers.js';
import { createLogger, type Logger, type LogOptions } from './log.js';
import { TokenSource, type TokenEndpointConfig } from './token-source.js';
import { closeServer, ConnectionTracker, listen, pipeBody, startMetricsServer, type MetricsServer } from './servers.js';

/** One allowed destination. */
export interface EgressRoute {
  /** Route name: the first path segment (`/NAME/...`) or the Host name the agent uses. */
  name: string;
  /** Upstream `https://host[:port][/base]`. */
  upstream: string;
  /**
   * Audiences a token must name (in its unverified `aud`) to be sent here. Default: the upstream
   * origin (`https://host[:port]`, the RFC 8707 resource indicator).
   */
  audience?: string | readonly string[];
  /**
   * The egress obtains the token for this route itself (needs `tokenEndpoint`) when the agent
   * sends no `Authorization`: the agent then holds neither key nor token.
   */
  egressToken?: boolean;
  /** `scope` requested for egress-obtained tokens. */
  scope?: string;
}

export interface EgressConfig {
  /** Agent-facing listener: a loopback `HOST:PORT` or `unix:/path` (never a routable address). */
  listen: string | Endpoint;
  /** Client certificate (PEM) presented upstream; its key signs the proofs. */
  cert: string | Buffer;
  /** Private key of `cert` (PEM). Lives only in this process. */
  key: string | Buffer;
  /** CA certificates (PEM) that verify upstream servers (default: Node's roots). */
  ca?: string | Buffer | Array<string | Buffer>;
  routes: readonly EgressRoute[];
  /** Authorization server token endpoint for routes with `egressToken` (client_credentials, tls_client_auth). */
  tokenEndpoint?: TokenEndpointConfig;
  /** `audience` (default): a bearer token goes only to a route its `aud` names. `none`: no token check. */
  tokenPolicy?: 'audience' | 'none';
  /** Request bodies up to this many bytes (declared by Content-Length) are buffered so a binding error can be retried (default 1 MiB). */
  retryBufferBytes?: number;
  /** Re-sign a cached proof older than this many seconds (default 3000; keep it below the resource server's maximum binding age). */
  proofRefreshAfter?: number;
  /** Offer TLS 1.2 upstream as well as TLS 1.3. */
  allowTls12?: boolean;
  /** Use RS256 rather than PS256 for RSA keys. */
  preferRs256?: boolean;
  /** Prometheus `/metrics` and `/healthz` listener. */
  metricsListen?: string | Endpoint;
  /** Mode of the agent-facing Unix socket (default 0o600). */
  socketMode?: number;
  /** How long shutdown waits for in-flight requests before closing them, ms (default 10000). */
  drainTimeoutMs?: number;
  /** Upstream connect (TCP + TLS) timeout, ms (default 10000). */
  connectTimeoutMs?: number;
  /**
   * How long a request keeps retrying to connect upstream after a refused or reset connection
   * attempt (an upstream restarting), with backoff from 25 ms up to 250 ms, ms (default 2000; 0 = no
   * connect retry). See README "Retry".
   */
  connectRetryMs?: number;
  log?: LogOptions;
}

/** Counters, counted where the event happens. */
export interface EgressStats {
  /** Requests received from the agent. */
  requests: number;
  /** Session-Binding Proofs signed. */
  proofsSigned: number;
  /** Requests that reused a cached proof. */
  proofCacheHits: number;
  /** Requests retried once on a fresh proof after `use_session_binding` / `invalid_proof`. */
  retries: number;
  /** Requests sent again on a new upstream connection after the previous one went away without a response. */
  connectionRetries: number;
  /** Upstream connection attempts that failed (refused / reset) and were tried again. */
  connectRetries: number;
  /** Upstream TLS connections opened, and open now. */
  upstreamConnectionsOpened: number;
  upstreamConnectionsOpen: number;
  /** Agent connections open now. */
  agentConnectionsOpen: number;
  /** Tokens the egress obtained from the token endpoint. */
  tokensFetched: number;
  /** Requests refused or failed here, by reason. */
  failures: Record<string, number>;
}

export interface EgressSidecar {
  /** Bound agent-facing endpoint (the real port when 0 was asked). */
  endpoint: Endpoint;
  /** `http://HOST:PORT` for TCP, `unix:/path` otherwise. */
  url: string;
  metrics: MetricsServer | undefined;
  stats: EgressStats;
  registry: Registry;
  logger: Logger;
  /** Live internal state sizes (for tests and monitoring): all of them fall back when connections close. */
  state(): EgressState;
  /** Stop accepting, drain in-flight requests (up to `drainTimeoutMs`), close upstream connections. */
  close(): Promise<void>;
}

/** Sizes of the egress's per-connection state. */
export interface EgressState {
  /** Upstream TLS connections with proof state (exporter + proof cache). */
  connectionStates: number;
  /** Proofs cached over all those connections. */
  cachedProofs: number;
  /** Upstream HTTP/2 sessions held by the pools. */
  upstreamSessions: number;
  /** Agent connections / h2c sessions open, and requests in flight. */
  agentConnections: number;
  agentSessions: number;
  activeRequests: number;
}

type AgentRequest = IncomingMessage | Http2ServerRequest;
type AgentResponse = ServerResponse | Http2ServerResponse;

interface ResolvedRoute {
  name: string;
  origin: URL;
  basePath: string;
  audiences: readonly string[];
  egressToken: boolean;
  scope: string | undefined;
  pool: UpstreamPool;
}

interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  sentProof: string | undefined;
  abort(): void;
}

type RequestBody = { kind: 'buffered'; data: Buffer } | { kind: 'stream'; source: AgentRequest };

/** One request to send upstream; `rejected` names a proof the upstream refused (never reused). */
interface Outbound {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  body: RequestBody;
  token: string | undefined;
  rejected?: string | undefined;
  /** Aborted when the agent goes away: an upstream request still waiting for its response is cancelled. */
  signal?: AbortSignal | undefined;
}

/** Local document for deferred key binding (`tmb`); answered by the egress itself. */
export const DISCOVERY_PATH = '/.well-known/tether-egress';
const RETRYABLE = new Set(['use_session_binding', 'invalid_proof']);
const PROOF_HEADER_LOWER = PROOF_HEADER.toLowerCase();
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/**
 * Largest agent request header section, in bytes, on both agent transports (Node's HTTP/1.1
 * default). h2c would otherwise take 64 KiB, or more before the agent acknowledges SETTINGS, and
 * forward it to an upstream that refuses it: the agent would get a 502 blaming the upstream.
 */
const AGENT_MAX_HEADER_BYTES = 16 * 1024;

class EgressError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** An upstream failure where the request was certainly not processed, so it can be sent again. */
class UnprocessedError extends Error {}

/** The upstream connection could not be opened (refused / reset before TLS completed): nothing was sent. */
class ConnectError extends UnprocessedError {}

/** The agent went away (hung up or reset its stream) before its request was answered. */
class AgentGoneError extends Error {}

/**
 * Abort a response to the agent that has already started, so the agent sees it cut off and never
 * complete: an h2c stream is reset with INTERNAL_ERROR (`destroy()` without an error would send
 * RST_STREAM NO_ERROR, which reads as a clean end), an HTTP/1.1 connection is closed.
 */
function abortResponse(res: AgentResponse): void {
  if ('stream' in res) {
    if (!res.stream.destroyed) res.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
  } else res.destroy();
}

/**
 * The upstream connection died after the request was (maybe) sent but before any response byte
 * arrived: safe to send again only for an idempotent method.
 */
class LostError extends Error {}

function unprocessed(error: unknown): UnprocessedError {
  return new UnprocessedError(error instanceof Error ? error.message : String(error), { cause: error });
}

/** Connection attempt failures worth trying again (the upstream restarting), unlike certificate or timeout errors. */
const TRANSIENT_CONNECT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

function connectFailure(error: Error): Error {
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && TRANSIENT_CONNECT.has(code) ? new ConnectError(error.message, { cause: error }) : error;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * How long an upstream connection whose HTTP/2 session has closed gracefully (GOAWAY sent, every
 * stream done, our FIN sent) waits for the server to close its side before it is destroyed. Node
 * otherwise keeps a half-open socket, with its session and proof state, until the peer closes it.
 */
const UPSTREAM_CLOSE_GRACE_MS = 1000;

type Connection = { kind: 'h2'; session: ClientHttp2Session; socket: TLSSocket } | { kind: 'h1' };

/** One mTLS destination: an HTTP/2 session when the server speaks h2, otherwise a keep-alive HTTP/1.1 pool. */
class UpstreamPool {
  #mode: 'probe' | 'h2' | 'h1' = 'probe';
  #current: Promise<Connection> | undefined;
  #live: ClientHttp2Session | undefined;
  #agent: HttpsAgent | undefined;
  readonly sessions = new Set<ClientHttp2Session>();
  #closed = false;

  constructor(
    readonly origin: URL,
    private readonly tls: ConnectionOptions,
    private readonly signer: ConnectionProofSigner,
    private readonly stats: EgressStats,
    private readonly gauge: () => void,
    private readonly log: Logger,
    private readonly connectTimeoutMs: number,
  ) {}

  get mode(): string {
    return this.#mode;
  }

  #host(): string {
    return this.origin.hostname.replace(/^\[|\]$/g, '');
  }

  #servername(): Record<string, string> {
    const host = this.#host();
    return isIP(host) === 0 ? { servername: host } : {};
  }

  #opened(socket: TLSSocket): void {
    this.stats.upstreamConnectionsOpened++;
    this.stats.upstreamConnectionsOpen++;
    this.gauge();
    this.signer.attach(socket, () => {
      this.stats.upstreamConnectionsOpen--;
      this.gauge();
    });
    this.log.debug({ upstream: this.origin.origin, alpn: socket.alpnProtocol, tls: socket.getProtocol() }, 'upstream connection opened');
  }

  acquire(): Promise<Connection> {
    if (this.#closed) return Promise.reject(new Error('egress is shutting down'));
    if (this.#mode === 'h1') return Promise.resolve({ kind: 'h1' });
    if (this.#current !== undefined && this.#live !== undefined && (this.#live.closed || this.#live.destroyed)) this.#current = undefined;
    if (this.#current !== undefined) return this.#current;
    this.#live = undefined;
    const pending = new Promise<Connection>((resolve, reject) => {
      const socket = tlsConnect({
        ...this.tls,
        ...this.#servername(),
        host: this.#host(),
        port: Number(this.origin.port || 443),
        ALPNProtocols: this.#mode === 'h2' ? ['h2'] : ['h2', 'http/1.1'],
      });
      socket.setNoDelay(true);
      socket.setTimeout(this.connectTimeoutMs, () => socket.destroy(new Error('upstream connect timed out')));
      const fail = (error: Error) => {
        if (this.#current === pending) this.#current = undefined;
        reject(connectFailure(error));
      };
      socket.once('error', fail);
      socket.once('secureConnect', () => {
        socket.setTimeout(0);
        socket.off('error', fail);
        if (socket.alpnProtocol !== 'h2') {
          // The server speaks HTTP/1.1 only: remember that and use a keep-alive pool from now on.
          this.#mode = 'h1';
          this.#current = undefined;
          socket.destroy();
          resolve({ kind: 'h1' });
          return;
        }
        this.#mode = 'h2';
        this.#opened(socket);
        const session = http2Connect(this.origin.origin, { createConnection: () => socket });
        this.sessions.add(session);
        this.#live = session;
        const forget = () => {
          if (this.#current === pending) this.#current = undefined;
        };
        session.on('error', (error) => this.log.warn({ upstream: this.origin.origin, err: error.message }, 'upstream session error'));
        session.on('goaway', (code: number, lastStreamID: number) => {
          // No new requests on it. Close it ourselves once the streams the GOAWAY covers (ids up to
          // lastStreamID) are done, rather than wait for the server to close the connection. (Node
          // does the same for NO_ERROR; any other code destroys the session at once.)
          forget();
          if (this.#live === session) this.#live = undefined;
          this.log.debug({ upstream: this.origin.origin, code, lastStreamID }, 'upstream GOAWAY: closing the connection once its streams are done');
          if (code === h2.NGHTTP2_NO_ERROR && !session.closed && !session.destroyed) session.close();
        });
        session.on('close', () => {
          forget();
          this.sessions.delete(session);
        });
        socket.on('close', forget);
        // Our side of the connection has ended (the session closed gracefully): a server that does not
        // close its side in turn does not keep the socket, the session and its proof state alive.
        socket.once('finish', () => {
          const timer = setTimeout(() => socket.destroy(), UPSTREAM_CLOSE_GRACE_MS).unref();
          socket.once('close', () => clearTimeout(timer));
        });
        resolve({ kind: 'h2', session, socket });
      });
    });
    this.#current = pending;
    pending.catch(() => undefined);
    return pending;
  }

  agent(): HttpsAgent {
    this.#agent ??= new HttpsAgent({ ...this.tls, ...this.#servername(), keepAlive: true, ALPNProtocols: ['http/1.1'] });
    return this.#agent;
  }

  /** Make sure an HTTP/1.1 pool socket is secured and registered before a proof is made for it. */
  ready(socket: TLSSocket): Promise<void> {
    if (this.signer.known(socket)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onSecure = () => {
        socket.off('error', reject);
        this.#opened(socket);
        resolve();
      };
      if ((socket as { _secureEstablished?: boolean })._secureEstablished === true) onSecure();
      else {
        socket.once('secureConnect', onSecure);
        socket.once('error', reject);
      }
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#agent?.destroy();
    await Promise.all(
      [...this.sessions].map((s) => new Promise<void>((resolve) => (s.closed ? resolve() : s.close(() => resolve())))),
    );
  }

  destroy(): void {
    for (const s of this.sessions) s.destroy();
  }
}

function decodeAudience(token: string): string[] | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as { aud?: unknown };
    if (typeof payload.aud === 'string') return [payload.aud];
    if (Array.isArray(payload.aud) && payload.aud.every((a) => typeof a === 'string')) return payload.aud as string[];
    return [];
  } catch {
    return undefined;
  }
}

function resolveRoutes(config: EgressConfig, make: (origin: URL) => UpstreamPool): Map<string, ResolvedRoute> {
  if (!Array.isArray(config.routes) || config.routes.length === 0) throw new SidecarConfigError('at least one --route NAME=https://upstream is required');
  const routes = new Map<string, ResolvedRoute>();
  for (const r of config.routes) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(r.name)) throw new SidecarConfigError(`route name ${JSON.stringify(r.name)} must be letters, digits, '.', '_' or '-'`);
    if (routes.has(r.name.toLowerCase())) throw new SidecarConfigError(`route ${r.name} is configured twice`);
    let url: URL;
    try {
      url = new URL(r.upstream);
    } catch {
      throw new SidecarConfigError(`route ${r.name}: upstream is not a URL`);
    }
    if (url.protocol !== 'https:') throw new SidecarConfigError(`route ${r.name}: upstream must be https:// (the egress speaks mTLS only)`);
    if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      throw new SidecarConfigError(`route ${r.name}: upstream must not carry credentials, a query or a fragment`);
    }
    const audiences = r.audience === undefined ? [url.origin] : typeof r.audience === 'string' ? [r.audience] : [...r.audience];
    if (audiences.length === 0 || audiences.some((a) => a === '')) throw new SidecarConfigError(`route ${r.name}: empty audience`);
    if (r.egressToken === true && config.tokenEndpoint === undefined) throw new SidecarConfigError(`route ${r.name}: egress tokens need --token-endpoint`);
    routes.set(r.name.toLowerCase(), {
      name: r.name,
      origin: new URL(url.origin),
      basePath: url.pathname.replace(/\/$/, ''),
      audiences,
      egressToken: r.egressToken === true,
      scope: r.scope,
      pool: make(new URL(url.origin)),
    });
  }
  return routes;
}

/** Start the egress sidecar. Throws {@link SidecarConfigError} on bad configuration. */
export async function startEgress(config: EgressConfig): Promise<EgressSidecar> {
  const listenAt = typeof config.listen === 'string' ? parseEndpoint(config.listen, '--listen') : config.listen;
  if (listenAt.kind === 'tcp' && !isLoopback(listenAt.host)) {
    throw new SidecarConfigError(`--listen must be a loopback address or a Unix socket (got ${listenAt.host}): anyone who reaches the egress can use its key`);
  }
  const metricsAt = config.metricsListen === undefined ? undefined : typeof config.metricsListen === 'string' ? parseEndpoint(config.metricsListen, '--metrics-listen') : config.metricsListen;
  const tokenPolicy = config.tokenPolicy ?? 'audience';
  if (tokenPolicy !== 'audience' && tokenPolicy !== 'none') throw new SidecarConfigError('--token-policy must be audience or none');
  const retryBufferBytes = config.retryBufferBytes ?? 1024 * 1024;
  if (!Number.isInteger(retryBufferBytes) || retryBufferBytes < 0) throw new SidecarConfigError('--retry-buffer must be a whole number of bytes');
  const refreshAfter = config.proofRefreshAfter ?? 3000;
  if (!(refreshAfter > 0)) throw new SidecarConfigError('proofRefreshAfter must be positive');
  const drainTimeoutMs = config.drainTimeoutMs ?? 10_000;
  const connectRetryMs = config.connectRetryMs ?? 2000;
  if (!(connectRetryMs >= 0)) throw new SidecarConfigError('connectRetryMs must not be negative');
  const log = createLogger('egress', config.log);

  const stats: EgressStats = { requests: 0, proofsSigned: 0, proofCacheHits: 0, retries: 0, connectionRetries: 0, connectRetries: 0, upstreamConnectionsOpened: 0, upstreamConnectionsOpen: 0, agentConnectionsOpen: 0, tokensFetched: 0, failures: {} };
  const registry = new Registry();
  const requestsTotal = new Counter({ name: 'tether_egress_requests_total', help: 'Agent requests by route and status', labelNames: ['route', 'status'], registers: [registry] });
  const proofsSigned = new Counter({ name: 'tether_egress_proofs_signed_total', help: 'Session-Binding Proofs signed', registers: [registry] });
  const cacheHits = new Counter({ name: 'tether_egress_proof_cache_hits_total', help: 'Requests that reused a cached proof', registers: [registry] });
  const retries = new Counter({ name: 'tether_egress_retries_total', help: 'Requests retried once on a fresh proof', registers: [registry] });
  const connectionRetries = new Counter({ name: 'tether_egress_connection_retries_total', help: 'Requests sent again on a new upstream connection after the previous one went away without a response', registers: [registry] });
  new Gauge({
    name: 'tether_egress_proofs_cached',
    help: 'Proofs cached over all open upstream connections',
    registers: [registry],
    collect() {
      let n = 0;
      for (const state of signer.live) n += state.proofs.size;
      this.set(n);
    },
  });
  const failures = new Counter({ name: 'tether_egress_failures_total', help: 'Requests refused or failed by the egress, by reason', labelNames: ['reason'], registers: [registry] });
  const upstreamOpen = new Gauge({ name: 'tether_egress_upstream_connections', help: 'Open upstream mTLS connections', registers: [registry] });
  const agentOpen = new Gauge({ name: 'tether_egress_agent_connections', help: 'Open agent connections', registers: [registry] });
  new Counter({
    name: 'tether_egress_upstream_connections_opened_total',
    help: 'Upstream mTLS connections opened',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.upstreamConnectionsOpened);
    },
  });
  new Counter({
    name: 'tether_egress_tokens_fetched_total',
    help: 'Access tokens the egress obtained from the token endpoint',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.tokensFetched);
    },
  });
  new Gauge({
    name: 'tether_signatures_per_request',
    help: 'Proofs signed divided by requests (1 = one signature per request, like DPoP; lower = amortized per connection)',
    registers: [registry],
    collect() {
      this.set(stats.requests === 0 ? 0 : stats.proofsSigned / stats.requests);
    },
  });
  const fail = (reason: string) => {
    stats.failures[reason] = (stats.failures[reason] ?? 0) + 1;
    failures.inc({ reason });
  };

  let signer: ConnectionProofSigner;
  try {
    signer = new ConnectionProofSigner({
      cert: config.cert,
      key: config.key,
      preferRs256: config.preferRs256 === true,
      tlsVersions: config.allowTls12 === true ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'],
      refreshAfter,
      onSign: () => {
        stats.proofsSigned++;
        proofsSigned.inc();
      },
      onHit: () => {
        stats.proofCacheHits++;
        cacheHits.inc();
      },
    });
  } catch (error) {
    throw new SidecarConfigError(error instanceof Error ? error.message : String(error));
  }
  const tls: ConnectionOptions = {
    cert: config.cert,
    key: config.key,
    ...(config.ca === undefined ? {} : { ca: config.ca }),
    minVersion: config.allowTls12 === true ? 'TLSv1.2' : 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  };
  const routes = resolveRoutes(
    config,
    (origin) => new UpstreamPool(origin, tls, signer, stats, () => upstreamOpen.set(stats.upstreamConnectionsOpen), log, config.connectTimeoutMs ?? 10_000),
  );

  const tokenSource = config.tokenEndpoint === undefined ? undefined : new TokenSource(config.tokenEndpoint, tls);
  const cnf = sessionBoundConfirmation(new X509Certificate(config.cert));
  let draining = false;
  const tracker = new ConnectionTracker();

  function route(req: AgentRequest): { route: ResolvedRoute; path: string } {
    // Dot segments could climb out of a route's base path at the upstream; refuse them.
    const rawPath = (req.url ?? '/').split('?')[0] as string;
    if (/(^|\/)(\.|%2e){1,2}(\/|$)/i.test(rawPath)) throw new EgressError(400, 'invalid_request', 'dot_segment', 'paths with . or .. segments are not forwarded');
    const authority = ((req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '').toLowerCase();
    const hostname = authority.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    const url = req.url ?? '/';
    const byHost = routes.get(hostname);
    if (byHost !== undefined) return { route: byHost, path: byHost.basePath + (url.startsWith('/') ? url : `/${url}`) };
    const m = /^\/([^/?#]+)(.*)$/.exec(url);
    const byPath = m === null ? undefined : routes.get((m[1] as string).toLowerCase());
    if (byPath === undefined) throw new EgressError(403, 'destination_not_allowed', 'destination_not_allowed', 'no route for this destination; only configured routes are reachable');
    let rest = m?.[2] ?? '';
    if (rest === '' || rest.startsWith('?')) rest = `/${rest}`;
    return { route: byPath, path: byPath.basePath + rest };
  }

  function bearerToken(req: AgentRequest): { token: string | undefined; authorization: string | undefined } {
    const values = rawValues(req.rawHeaders, 'authorization');
    if (values.length > 1) throw new EgressError(400, 'invalid_request', 'duplicate_authorization', 'more than one Authorization field');
    const authorization = values[0];
    if (authorization === undefined) return { token: undefined, authorization: undefined };
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
    if (m === null) {
      if (/^Bearer\b/i.test(authorization)) throw new EgressError(400, 'invalid_request', 'malformed_bearer', 'malformed Bearer credentials');
      return { token: undefined, authorization };
    }
    return { token: m[1] as string, authorization };
  }

  function checkPolicy(target: ResolvedRoute, token: string | undefined): void {
    if (token === undefined || tokenPolicy === 'none') return;
    const aud = decodeAudience(token);
    if (aud === undefined) throw new EgressError(403, 'token_not_allowed', 'opaque_token', 'the token is not a JWT, so its audience cannot be checked against this route');
    if (!aud.some((a) => target.audiences.includes(a))) {
      throw new EgressError(403, 'token_not_allowed', 'audience_mismatch', `the token's audience does not include this route's audience`);
    }
  }

  /** Buffer small declared bodies (retryable); stream everything else. */
  async function readBody(req: AgentRequest): Promise<RequestBody> {
    const declared = req.headers['content-length'];
    const isH2 = 'stream' in req;
    const noBody = isH2 ? req.stream.endAfterHeaders || declared === '0' : declared === undefined && req.headers['transfer-encoding'] === undefined;
    if (noBody || declared === '0') return { kind: 'buffered', data: Buffer.alloc(0) };
    if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) <= retryBufferBytes) {
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
      } catch (error) {
        throw new AgentGoneError(`the agent's request body was interrupted: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      // An h2c stream reset mid-body can end the request early instead of failing it.
      if ('stream' in req && req.stream.rstCode !== undefined && req.stream.rstCode !== h2.NGHTTP2_NO_ERROR) throw new AgentGoneError('the agent reset its stream');
      const data = Buffer.concat(chunks);
      if (data.length !== Number(declared)) throw new AgentGoneError(`the agent sent ${data.length} of ${declared} body bytes`);
      return { kind: 'buffered', data };
    }
    return { kind: 'stream', source: req };
  }

  async function sendH2(conn: Extract<Connection, { kind: 'h2' }>, authority: string, outbound: Outbound): Promise<UpstreamResponse> {
    const { method, path, headers, body, token, rejected, signal } = outbound;
    let sentProof: string | undefined;
    try {
      sentProof = token === undefined ? undefined : await signer.proofFor(conn.socket, token, rejected);
    } catch (error) {
      // The connection closed before its exporter could be read: nothing was sent.
      if (conn.socket.destroyed || conn.session.closed || conn.session.destroyed) throw unprocessed(error);
      throw error;
    }
    const all: OutgoingHttpHeaders = {
      ...headers,
      [h2.HTTP2_HEADER_METHOD]: method,
      [h2.HTTP2_HEADER_PATH]: path,
      [h2.HTTP2_HEADER_SCHEME]: 'https',
      [h2.HTTP2_HEADER_AUTHORITY]: authority,
    };
    if (sentProof !== undefined) all[PROOF_HEADER_LOWER] = sentProof;
    const empty = body.kind === 'buffered' && body.data.length === 0;
    let stream: ClientHttp2Stream;
    try {
      // The agent leaving aborts `signal`: the stream is then reset with CANCEL (the ingress cancels
      // the application's request). Unlike stream.close(CANCEL), this sends no END_STREAM first, which
      // would deliver a cut-off request body upstream as a complete one.
      stream = conn.session.request(all, signal === undefined ? { endStream: empty } : { endStream: empty, signal });
    } catch (error) {
      // The session was closing (GOAWAY) or gone: nothing was sent.
      throw unprocessed(error);
    }
    return new Promise((resolve, reject) => {
      let responded = false;
      // The agent's body failed: reset the stream without END_STREAM (INTERNAL_ERROR).
      const cancel = () => stream.destroy(new Error("the agent's request body was interrupted"));
      stream.on('error', (error) => {
        if (responded) return;
        // The 'error' comes before 'close': REFUSED_STREAM (also how a GOAWAY's unprocessed streams
        // end) must be told from other resets here too.
        reject(stream.rstCode === h2.NGHTTP2_REFUSED_STREAM ? unprocessed(error) : new LostError(error.message, { cause: error }));
      });
      stream.once('close', () => {
        if (responded) return;
        const error = new Error(`upstream stream closed before a response (code ${stream.rstCode})`);
        // REFUSED_STREAM guarantees the server did not process the request (RFC 9113 section 8.7);
        // any other close before a response may or may not have been processed.
        reject(stream.rstCode === h2.NGHTTP2_REFUSED_STREAM ? unprocessed(error) : new LostError(error.message, { cause: error }));
      });
      stream.once('response', (h) => {
        responded = true;
        const status = Number(h[h2.HTTP2_HEADER_STATUS]);
        const out: IncomingHttpHeaders = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v as string | string[];
        resolve({
          status,
          headers: out,
          body: stream,
          sentProof,
          abort: () => {
            if (!stream.destroyed) stream.close(h2.NGHTTP2_CANCEL);
          },
        });
      });
      if (!empty) {
        if (body.kind === 'buffered') stream.end(body.data);
        else pipeBody(body.source, stream, cancel);
      }
    });
  }

  function sendH1(target: ResolvedRoute, outbound: Outbound): Promise<UpstreamResponse> {
    const { method, path, headers, body, token, rejected, signal } = outbound;
    return new Promise((resolve, reject) => {
      let sentProof: string | undefined;
      let secured = false;
      let responded = false;
      const req = httpsRequest({
        protocol: 'https:',
        host: target.origin.hostname.replace(/^\[|\]$/g, ''),
        port: Number(target.origin.port || 443),
        method,
        path,
        headers: { ...headers, host: target.origin.host },
        agent: target.pool.agent(),
      });
      const cancel = () => req.destroy(new AgentGoneError('the agent went away'));
      if (signal?.aborted === true) cancel();
      else signal?.addEventListener('abort', cancel, { once: true });
      req.once('close', () => signal?.removeEventListener('abort', cancel));
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (responded) return;
        if (!secured) reject(connectFailure(error)); // the connection never came up: nothing was sent
        // A kept-alive socket the server closed meanwhile: the request never reached it.
        else if (req.reusedSocket && error.code === 'ECONNRESET' && IDEMPOTENT.has(method)) reject(unprocessed(error));
        else reject(new LostError(error.message, { cause: error }));
      });
      req.once('socket', (raw) => {
        const socket = raw as TLSSocket;
        target.pool.ready(socket).then(
          async () => {
            secured = true;
            if (token !== undefined) {
              sentProof = await signer.proofFor(socket, token, rejected);
              req.setHeader(PROOF_HEADER, sentProof);
            }
            if (body.kind === 'buffered') req.end(body.data);
            else pipeBody(body.source, req, cancel);
          },
        ).catch((error: unknown) => req.destroy(error instanceof Error ? error : new Error(String(error))));
      });
      req.once('response', (res) => {
        responded = true;
        signal?.removeEventListener('abort', cancel);
        res.on('error', () => undefined);
        resolve({ status: res.statusCode ?? 502, headers: res.headers, body: res, sentProof, abort: () => req.destroy() });
      });
    });
  }

  async function send(target: ResolvedRoute, outbound: Outbound): Promise<UpstreamResponse> {
    const conn = await target.pool.acquire();
    return conn.kind === 'h2' ? sendH2(conn, target.origin.host, outbound) : sendH1(target, outbound);
  }

  /**
   * `send` with the connection-level retry rule (README "Retry"): a refused / reset connection
   * attempt is tried again with backoff for up to `connectRetryMs` (nothing was sent, so any body
   * qualifies); a request whose connection went away before any response byte is sent once more on
   * a new connection when its body is buffered and it is provably unprocessed (GOAWAY /
   * REFUSED_STREAM / a dead kept-alive socket) or its method is idempotent.
   */
  async function sendResilient(target: ResolvedRoute, outbound: Outbound): Promise<UpstreamResponse> {
    const { method, body } = outbound;
    const deadline = Date.now() + connectRetryMs;
    let delay = 25;
    let resent = false;
    const aborted = () => outbound.signal?.aborted === true;
    for (;;) {
      if (aborted()) throw new AgentGoneError('the agent went away');
      try {
        return await send(target, outbound);
      } catch (error) {
        if (aborted()) throw new AgentGoneError('the agent went away', { cause: error });
        if (error instanceof ConnectError && Date.now() + delay <= deadline) {
          stats.connectRetries++;
          log.debug({ route: target.name, err: error.message, delay }, 'upstream connection attempt failed; trying again');
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 250);
          continue;
        }
        const again = !resent && body.kind === 'buffered' && !(error instanceof ConnectError) && (error instanceof UnprocessedError || (error instanceof LostError && IDEMPOTENT.has(method)));
        if (!again) throw error;
        resent = true;
        stats.connectionRetries++;
        connectionRetries.inc();
        log.debug({ route: target.name, err: (error as Error).message }, 'upstream connection went away before a response; sending again on a new connection');
      }
    }
  }

  function isDiscovery(req: AgentRequest): boolean {
    const authority = ((req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '').toLowerCase();
    const hostname = authority.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    return !routes.has(hostname) && (req.url ?? '').split('?')[0] === DISCOVERY_PATH;
  }

  /** What an agent needs for deferred key binding: the `cnf` (and `tmb` parameter value) of the egress certificate. */
  function discovery(res: AgentResponse): void {
    const text = JSON.stringify({
      cnf,
      tmb: JSON.stringify(cnf),
      routes: [...routes.values()].map((r) => ({ name: r.name, audience: r.audiences, egress_token: r.egressToken })),
    });
    (res as ServerResponse).writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)) });
    res.end(text);
  }

  function refuse(res: AgentResponse, status: number, error: string, description: string): void {
    if (res.headersSent) {
      abortResponse(res);
      return;
    }
    const text = JSON.stringify({ error, error_description: description });
    (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)) });
    res.end(text);
  }

  async function handle(req: AgentRequest, res: AgentResponse): Promise<void> {
    stats.requests++;
    tracker.request(res);
    let routeName = '-';
    let agentGone = false;
    const gone = new AbortController();
    // Only a close before the response was relayed in full means the agent left. Aborting after a
    // complete response would reset an upstream stream that has not quite closed yet: one RST_STREAM
    // per request trips the upstream's HTTP/2 rapid-reset limit (nghttp2: 1000, then 33/s), which
    // answers with GOAWAY INTERNAL_ERROR and stops reading the connection (the restart-test hang).
    let relayed = false;
    res.once('close', () => {
      if (relayed) return;
      agentGone = true;
      gone.abort();
    });
    res.once('finish', () => requestsTotal.inc({ route: routeName, status: String(res.statusCode) }));
    const started = Date.now();
    try {
      if (draining) throw new EgressError(503, 'shutting_down', 'shutting_down', 'the egress is shutting down');
      if (isDiscovery(req)) {
        routeName = 'discovery';
        discovery(res);
        return;
      }
      const { route: target, path } = route(req);
      routeName = target.name;
      let { token, authorization } = bearerToken(req);
      let ownToken = false;
      if (authorization === undefined && target.egressToken && tokenSource !== undefined) {
        const before = tokenSource.fetches;
        try {
          token = await tokenSource.get(target.audiences[0] as string, target.scope);
        } catch (error) {
          log.warn({ route: target.name, err: error instanceof Error ? error.message : String(error) }, 'could not obtain a token');
          throw new EgressError(502, 'token_unavailable', 'token_fetch', 'the egress could not obtain an access token for this route');
        } finally {
          stats.tokensFetched += tokenSource.fetches - before;
        }
        authorization = `Bearer ${token}`;
        ownToken = true;
      }
      try {
        if (!ownToken) checkPolicy(target, token);
      } catch (error) {
        if (error instanceof EgressError) log.warn({ route: target.name, reason: error.reason, method: req.method, path }, 'policy violation: request refused');
        throw error;
      }
      if (rawValues(req.rawHeaders, PROOF_HEADER_LOWER).length > 0) log.info({ route: target.name }, 'dropped a Session-Binding-Proof sent by the agent');
      const headers = endToEndHeaders(req.headers, { drop: new Set([PROOF_HEADER_LOWER, 'authorization']) });
      if (authorization !== undefined) headers.authorization = authorization;
      const method = (req.method ?? 'GET').toUpperCase();
      const body = await readBody(req);
      let upstream: UpstreamResponse;
      try {
        upstream = await sendResilient(target, { method, path, headers, body, token, signal: gone.signal });
        if (upstream.status === 401 && token !== undefined && upstream.sentProof !== undefined) {
          const error = parseWwwAuthenticate(upstream.headers['www-authenticate']).find((c) => c.scheme === 'bearer')?.params.error;
          if (error !== undefined && RETRYABLE.has(error)) {
            if (body.kind === 'buffered') {
              stats.retries++;
              retries.inc();
              log.info({ route: target.name, error }, 'binding refused upstream; retrying once on a fresh proof');
              upstream.body.resume();
              upstream = await sendResilient(target, { method, path, headers, body, token, rejected: upstream.sentProof, signal: gone.signal });
            } else {
              fail('binding_refused_streamed_body');
            }
          }
        }
      } catch (error) {
        if (error instanceof EgressError || error instanceof AgentGoneError) throw error;
        log.warn({ route: target.name, err: error instanceof Error ? error.message : String(error) }, 'upstream request failed');
        throw new EgressError(502, 'upstream_unavailable', 'upstream_error', 'the upstream connection failed');
      }
      if (ownToken && upstream.status === 401 && token !== undefined) tokenSource?.invalidate(target.audiences[0] as string, target.scope, token);
      if (agentGone) {
        // The agent hung up while we waited for the upstream: cancel, do not relay.
        upstream.abort();
        return;
      }
      relay(upstream, res, target.name, method, gone.signal, () => (relayed = true));
      log.debug({ route: target.name, method, path, status: upstream.status, ms: Date.now() - started }, 'request');
    } catch (error) {
      if (error instanceof AgentGoneError || agentGone) {
        // Nobody to answer: the upstream request (if any) was cancelled.
        fail('agent_gone');
        log.debug({ route: routeName, err: error instanceof Error ? error.message : String(error) }, 'the agent went away before the response');
        if (!res.headersSent) res.destroy();
        return;
      }
      if (error instanceof EgressError) {
        fail(error.reason);
        refuse(res, error.status, error.error, error.message);
      } else {
        fail('internal');
        log.error({ err: error instanceof Error ? error.message : String(error) }, 'internal error');
        refuse(res, 500, 'internal_error', 'the egress failed');
      }
    }
  }

  function relay(upstream: UpstreamResponse, res: AgentResponse, routeName: string, method: string, gone: AbortSignal, onComplete: () => void): void {
    const headers = endToEndHeaders(upstream.headers);
    (res as ServerResponse).writeHead(upstream.status, headers);
    if ('flushHeaders' in res) res.flushHeaders();
    // The response is relayed as complete only on its 'end' with the declared length, if any. A
    // reset HTTP/2 stream (RST_STREAM CANCEL / NO_ERROR raise no error) can close without 'end' or
    // 'end' early: the agent then sees the response cut off (HTTP/1.1 connection closed, h2c stream
    // reset), never complete.
    let complete = false;
    let failed = false;
    const interrupted = () => {
      if (complete || failed) return;
      failed = true;
      if (gone.aborted) return; // the agent left and we cancelled the stream: not an upstream failure
      fail('upstream_reset');
      log.warn({ route: routeName }, 'upstream response interrupted');
      abortResponse(res);
    };
    const bodiless = method === 'HEAD' || upstream.status === 204 || upstream.status === 304 || upstream.status < 200;
    const declared = bodiless ? Number.NaN : Number(upstream.headers['content-length'] ?? Number.NaN);
    let received = 0;
    if (Number.isSafeInteger(declared)) upstream.body.on('data', (chunk: Buffer) => (received += chunk.length));
    upstream.body.on('error', interrupted);
    upstream.body.once('close', interrupted);
    upstream.body.once('end', () => {
      if (Number.isSafeInteger(declared) && received !== declared) return interrupted();
      complete = true;
      onComplete();
      res.end();
    });
    // The agent went away before the upstream response was complete: cancel it upstream. (Not
    // 'finish' / writableFinished: Http2ServerResponse reports those on a reset stream too.)
    res.once('close', () => {
      if (!complete) upstream.abort();
    });
    upstream.body.pipe(res as NodeJS.WritableStream, { end: false });
  }

  const onRequest = (req: AgentRequest, res: AgentResponse) => {
    if (resetOversizedHttp2Request(req, AGENT_MAX_HEADER_BYTES)) {
      fail('header_too_large');
      return;
    }
    void handle(req, res);
  };
  // Agent connections are local: no request timeout, so long uploads and streams are not cut.
  const h1 = createHttpServer({ requestTimeout: 0, maxHeaderSize: AGENT_MAX_HEADER_BYTES }, onRequest);
  const h2c = createH2cServer({ settings: { maxHeaderListSize: AGENT_MAX_HEADER_BYTES } }, onRequest);
  h2c.on('session', (s) => tracker.trackSession(s));
  const front = createNetServer((socket: Socket) => {
    tracker.track(socket, (n) => {
      stats.agentConnectionsOpen = n;
      agentOpen.set(n);
    });
    socket.on('error', () => undefined);
    // The http / http2 servers would set this on sockets they accept themselves; these are handed
    // over. Without it, Nagle + delayed ACK hold back the body written after the headers (~40 ms).
    socket.setNoDelay(true);
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, HTTP2_PREFACE.length);
      const prefix = seen.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (prefix && seen.length < HTTP2_PREFACE.length) return; // could still be either: wait for more
      socket.off('data', onData);
      socket.pause();
      socket.unshift(seen);
      if (prefix) h2c.emit('connection', socket);
      else {
        h1.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });
  const endpoint = await listen(front, listenAt, config.socketMode ?? 0o600).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on ${describeEndpoint(listenAt)}: ${error.code ?? error.message}`, { cause: error });
  });
  let metrics: MetricsServer | undefined;
  try {
    metrics = metricsAt === undefined ? undefined : await startMetricsServer(registry, metricsAt, () => !draining);
  } catch (error) {
    await closeServer(front);
    throw new Error(`cannot listen on ${describeEndpoint(metricsAt as Endpoint)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
  const url = endpoint.kind === 'tcp' ? `http://${describeEndpoint(endpoint)}` : describeEndpoint(endpoint);
  log.info({ listen: url, routes: [...routes.values()].map((r) => ({ name: r.name, upstream: r.origin.origin + r.basePath, audience: r.audiences })), metrics: metrics?.url }, 'egress ready');

  let closing: Promise<void> | undefined;
  return {
    endpoint,
    url,
    metrics,
    stats,
    registry,
    logger: log,
    state() {
      let cachedProofs = 0;
      for (const state of signer.live) cachedProofs += state.proofs.size;
      let upstreamSessions = 0;
      for (const r of routes.values()) upstreamSessions += r.pool.sessions.size;
      return {
        connectionStates: signer.live.size,
        cachedProofs,
        upstreamSessions,
        agentConnections: tracker.sockets.size,
        agentSessions: tracker.sessions.size,
        activeRequests: tracker.active,
      };
    },
    close() {
      closing ??= (async () => {
        draining = true;
        log.info('egress draining');
        const stopped = closeServer(front);
        await tracker.drain(drainTimeoutMs, () => h1.closeIdleConnections());
        await stopped;
        const pools = [...routes.values()].map((r) => r.pool);
        await Promise.race([Promise.all(pools.map((p) => p.close())), new Promise((r) => setTimeout(r, 1000))]);
        for (const p of pools) p.destroy();
        await metrics?.close();
        log.info('egress stopped');
      })();
      return closing;
    },
  };
}
