/** Public configuration, statistics and handle types of the egress sidecar. */
import type { Registry } from 'prom-client';
import type { Endpoint } from '../config.js';
import type { CertificateInUse } from '../credentials/source.js';
import type { ReloadableCredentials } from '../credentials/reloadable.js';
import type { Logger, LogOptions } from '../log.js';
import type { MetricsServer, Readiness } from '../servers.js';
import type { TokenEndpointConfig } from '../token-source.js';

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

/** Options of `startEgress`; the CLI flag of each is named in its description and in errors. */
export interface EgressConfig {
  /** Agent-facing listener (`--listen`): a loopback `HOST:PORT` or `unix:/path` (never a routable address). */
  listen: string | Endpoint;
  /** Client certificate (PEM, `--cert`) presented upstream; its key signs the proofs. Fixed; required unless `credentials` is given. */
  cert?: string | Buffer;
  /** Private key of `cert` (PEM, `--key`). Lives only in this process. */
  key?: string | Buffer;
  /** CA certificates (PEM, `--ca`) that verify upstream servers (default: Node's roots). */
  ca?: string | Buffer | Array<string | Buffer>;
  /**
   * Reloadable client certificate, key and upstream CA, instead of `cert`, `key` and `ca`
   * (`tether egress` makes one from `--cert`, `--key` and `--ca`). Each accepted reload is a new
   * generation: new upstream connections present it and are proven with its key, tokens the egress
   * obtains are fetched again with it, connections of the previous generation finish what they
   * carry and close. The caller owns it (`close()` it after the egress).
   */
  credentials?: ReloadableCredentials;
  /** Allowed destinations (`--route`, `--audience`, `--egress-token`); at least one. */
  routes: readonly EgressRoute[];
  /** Authorization server token endpoint for routes with `egressToken` (`--token-endpoint`, `--client-id`; client_credentials, tls_client_auth). */
  tokenEndpoint?: TokenEndpointConfig;
  /** `--token-policy`: `audience` (default): a bearer token goes only to a route its `aud` names. `none`: no token check. */
  tokenPolicy?: 'audience' | 'none';
  /** `--retry-buffer`: request bodies up to this many bytes (declared by Content-Length) are buffered so a binding error can be retried (default 1 MiB). */
  retryBufferBytes?: number;
  /** Re-sign a cached proof older than this many seconds (default 3000; keep it below the resource server's maximum binding age). */
  proofRefreshAfter?: number;
  /** `--allow-tls12`: offer TLS 1.2 upstream as well as TLS 1.3. */
  allowTls12?: boolean;
  /** Use RS256 rather than PS256 for RSA keys. */
  preferRs256?: boolean;
  /** `--metrics-listen`: Prometheus `/metrics` and `/healthz` listener. */
  metricsListen?: string | Endpoint;
  /** Mode of the agent-facing Unix socket (default 0o600). */
  socketMode?: number;
  /** `--drain-timeout` (seconds): how long shutdown waits for in-flight requests before closing them, ms (default 10000). */
  drainTimeoutMs?: number;
  /** Upstream connect (TCP + TLS) timeout, ms (default 10000). */
  connectTimeoutMs?: number;
  /**
   * `--connect-retry` (seconds): how long a request keeps retrying to connect upstream after a
   * refused or reset connection attempt (an upstream restarting), with backoff from 25 ms up to
   * 250 ms, ms (default 2000; 0 = no connect retry). See README "Retry".
   */
  connectRetryMs?: number;
  /**
   * `--upstream-timeout` (seconds): the longest wait from sending a request upstream until its
   * response headers arrive, ms (default 30000; 0 = no limit). On expiry the upstream request is
   * cancelled and the agent gets `504 upstream_timeout`. A response whose headers arrived is never cut.
   */
  upstreamTimeoutMs?: number;
  /**
   * `--agent-idle-timeout` (seconds): an agent connection (HTTP/1.1 keep-alive or h2c session) with
   * no request in flight for this long is closed (h2c: GOAWAY), ms (default 300000; 0 = never).
   */
  agentIdleTimeoutMs?: number;
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
  /** What `/readyz` answers: not draining, and the client certificate in use within its validity. */
  readiness(): Readiness;
  /** The client certificate new upstream connections present (its generation changes with each reload applied). */
  certificate(): CertificateInUse;
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
