/** The ingress's public shapes (its configuration is in options.ts). */
import type { SessionBoundVerifier } from '@tether/core';
import type { Registry } from 'prom-client';
import type { Endpoint } from '../config.js';
import type { CertificateInUse } from '../credentials/source.js';
import type { Logger } from '../log.js';
import type { MetricsServer, Readiness } from '../servers.js';

/** The `route` label of the request metrics. */
export type Route = 'app' | 'metadata' | 'refused';

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
  /** Requests received (every one, refused and reset ones included). */
  requests: number;
  /** Requests proxied to the application. */
  proxied: number;
  /** Failures here (not the verifier's), by reason. */
  failures: Record<string, number>;
  connectionsOpen: number;
  /** Client connections closed by the idle timeout. */
  idleClosed: number;
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
  /** What `/readyz` answers: listening, not draining, and the server certificate within its validity. */
  readiness(): Readiness;
  /** The server certificate new connections get (its generation changes with each accepted reload). */
  certificate(): CertificateInUse;
  close(): Promise<void>;
}
