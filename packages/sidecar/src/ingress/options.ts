/**
 * The ingress options: defaults in one place, validation in one place. `startIngress` and
 * `tether ingress` (commands.ts) both go through {@link resolveIngressOptions}; every error names
 * the option as the CLI flag and the configuration key (`--app-timeout (appTimeoutMs) ...`).
 */
import { createSessionBoundVerifier, type AccessTokenValidator, type SessionBoundVerifier } from '@tether/core';
import { parseEndpoint, parseLocalUpstream, SidecarConfigError, type Endpoint } from '../config.js';
import type { ReloadableCredentials } from '../credentials/reloadable.js';
import { fixedSource, reloadableSource, type CredentialsSource } from '../credentials/source.js';
import type { LogOptions } from '../log.js';
import { OptionNames } from '../shared/options.js';

export interface IngressConfig {
  /** Public mTLS listener `HOST:PORT`. */
  listen: string | Endpoint;
  /** Server certificate and key (PEM), fixed. Required unless `credentials` is given. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** CA certificates (PEM) that client certificates must chain to. Required unless `credentials` is given. */
  ca?: string | Buffer | Array<string | Buffer>;
  /**
   * Reloadable server certificate, key and client CA (instead of `cert`, `key` and `ca`; it must
   * have a CA). Each accepted reload becomes the certificate of new connections
   * (`server.setSecureContext`); existing connections keep theirs. The caller owns it (`close()`
   * it after the ingress). `tether ingress` makes one from `--cert`, `--key` and `--ca`.
   */
  credentials?: ReloadableCredentials;
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
  /** The operations listener (`/metrics`, `/healthz`, `/readyz`): `HOST:PORT` or `unix:/path`. */
  metricsListen?: string | Endpoint;
  /** How long shutdown waits for in-flight requests, in milliseconds (default 10000). */
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
  /**
   * Close a client connection that has had no request in flight for this many milliseconds
   * (default 120000; 0 = never): an HTTP/1.1 keep-alive connection is ended, an HTTP/2 session
   * gets GOAWAY and is destroyed after a short grace if the client does not close it.
   */
  idleTimeoutMs?: number;
  /**
   * Require a PROXY protocol v2 header (HAProxy `send-proxy-v2`, a network load balancer) on every connection before
   * TLS: its source address becomes the client address (`X-Forwarded-For`, logs); a connection without a valid header
   * within 5 s is closed (default false). Only for listeners that nothing but the balancer can reach.
   */
  proxyProtocol?: boolean;
  log?: LogOptions;
}

export const INGRESS_DEFAULTS = {
  minimumBinding: 'session',
  passAuthorization: true,
  drainTimeoutMs: 10_000,
  appTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  maxRequestsPerConnection: Infinity,
} as const;

/** {@link IngressConfig} with every default applied and every value checked. */
export interface IngressOptions {
  listen: Extract<Endpoint, { kind: 'tcp' }>;
  metricsListen: Endpoint | undefined;
  /** As configured, for logs. */
  upstream: string;
  app: Endpoint;
  /** Prepended to forwarded paths ('' for none). */
  basePath: string;
  /** Server certificate, key and client CA: fixed, or reloadable (`credentials`). */
  credentials: CredentialsSource;
  verifier: SessionBoundVerifier;
  allowTls12: boolean;
  resource: string | undefined;
  authorizationServers: readonly string[];
  passAuthorization: boolean;
  drainTimeoutMs: number;
  /** Infinity = unlimited. */
  maxRequestsPerConnection: number;
  /** 0 = no limit. */
  appTimeoutMs: number;
  /** 0 = never. */
  idleTimeoutMs: number;
  proxyProtocol: boolean;
  log: LogOptions | undefined;
}

type Key = keyof IngressConfig;

/** The CLI flag of each option that has one. */
const FLAGS: Partial<Record<Key, string>> = {
  listen: '--listen',
  cert: '--cert',
  key: '--key',
  ca: '--ca',
  credentials: '--cert, --key and --ca',
  upstream: '--upstream',
  tokens: '--jwks-url, --jwks-file or --introspection-url',
  minimumBinding: '--minimum-binding',
  requiredScopes: '--required-scope',
  resource: '--resource',
  authorizationServers: '--authorization-server',
  passAuthorization: '--strip-authorization',
  metricsListen: '--metrics-listen',
  drainTimeoutMs: '--drain-timeout',
  maxRequestsPerConnection: '--max-requests-per-connection',
  appTimeoutMs: '--app-timeout',
  idleTimeoutMs: '--idle-timeout',
  proxyProtocol: '--proxy-protocol',
};

/** `--flag (configKey)`, or just the key when there is no flag. */
const names = new OptionNames<Key>(FLAGS);

export function optionName(key: Key): string {
  return names.name(key);
}

function invalid(key: Key, problem: string): SidecarConfigError {
  return names.invalid(key, problem);
}

/** A duration in milliseconds from 0 (`zero` says what 0 means). */
function duration(config: IngressConfig, key: 'drainTimeoutMs' | 'appTimeoutMs' | 'idleTimeoutMs', zero: string): number {
  return names.durationMs(key, config[key] ?? INGRESS_DEFAULTS[key], { zero });
}

function listenEndpoint(config: IngressConfig): Extract<Endpoint, { kind: 'tcp' }> {
  const listen = typeof config.listen === 'string' ? parseEndpoint(config.listen, optionName('listen')) : config.listen;
  if (listen?.kind !== 'tcp') throw invalid('listen', 'must be HOST:PORT (the ingress terminates mTLS)');
  return listen;
}

/** The server certificate: reloadable `credentials`, or fixed `cert` / `key` / `ca`. */
function credentialsSource(config: IngressConfig): CredentialsSource {
  if (config.credentials !== undefined) {
    if (config.cert !== undefined || config.key !== undefined || config.ca !== undefined) throw invalid('credentials', 'replace cert, key and ca: give one or the other');
    const source = reloadableSource(config.credentials);
    if (source.current().ca === undefined) throw invalid('ca', 'is required: client certificates must chain to it (the credentials have none)');
    return source;
  }
  if (config.ca === undefined) throw invalid('ca', 'is required: client certificates must chain to it');
  if (config.key === undefined) throw invalid('key', 'is required (PEM)');
  return fixedSource({ cert: config.cert, key: config.key, ca: config.ca }, optionName('cert'));
}

function buildVerifier(config: IngressConfig, requiredScopes: readonly string[]): SessionBoundVerifier {
  if (config.verifier !== undefined) return config.verifier;
  const minimumBinding = config.minimumBinding ?? INGRESS_DEFAULTS.minimumBinding;
  if (config.tokens === undefined) throw invalid('tokens', 'is required: one of them, or a ready verifier');
  return createSessionBoundVerifier({
    tokens: config.tokens,
    minimumBinding,
    tlsVersions: config.allowTls12 === true ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'],
    ...(requiredScopes.length === 0 ? {} : { requiredScopes }),
  });
}

function maxRequests(config: IngressConfig): number {
  const value = config.maxRequestsPerConnection ?? INGRESS_DEFAULTS.maxRequestsPerConnection;
  if (value !== Infinity && !(Number.isSafeInteger(value) && value >= 1)) throw invalid('maxRequestsPerConnection', 'must be a whole number, at least 1');
  return value;
}

function stringList(config: IngressConfig, key: 'authorizationServers' | 'requiredScopes'): readonly string[] {
  const value = config[key] ?? [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) throw invalid(key, 'must be a list of non-empty strings');
  return [...value];
}

/** Apply the defaults and check every option; throws {@link SidecarConfigError} naming the option. */
export function resolveIngressOptions(config: IngressConfig): IngressOptions {
  const listen = listenEndpoint(config);
  const metricsListen = config.metricsListen === undefined ? undefined : typeof config.metricsListen === 'string' ? parseEndpoint(config.metricsListen, optionName('metricsListen')) : config.metricsListen;
  if (typeof config.upstream !== 'string' || config.upstream === '') throw invalid('upstream', 'is required: http://127.0.0.1:PORT[/base] or unix:/path');
  const { endpoint: app, basePath } = parseLocalUpstream(config.upstream, optionName('upstream'));
  const credentials = credentialsSource(config);
  const minimumBinding = config.minimumBinding ?? INGRESS_DEFAULTS.minimumBinding;
  if (minimumBinding !== 'session' && minimumBinding !== 'certificate') throw invalid('minimumBinding', 'must be session or certificate');
  const requiredScopes = stringList(config, 'requiredScopes');
  if (config.resource !== undefined && (typeof config.resource !== 'string' || config.resource === '')) throw invalid('resource', 'must be a non-empty string');
  return {
    listen,
    metricsListen,
    upstream: config.upstream,
    app,
    basePath,
    credentials,
    verifier: buildVerifier(config, requiredScopes),
    allowTls12: config.allowTls12 === true,
    resource: config.resource,
    authorizationServers: stringList(config, 'authorizationServers'),
    passAuthorization: config.passAuthorization ?? INGRESS_DEFAULTS.passAuthorization,
    drainTimeoutMs: duration(config, 'drainTimeoutMs', 'no wait'),
    maxRequestsPerConnection: maxRequests(config),
    appTimeoutMs: duration(config, 'appTimeoutMs', 'no limit'),
    idleTimeoutMs: duration(config, 'idleTimeoutMs', 'never'),
    proxyProtocol: config.proxyProtocol === true,
    log: config.log,
  };
}
