/** Prometheus metrics of one authorization server (its own registry, so several can share a process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface AsMetrics {
  registry: Registry;
  tokensIssued: Counter<'grant' | 'binding' | 'deferred'>;
  failures: Counter<'endpoint' | 'error' | 'reason'>;
  clientAuthentications: Counter<'method' | 'result'>;
  introspections: Counter<'active'>;
  revocations: Counter<'result'>;
  keyRotations: Counter<never>;
  signingKeys: Gauge<'state'>;
  requestDuration: Histogram<'endpoint' | 'status'>;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): AsMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'tether_as_' });
  const registers = [registry];
  return {
    registry,
    tokensIssued: new Counter({
      name: 'tether_as_tokens_issued_total',
      help: 'Access tokens issued, by grant type and binding (none, certificate, session, dpop); deferred=true when bound through tmb',
      labelNames: ['grant', 'binding', 'deferred'],
      registers,
    }),
    failures: new Counter({
      name: 'tether_as_request_failures_total',
      help: 'Refused requests by endpoint, OAuth error code and internal reason',
      labelNames: ['endpoint', 'error', 'reason'],
      registers,
    }),
    clientAuthentications: new Counter({
      name: 'tether_as_client_authentications_total',
      help: 'Client authentication attempts by method and result',
      labelNames: ['method', 'result'],
      registers,
    }),
    introspections: new Counter({ name: 'tether_as_introspections_total', help: 'Introspection responses by active', labelNames: ['active'], registers }),
    revocations: new Counter({ name: 'tether_as_revocations_total', help: 'Revocation requests by result', labelNames: ['result'], registers }),
    keyRotations: new Counter({ name: 'tether_as_key_rotations_total', help: 'Signing key rotations', registers }),
    signingKeys: new Gauge({ name: 'tether_as_signing_keys', help: 'Published signing keys by state', labelNames: ['state'], registers }),
    requestDuration: new Histogram({
      name: 'tether_as_request_duration_seconds',
      help: 'Time to answer token, introspection and revocation requests',
      labelNames: ['endpoint', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  };
}
