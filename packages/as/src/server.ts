/**
 * The HTTP layer: one Fastify instance per listener (HTTP/2 with HTTP/1.1 fallback over TLS).
 * The mutual-TLS listener requests a client certificate (without rejecting unverified ones, so
 * self-signed certificates reach `self_signed_tls_client_auth`); the optional plain-TLS listener
 * does not, and metadata then lists the mTLS listener in `mtls_endpoint_aliases` (RFC 8705
 * section 5).
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { constants as http2Constants, type Http2ServerRequest, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { pino, type Logger } from 'pino';
import { PROOF_HEADER, sessionBoundTlsOptions, type TlsVersion } from '@tether/core';
import { DPOP_HEADER } from '@tether/core/dpop';
import { hasUnreadBody, resetOversizedHttp2Request } from '@tether/core/node';
import {
  resolveConfig,
  resolveRegisteredClient,
  type AuthorizationServerConfig,
  type ClientMetadata,
  type ResolvedClient,
  type ResolvedConfig,
} from './config.js';
import { peerOf } from './connection.js';
import { DpopNonces } from './dpop-nonce.js';
import { AuthorizationEngine, PATHS, type Endpoint, type EngineUrls, type RequestInfo } from './engine.js';
import { OAuthError } from './errors.js';
import { clientErrorHandler, sendError, toOAuthError } from './http-errors.js';
import { FormParams } from './form.js';
import { KeyManager } from './keys.js';
import { createMetrics, type AsMetrics } from './metrics.js';
import { startOpsServer, type OpsServer, type Readiness } from '@tether/core/node';
import type { Store } from './store/contract.js';
import { openStore } from './store/open.js';
import { KeyEncryptionKey } from './store/seal.js';

export interface StartOptions {
  /** Directory that relative file names in `config` are resolved against (default: cwd). */
  baseDir?: string;
  /** Logger (default: pino at `config.logging.level`, to stdout). */
  logger?: Logger;
  /** Clock in epoch milliseconds (default `Date.now`); tests move it forward. */
  clock?: () => number;
  /**
   * Storage (default: the one `config.store` names, else SQLite in `config.dataDir`). A store given
   * here is opened by the server, and closed with it.
   */
  store?: Store;
  /** Collect Node process metrics too (default true). */
  defaultMetrics?: boolean;
  /**
   * Address of the operations listener (plain HTTP: `/metrics`, `/healthz`, `/readyz`); none by
   * default. It is up before the TLS listeners (ready: false, `starting`) and closed after them.
   */
  metricsListen?: { host: string; port: number };
}

export interface AuthorizationServer {
  /** The `iss` of every token and the metadata `issuer`. */
  readonly issuer: string;
  /** Base URL of the mutual-TLS listener. */
  readonly url: string;
  /** Base URL of the plain-TLS listener, when configured. */
  readonly plainUrl: string | undefined;
  readonly tokenEndpoint: string;
  readonly introspectionEndpoint: string;
  readonly revocationEndpoint: string;
  readonly jwksUri: string;
  readonly metadataUrl: string;
  /** `http://host:port` of the operations listener, when `metricsListen` was given. */
  readonly metricsUrl: string | undefined;
  readonly config: ResolvedConfig;
  readonly metrics: AsMetrics;
  readonly store: Store;
  readonly engine: AuthorizationEngine;
  /** RFC 8414 metadata document. */
  metadata(): Record<string, unknown>;
  /** Published JWK Set. */
  jwks(): { keys: Array<Record<string, unknown>> };
  /** Rotate the signing key now (the `next` key starts signing, the active key retires). */
  rotateSigningKey(): Promise<void>;
  /** Run scheduled maintenance now: rotation when due, pruning of expired keys and records. */
  runMaintenance(): Promise<void>;
  /** Register a client at run time (persisted in the store). Throws `ConfigError`. */
  registerClient(metadata: ClientMetadata): Promise<void>;
  unregisterClient(clientId: string): Promise<boolean>;
  /**
   * Whether to send traffic here (what `/readyz` answers): ready while every listener listens,
   * a signing key is active, the TLS certificate is within its validity and `close` was not
   * called. Otherwise a reason: `not_listening`, `no_signing_key`, `certificate_expired`,
   * `draining` (closing), `stopped`.
   */
  readiness(): Readiness;
  close(): Promise<void>;
}

type Listener = 'mtls' | 'plain';
type AnyRequest = FastifyRequest;

function kekOf(config: ResolvedConfig): KeyEncryptionKey | undefined {
  return config.keyEncryption === undefined ? undefined : KeyEncryptionKey.load(config.keyEncryption);
}

function isResolved(config: unknown): config is ResolvedConfig {
  return typeof config === 'object' && config !== null && 'clientCaCerts' in config && Array.isArray((config as ResolvedConfig).clientCaCerts);
}

/** The raw TLS socket of a request and the object that identifies its connection. */
function connectionOf(request: AnyRequest): { socket: TLSSocket; key: Parameters<typeof peerOf>[1] } {
  const raw = request.raw as IncomingMessage | Http2ServerRequest;
  const session = 'stream' in raw ? raw.stream?.session : undefined;
  if (session !== undefined) return { socket: session.socket as TLSSocket, key: session };
  return { socket: raw.socket as TLSSocket, key: raw.socket };
}

function rawHeaderValues(request: AnyRequest, name: string): string[] {
  const out: string[] = [];
  const raw = request.raw.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) out.push(raw[i + 1] as string);
  return out;
}

function baseUrl(address: AddressInfo, host: string, publicUrl: string | undefined): string {
  if (publicUrl !== undefined) return publicUrl.replace(/\/+$/, '');
  const h = host === '0.0.0.0' || host === '::' ? address.address : host;
  return `https://${isIP(h) === 6 ? `[${h}]` : h}:${address.port}`;
}

interface AppContext {
  engine: AuthorizationEngine;
  keys: KeyManager;
  metrics: AsMetrics;
  logger: Logger;
  tlsVersions: readonly TlsVersion[];
  config: ResolvedConfig;
}

function buildApp(ctx: AppContext, listener: Listener): { app: FastifyInstance; sockets: Set<Socket>; sessions: Set<ServerHttp2Session> } {
  const { config, engine, metrics } = ctx;
  const tls = sessionBoundTlsOptions({
    cert: config.tls.cert,
    key: config.tls.key,
    ...(listener === 'mtls' && config.clientCaPem.length > 0 ? { ca: config.clientCaPem } : {}),
    allowTls12: config.tls.allowTls12,
    rejectUnauthorized: false,
  });
  if (listener === 'plain') tls.requestCert = false;
  const app = fastify({
    http2: true,
    https: { ...tls, allowHTTP1: true },
    loggerInstance: ctx.logger.child({ listener }),
    logController: new fastify.LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyBytes,
    requestTimeout: config.limits.requestTimeoutMs,
    connectionTimeout: config.limits.requestTimeoutMs * 3,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    clientErrorHandler: clientErrorHandler(metrics),
  }) as unknown as FastifyInstance;

  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  const server = app.server as unknown as Http2SecureServer;
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('session', (s: ServerHttp2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });

  // Request size limits, before any parsing. HTTP/2: Node applies `maxHeaderListSize` only once
  // the client has acknowledged our SETTINGS; before that, oversized header sections are reset here
  // the same way (ENHANCE_YOUR_CALM). HTTP/1.1 header sections are bounded by Node's parser (431,
  // clientErrorHandler) and bodies by `bodyLimit` (413).
  const maxHeaderBytes = tls.settings.maxHeaderListSize;
  app.addHook('onRequest', (request, reply, done) => {
    if (resetOversizedHttp2Request(request.raw, maxHeaderBytes)) {
      const endpoint = (request.routeOptions.config as { endpoint?: string } | undefined)?.endpoint ?? 'other';
      metrics.failures.inc({ endpoint, error: 'invalid_request', reason: 'header_too_large' });
      reply.hijack(); // nothing further runs for it (Fastify stops at a hijacked reply)
    }
    done();
  });
  // A response sent before the request body was read (a refusal, a 404, a GET with a body) must
  // not leave the server reading, then discarding, whatever an unauthenticated client keeps
  // uploading. HTTP/1.1: close the connection (Node would keep it alive and drain the body).
  // HTTP/2: reset the stream with NO_ERROR once the response is out (RFC 9113 section 8.1); Node
  // does so itself only when nothing of the body was read, and the body parser reads up to the
  // limit before its 413. (Node drops a `connection` field on HTTP/2 with a warning: removed.)
  app.addHook('onSend', (request, reply, payload, done) => {
    const raw = request.raw as IncomingMessage | Http2ServerRequest;
    if ('stream' in raw) {
      reply.removeHeader('connection');
      const stream = raw.stream;
      stream.once('finish', () =>
        setImmediate(() => {
          if (!stream.destroyed && !stream.closed && stream.state.remoteClose === 0) stream.close(http2Constants.NGHTTP2_NO_ERROR);
        }),
      );
    } else if (hasUnreadBody(raw)) reply.header('connection', 'close');
    done(null, payload);
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (request, body, done) => {
    try {
      const type = String(request.headers['content-type'] ?? '');
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(type)?.[1];
      if (charset !== undefined && !/^utf-?8$/i.test(charset)) throw new OAuthError('invalid_request', 'Only UTF-8 form bodies are accepted', { reason: 'charset' });
      done(null, FormParams.parse(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  app.setErrorHandler((error, request, reply) => {
    const oauth = toOAuthError(error);
    const endpoint = (request.routeOptions.config as { endpoint?: string } | undefined)?.endpoint ?? 'other';
    if (oauth.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ event: 'request_refused', endpoint, error: oauth.error, reason: oauth.reason }, 'request refused');
    metrics.failures.inc({ endpoint, error: oauth.error, reason: oauth.reason });
    return sendError(reply, oauth);
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, new OAuthError('not_found', 'Not found', { reason: 'not_found' })));

  const requestInfo = (request: AnyRequest, endpoint: Endpoint): RequestInfo => {
    const body = request.body;
    const params = body instanceof FormParams ? body : FormParams.empty();
    if (body !== undefined && !(body instanceof FormParams)) throw new OAuthError('invalid_request', 'The request body must be application/x-www-form-urlencoded', { reason: 'content_type' });
    const { socket, key } = connectionOf(request);
    const peer = listener === 'mtls' && typeof socket?.getPeerX509Certificate === 'function' ? peerOf(socket, key, ctx.tlsVersions) : undefined;
    return {
      listener,
      peer,
      params,
      authorization: rawHeaderValues(request, 'authorization'),
      proofs: rawHeaderValues(request, PROOF_HEADER.toLowerCase()),
      dpop: rawHeaderValues(request, DPOP_HEADER.toLowerCase()),
      endpointUrl: engine.endpoint(endpoint, listener),
    };
  };

  const noStore = { 'cache-control': 'no-store', pragma: 'no-cache' };
  // Requests whose endpoint handler ran are observed once their response is out (the status is
  // then the one sent: a refusal's comes from the error handler, after the handler threw). The
  // duration is Fastify's, from the request's arrival to the end of its response.
  const handled = new WeakMap<AnyRequest, Endpoint>();
  app.addHook('onResponse', (request, reply, done) => {
    const endpoint = handled.get(request);
    if (endpoint !== undefined) metrics.requestDuration.observe({ endpoint, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });
  const timed = (endpoint: Endpoint, handler: (request: AnyRequest, reply: FastifyReply) => Promise<unknown>) => {
    return (request: AnyRequest, reply: FastifyReply) => {
      handled.set(request, endpoint);
      return handler(request, reply);
    };
  };

  app.post(
    PATHS.token,
    { config: { endpoint: 'token' } },
    timed('token', async (request, reply) => {
      const response = await engine.token(requestInfo(request, 'token'));
      // RFC 9449 section 8.2: a fresh nonce with every response, so clients renew before it expires.
      const nonce = engine.dpopNonce();
      if (nonce !== undefined) reply.header('dpop-nonce', nonce);
      return reply.headers(noStore).type('application/json').send(JSON.stringify(response));
    }),
  );
  app.post(
    PATHS.introspection,
    { config: { endpoint: 'introspection' } },
    timed('introspection', async (request, reply) => {
      const response = await engine.introspect(requestInfo(request, 'introspection'));
      return reply.headers(noStore).type('application/json').send(JSON.stringify(response));
    }),
  );
  app.post(
    PATHS.revocation,
    { config: { endpoint: 'revocation' } },
    timed('revocation', async (request, reply) => {
      await engine.revoke(requestInfo(request, 'revocation'));
      return reply.headers(noStore).code(200).send();
    }),
  );
  app.get(PATHS.jwks, async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(JSON.stringify(ctx.keys.jwks)),
  );
  const metadataPaths = new Set<string>([PATHS.metadata]);
  if (config.issuer !== undefined) {
    const path = new URL(config.issuer).pathname.replace(/\/+$/, '');
    if (path !== '') metadataPaths.add(`${PATHS.metadata}${path}`);
  }
  for (const path of metadataPaths) {
    app.get(path, async (_request, reply) => reply.header('cache-control', 'public, max-age=300').type('application/json').send(JSON.stringify(engine.metadata())));
  }
  app.get(PATHS.health, async (_request, reply) => {
    const ok = engine.ready && ctx.keys.jwks.keys.length > 0;
    return reply.code(ok ? 200 : 503).header('cache-control', 'no-store').type('application/json').send(JSON.stringify({ status: ok ? 'ok' : 'starting' }));
  });
  if (config.metrics.enabled) {
    app.get(config.metrics.path, async (_request, reply) => reply.header('cache-control', 'no-store').type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  // Wrong methods on the OAuth endpoints.
  for (const path of [PATHS.token, PATHS.introspection, PATHS.revocation]) {
    app.route({
      method: ['GET', 'PUT', 'DELETE', 'PATCH'],
      url: path,
      handler: async (_request, reply) =>
        sendError(reply.header('allow', 'POST'), new OAuthError('invalid_request', 'Use POST', { reason: 'method', statusCode: 405 })),
    });
  }
  return { app, sockets, sessions };
}

/**
 * Start an authorization server. `config` is the JSON configuration (validated here; a
 * `ConfigError` lists every problem with its path) or a configuration already resolved with
 * `resolveConfig` / `loadConfigFile`.
 */
export async function startAuthorizationServer(config: AuthorizationServerConfig | ResolvedConfig, options: StartOptions = {}): Promise<AuthorizationServer> {
  const resolved = isResolved(config) ? config : resolveConfig(config, options.baseDir);
  const logger = options.logger ?? pino({ level: resolved.logging.level });
  const clock = options.clock ?? Date.now;
  const nowSeconds = () => Math.floor(clock() / 1000);
  const store = options.store ?? (await openStore({ url: resolved.store, dataDir: resolved.dataDir, kek: kekOf(resolved) }));
  await store.open();
  const apps: Array<ReturnType<typeof buildApp>> = [];
  let timer: NodeJS.Timeout | undefined;
  let ops: OpsServer | undefined;
  let state: ServerState = 'starting';
  let readiness = (): Readiness => ({ ready: false, reason: state });
  try {
    const metrics = createMetrics({ defaultMetrics: options.defaultMetrics ?? true });
    if (options.metricsListen !== undefined) {
      const { registry } = metrics;
      const { host, port } = options.metricsListen;
      ops = await startOpsServer({ host, port, metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }), readiness: () => readiness() }).catch((error: unknown) => {
        throw new Error(`operations listener ${host}:${port}: ${(error as Error).message}`, { cause: error });
      });
    }
    const keys = new KeyManager(store, {
      algorithm: resolved.signingKeys.algorithm,
      rotationInterval: resolved.signingKeys.rotationInterval,
      maxTokenLifetime: Math.max(resolved.tokens.lifetime, ...resolved.clients.map((c) => c.access_token_lifetime ?? 0)),
      clockSkew: resolved.tokens.clockSkew,
      now: nowSeconds,
    });
    keys.onChange = () => {
      metrics.signingKeys.reset();
      for (const k of keys.keys) metrics.signingKeys.inc({ state: k.state });
    };
    await keys.init();
    const { dpopNonce } = resolved.tokens;
    const dpopNonces = dpopNonce.required
      ? new DpopNonces(await store.sharedSecret('dpop-nonce', () => randomBytes(32)), dpopNonce.lifetime, nowSeconds)
      : undefined;
    const engine = new AuthorizationEngine({ config: resolved, store, keys, metrics, logger, clock, ...(dpopNonces === undefined ? {} : { dpopNonces }) });
    // Clients registered at run time; one that no longer fits the configuration is skipped.
    const registered: ResolvedClient[] = [];
    for (const metadata of await store.listClients()) {
      try {
        registered.push(resolveRegisteredClient(metadata, resolved, [...resolved.clients, ...registered]).client);
      } catch (error) {
        logger.warn({ client_id: metadata.client_id, err: error }, 'registered client skipped: it does not fit the configuration');
      }
    }
    engine.setRegisteredClients(registered);

    const tlsVersions: TlsVersion[] = resolved.tls.allowTls12 ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'];
    const ctx: AppContext = { engine, keys, metrics, logger, tlsVersions, config: resolved };
    const mtls = buildApp(ctx, 'mtls');
    apps.push(mtls);
    await mtls.app.listen({ host: resolved.listen.host, port: resolved.listen.port });
    const mtlsBase = baseUrl(mtls.app.server.address() as AddressInfo, resolved.listen.host, resolved.listen.publicUrl);
    let plainBase: string | undefined;
    if (resolved.plainTlsListen !== undefined) {
      const plain = buildApp(ctx, 'plain');
      apps.push(plain);
      await plain.app.listen({ host: resolved.plainTlsListen.host, port: resolved.plainTlsListen.port });
      plainBase = baseUrl(plain.app.server.address() as AddressInfo, resolved.plainTlsListen.host, resolved.plainTlsListen.publicUrl);
    }
    const issuer = (resolved.issuer ?? plainBase ?? mtlsBase).replace(/\/+$/, '');
    const urls: EngineUrls = { issuer, mtlsBase, plainBase };
    engine.setUrls(urls);
    const publicBase = plainBase ?? mtlsBase;

    const maintain = async () => {
      const before = keys.keys.find((k) => k.state === 'active')?.kid;
      await keys.maintain();
      if (keys.keys.find((k) => k.state === 'active')?.kid !== before) {
        metrics.keyRotations.inc();
        logger.info({ event: 'key_rotated', kid: keys.active.kid }, 'signing key rotated');
      }
      await store.prune(nowSeconds());
    };
    timer = setInterval(() => {
      maintain().catch((error: unknown) => logger.error({ err: error }, 'maintenance failed'));
    }, resolved.signingKeys.checkInterval * 1000);
    timer.unref();
    const certificateNotAfter = Date.parse(new X509Certificate(resolved.tls.cert).validTo);
    readiness = () => readinessOf({ state, apps, keys, certificateExpired: clock() >= certificateNotAfter });
    state = 'running';
    logger.info({ event: 'started', issuer, url: mtlsBase, plainUrl: plainBase, metricsUrl: ops?.url, kid: keys.active.kid }, 'authorization server started');

    let closing: Promise<void> | undefined;
    const server: AuthorizationServer = {
      issuer,
      url: mtlsBase,
      plainUrl: plainBase,
      tokenEndpoint: `${publicBase}${PATHS.token}`,
      introspectionEndpoint: `${publicBase}${PATHS.introspection}`,
      revocationEndpoint: `${publicBase}${PATHS.revocation}`,
      jwksUri: `${publicBase}${PATHS.jwks}`,
      metadataUrl: `${publicBase}${PATHS.metadata}`,
      metricsUrl: ops?.url,
      config: resolved,
      metrics,
      store,
      engine,
      metadata: () => engine.metadata(),
      jwks: () => structuredClone(keys.jwks) as { keys: Array<Record<string, unknown>> },
      async rotateSigningKey() {
        await keys.rotate();
        metrics.keyRotations.inc();
        logger.info({ event: 'key_rotated', kid: keys.active.kid }, 'signing key rotated');
      },
      runMaintenance: maintain,
      async registerClient(metadata) {
        const { client } = resolveRegisteredClient(metadata, resolved, engine.clients);
        await store.putClient(metadata);
        const current = engine.clients.filter((c) => !resolved.clients.includes(c));
        engine.setRegisteredClients([...current, client]);
        if ((client.access_token_lifetime ?? 0) > keys.active.maxTokenLifetime) await keys.coverLifetime(client.access_token_lifetime as number);
      },
      async unregisterClient(clientId) {
        if (resolved.clients.some((c) => c.client_id === clientId)) return false;
        const removed = await store.deleteClient(clientId);
        engine.setRegisteredClients(engine.clients.filter((c) => !resolved.clients.includes(c) && c.client_id !== clientId));
        return removed;
      },
      readiness: () => readiness(),
      close() {
        closing ??= (async () => {
          state = 'draining';
          clearInterval(timer);
          await Promise.all(apps.map((a) => closeApp(a)));
          await store.close();
          state = 'stopped';
          await ops?.close();
          logger.info({ event: 'stopped', issuer }, 'authorization server stopped');
        })();
        return closing;
      },
    };
    return server;
  } catch (error) {
    clearInterval(timer);
    await Promise.all(apps.map((a) => closeApp(a).catch(() => undefined)));
    await store.close().catch(() => undefined);
    await ops?.close();
    throw error;
  }
}

type ServerState = 'starting' | 'running' | 'draining' | 'stopped';

function readinessOf(s: { state: ServerState; apps: ReadonlyArray<{ app: FastifyInstance }>; keys: KeyManager; certificateExpired: boolean }): Readiness {
  if (s.state !== 'running') return { ready: false, reason: s.state };
  if (!s.apps.every((a) => a.app.server.listening)) return { ready: false, reason: 'not_listening' };
  if (!s.keys.keys.some((k) => k.state === 'active') || s.keys.jwks.keys.length === 0) return { ready: false, reason: 'no_signing_key' };
  if (s.certificateExpired) return { ready: false, reason: 'certificate_expired' };
  return { ready: true };
}

async function closeApp(a: { app: FastifyInstance; sockets: Set<Socket>; sessions: Set<ServerHttp2Session> }): Promise<void> {
  const closed = a.app.close();
  for (const s of a.sessions) s.destroy();
  for (const s of a.sockets) s.destroy();
  await closed;
}
