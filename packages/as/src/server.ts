/**
 * Starting and stopping the authorization server: configuration, store, keys, the engine, one
 * listener app per listener (http/app.ts; HTTP/2 with HTTP/1.1 fallback over TLS).
 * The mutual-TLS listener requests a client certificate (without rejecting unverified ones, so
 * self-signed certificates reach `self_signed_tls_client_auth`); the optional plain-TLS listener
 * does not, and metadata then lists the mTLS listener in `mtls_endpoint_aliases` (RFC 8705
 * section 5).
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import type { ServerHttp2Session } from 'node:http2';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { TlsVersion } from '@tether/core';
import { startOpsServer, type OpsServer, type Readiness } from '@tether/core/node';
import {
  resolveConfig,
  resolveRegisteredClient,
  type AuthorizationServerConfig,
  type ClientMetadata,
  type ResolvedClient,
  type ResolvedConfig,
} from './config.js';
import { DpopNonces } from './dpop-nonce.js';
import { AuthorizationEngine, PATHS, type EngineUrls } from './engine.js';
import { buildApp, type AppContext, type ListenerApp } from './http/app.js';
import { KeyManager } from './keys.js';
import { createMetrics, type AsMetrics } from './metrics.js';
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


function kekOf(config: ResolvedConfig): KeyEncryptionKey | undefined {
  return config.keyEncryption === undefined ? undefined : KeyEncryptionKey.load(config.keyEncryption);
}

function isResolved(config: unknown): config is ResolvedConfig {
  return typeof config === 'object' && config !== null && 'clientCaCerts' in config && Array.isArray((config as ResolvedConfig).clientCaCerts);
}



function baseUrl(address: AddressInfo, host: string, publicUrl: string | undefined): string {
  if (publicUrl !== undefined) return publicUrl.replace(/\/+$/, '');
  const h = host === '0.0.0.0' || host === '::' ? address.address : host;
  return `https://${isIP(h) === 6 ? `[${h}]` : h}:${address.port}`;
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
  const apps: ListenerApp[] = [];
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
    const { keys, engine } = await createEngine({ config: resolved, store, metrics, logger, clock });

    const tlsVersions: TlsVersion[] = resolved.tls.allowTls12 ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'];
    const { issuer, mtlsBase, plainBase } = await startListeners({ engine, keys, metrics, logger, tlsVersions, config: resolved }, apps);
    const publicBase = plainBase ?? mtlsBase;

    const maintain = maintenance(keys, store, metrics, logger, nowSeconds);
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

interface EngineParts {
  config: ResolvedConfig;
  store: Store;
  metrics: AsMetrics;
  logger: Logger;
  clock: () => number;
}

/** Signing keys, DPoP nonces, the engine, and the clients registered at run time (one that no longer fits the configuration is skipped). */
async function createEngine(p: EngineParts): Promise<{ keys: KeyManager; engine: AuthorizationEngine }> {
  const { config: resolved, store, metrics, logger, clock } = p;
  const nowSeconds = () => Math.floor(clock() / 1000);
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
  return { keys, engine };
}

/** The mTLS listener, then the plain-TLS one if configured; the engine learns its URLs (the issuer defaults to the plain one's). */
async function startListeners(ctx: AppContext, apps: ListenerApp[]): Promise<EngineUrls & { issuer: string }> {
  const resolved = ctx.config;
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
  ctx.engine.setUrls(urls);
  return { ...urls, issuer };
}

/** What the maintenance timer runs: key rotation when due (counted and logged), then store pruning. */
function maintenance(keys: KeyManager, store: Store, metrics: AsMetrics, logger: Logger, nowSeconds: () => number): () => Promise<void> {
  return async () => {
    const before = keys.keys.find((k) => k.state === 'active')?.kid;
    await keys.maintain();
    if (keys.keys.find((k) => k.state === 'active')?.kid !== before) {
      metrics.keyRotations.inc();
      logger.info({ event: 'key_rotated', kid: keys.active.kid }, 'signing key rotated');
    }
    await store.prune(nowSeconds());
  };
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
