/**
 * The egress options: defaults in one place, validation in one place. `startEgress` and
 * `tether egress` (commands.ts) both call {@link resolveEgressOptions}; every error names the
 * option as the CLI flag and the configuration key (`--retry-buffer (retryBufferBytes) ...`).
 */
import { isLoopback, parseEndpoint, SidecarConfigError, type Endpoint } from '../config.js';
import type { ReloadableCredentials } from '../credentials/reloadable.js';
import type { LogOptions } from '../log.js';
import { OptionNames } from '../shared/options.js';
import type { TokenEndpointConfig } from '../token-source.js';
import type { EgressConfig, EgressRoute } from './types.js';

export const EGRESS_DEFAULTS = {
  tokenPolicy: 'audience',
  retryBufferBytes: 1024 * 1024,
  proofRefreshAfter: 3000,
  socketMode: 0o600,
  drainTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  connectRetryMs: 2000,
  upstreamTimeoutMs: 30_000,
  agentIdleTimeoutMs: 300_000,
} as const;

/** A validated route (without its connection pool). */
export interface RouteSpec {
  name: string;
  /** `https://host[:port]` of the upstream. */
  origin: URL;
  /** Base path prepended to forwarded paths (no trailing slash; '' for none). */
  basePath: string;
  audiences: readonly string[];
  egressToken: boolean;
  scope: string | undefined;
}

/** {@link EgressConfig} with every default applied and every value checked. */
export interface EgressOptions {
  listen: Endpoint;
  metricsListen: Endpoint | undefined;
  /** Fixed client certificate, key and upstream CA (when `credentials` is undefined). */
  cert: string | Buffer | undefined;
  key: string | Buffer | undefined;
  ca: EgressConfig['ca'];
  /** Reloadable instead (then `cert`, `key` and `ca` are undefined). */
  credentials: ReloadableCredentials | undefined;
  routes: readonly RouteSpec[];
  tokenEndpoint: TokenEndpointConfig | undefined;
  tokenPolicy: 'audience' | 'none';
  retryBufferBytes: number;
  proofRefreshAfter: number;
  allowTls12: boolean;
  preferRs256: boolean;
  socketMode: number;
  drainTimeoutMs: number;
  connectTimeoutMs: number;
  connectRetryMs: number;
  /** 0 = no limit. */
  upstreamTimeoutMs: number;
  /** 0 = never. */
  agentIdleTimeoutMs: number;
  log: LogOptions | undefined;
}

type Key = keyof EgressConfig;

/** The CLI flag of each option that has one. */
const FLAGS: Partial<Record<Key, string>> = {
  listen: '--listen',
  cert: '--cert',
  key: '--key',
  ca: '--ca',
  credentials: '--cert, --key and --ca',
  routes: '--route',
  tokenEndpoint: '--token-endpoint',
  tokenPolicy: '--token-policy',
  retryBufferBytes: '--retry-buffer',
  metricsListen: '--metrics-listen',
  drainTimeoutMs: '--drain-timeout',
  connectRetryMs: '--connect-retry',
  upstreamTimeoutMs: '--upstream-timeout',
  agentIdleTimeoutMs: '--agent-idle-timeout',
};

/** `--flag (configKey)`, or just the key when there is no flag. */
const names = new OptionNames<Key>(FLAGS);

export function optionName(key: Key): string {
  return names.name(key);
}

function invalid(key: Key, problem: string): SidecarConfigError {
  return names.invalid(key, problem);
}

function endpoint(value: string | Endpoint, key: 'listen' | 'metricsListen'): Endpoint {
  return typeof value === 'string' ? parseEndpoint(value, optionName(key)) : value;
}

function listenEndpoint(config: EgressConfig): Endpoint {
  const listen = endpoint(config.listen, 'listen');
  if (listen.kind === 'tcp' && !isLoopback(listen.host)) {
    throw invalid('listen', `must be a loopback address or a Unix socket (got ${listen.host}): anyone who reaches the egress can use its key`);
  }
  return listen;
}

/** Validate one route; `seen` holds the lower-case names of the routes before it. */
function routeSpec(r: EgressRoute, seen: ReadonlySet<string>, hasTokenEndpoint: boolean): RouteSpec {
  if (typeof r.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(r.name)) {
    throw invalid('routes', `name ${JSON.stringify(r.name)} must be letters, digits, '.', '_' or '-'`);
  }
  if (seen.has(r.name.toLowerCase())) throw invalid('routes', `${r.name} is configured twice`);
  let url: URL;
  try {
    url = new URL(r.upstream);
  } catch {
    throw invalid('routes', `${r.name}: upstream is not a URL`);
  }
  if (url.protocol !== 'https:') throw invalid('routes', `${r.name}: upstream must be https:// (the egress speaks mTLS only)`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw invalid('routes', `${r.name}: upstream must not carry credentials, a query or a fragment`);
  }
  const audiences = r.audience === undefined ? [url.origin] : typeof r.audience === 'string' ? [r.audience] : [...r.audience];
  if (audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a === '')) throw new SidecarConfigError(`--audience (routes[].audience) of route ${r.name} is empty`);
  if (r.egressToken === true && !hasTokenEndpoint) throw new SidecarConfigError(`--egress-token (routes[].egressToken) of route ${r.name} needs ${optionName('tokenEndpoint')}`);
  return { name: r.name, origin: new URL(url.origin), basePath: url.pathname.replace(/\/$/, ''), audiences, egressToken: r.egressToken === true, scope: r.scope };
}

/** Fixed `cert` and `key` (and optional `ca`), or reloadable `credentials`: one or the other. */
function credentialsOptions(config: EgressConfig): Pick<EgressOptions, 'cert' | 'key' | 'ca' | 'credentials'> {
  if (config.credentials !== undefined) {
    if (config.cert !== undefined || config.key !== undefined || config.ca !== undefined) throw invalid('credentials', 'replace cert, key and ca: give one or the other');
    return { cert: undefined, key: undefined, ca: undefined, credentials: config.credentials };
  }
  if (config.cert === undefined) throw invalid('cert', 'is required (PEM), or credentials');
  if (config.key === undefined) throw invalid('key', 'is required (PEM)');
  return { cert: config.cert, key: config.key, ca: config.ca, credentials: undefined };
}

function routeSpecs(config: EgressConfig): RouteSpec[] {
  if (!Array.isArray(config.routes) || config.routes.length === 0) throw new SidecarConfigError('at least one --route NAME=https://upstream (routes) is required');
  const seen = new Set<string>();
  const out: RouteSpec[] = [];
  for (const r of config.routes) {
    out.push(routeSpec(r, seen, config.tokenEndpoint !== undefined));
    seen.add(r.name.toLowerCase());
  }
  return out;
}

function tokenEndpoint(config: EgressConfig, routes: readonly RouteSpec[]): TokenEndpointConfig | undefined {
  const te = config.tokenEndpoint;
  if (te === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(te.endpoint);
  } catch {
    url = undefined;
  }
  if (url === undefined) throw invalid('tokenEndpoint', 'is not a URL');
  if (url.protocol !== 'https:') throw invalid('tokenEndpoint', 'must be https:// (tls_client_auth)');
  if (typeof te.clientId !== 'string' || te.clientId === '') throw new SidecarConfigError('--client-id (tokenEndpoint.clientId) is required with --token-endpoint');
  if (!routes.some((r) => r.egressToken)) throw invalid('tokenEndpoint', 'needs at least one route with --egress-token NAME (egressToken)');
  return te;
}

/** Apply the defaults and check every option; throws {@link SidecarConfigError} naming the option. */
export function resolveEgressOptions(config: EgressConfig): EgressOptions {
  const listen = listenEndpoint(config);
  const metricsListen = config.metricsListen === undefined ? undefined : endpoint(config.metricsListen, 'metricsListen');
  const tokenPolicy = config.tokenPolicy ?? EGRESS_DEFAULTS.tokenPolicy;
  if (tokenPolicy !== 'audience' && tokenPolicy !== 'none') throw invalid('tokenPolicy', 'must be audience or none');
  const retryBufferBytes = config.retryBufferBytes ?? EGRESS_DEFAULTS.retryBufferBytes;
  if (!Number.isSafeInteger(retryBufferBytes) || retryBufferBytes < 0) throw invalid('retryBufferBytes', 'must be a whole number of bytes');
  const proofRefreshAfter = config.proofRefreshAfter ?? EGRESS_DEFAULTS.proofRefreshAfter;
  if (!(typeof proofRefreshAfter === 'number' && proofRefreshAfter > 0 && Number.isFinite(proofRefreshAfter))) throw invalid('proofRefreshAfter', 'must be a positive number of seconds');
  const socketMode = config.socketMode ?? EGRESS_DEFAULTS.socketMode;
  if (!Number.isInteger(socketMode) || socketMode < 0 || socketMode > 0o777) throw invalid('socketMode', 'must be a file mode such as 0o600');
  const routes = routeSpecs(config);
  return {
    listen,
    metricsListen,
    ...credentialsOptions(config),
    routes,
    tokenEndpoint: tokenEndpoint(config, routes),
    tokenPolicy,
    retryBufferBytes,
    proofRefreshAfter,
    allowTls12: config.allowTls12 === true,
    preferRs256: config.preferRs256 === true,
    socketMode,
    drainTimeoutMs: names.durationMs('drainTimeoutMs', config.drainTimeoutMs ?? EGRESS_DEFAULTS.drainTimeoutMs, { zero: 'close at once' }),
    connectTimeoutMs: names.durationMs('connectTimeoutMs', config.connectTimeoutMs ?? EGRESS_DEFAULTS.connectTimeoutMs, { positive: true }),
    connectRetryMs: names.durationMs('connectRetryMs', config.connectRetryMs ?? EGRESS_DEFAULTS.connectRetryMs, { zero: 'no connect retry' }),
    upstreamTimeoutMs: names.durationMs('upstreamTimeoutMs', config.upstreamTimeoutMs ?? EGRESS_DEFAULTS.upstreamTimeoutMs, { zero: 'no limit' }),
    agentIdleTimeoutMs: names.durationMs('agentIdleTimeoutMs', config.agentIdleTimeoutMs ?? EGRESS_DEFAULTS.agentIdleTimeoutMs, { zero: 'never' }),
    log: config.log,
  };
}
