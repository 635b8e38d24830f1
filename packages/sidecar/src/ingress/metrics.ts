/**
 * The ingress's Prometheus metrics. `tether_ingress_requests_total{route,status}` and
 * `tether_ingress_request_duration_seconds{route,status}` count every request exactly once, when
 * it is over (its response closed), refusals and resets included; the other counters are read from
 * the verifier and the ingress's own stats when scraped.
 */
import type { SessionBoundVerifier } from '@tether/core';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { IngressStats, Route } from './types.js';

/** Latency buckets, seconds: from a cached-binding hit to a long application answer. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface IngressMetrics {
  registry: Registry;
  /** One request is over: `status` is the status sent, 0 when none was (reset, or the client left first). */
  request(route: Route, status: number, seconds: number): void;
  /** Count a failure or refusal of the ingress itself (not the verifier's) by reason. */
  fail(reason: string): void;
  /** Open client TLS connections. */
  connections(open: number): void;
}

/** A counter whose value is read at scrape time. */
function counterFrom(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function verifierMetrics(registry: Registry, v: SessionBoundVerifier, stats: IngressStats): void {
  counterFrom(registry, 'tether_ingress_proof_verifications_total', 'Full Session-Binding Proof verifications (signature checked)', () => v.stats.proofVerifications);
  counterFrom(registry, 'tether_ingress_binding_cache_hits_total', 'Requests served from the per-connection binding cache', () => v.stats.cacheHits);
  counterFrom(registry, 'tether_ingress_verified_total', 'Requests whose token and binding verified', () => v.stats.accepted);
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
}

export function createIngressMetrics(verifier: SessionBoundVerifier, stats: IngressStats): IngressMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: 'tether_ingress_requests_total',
    help: 'Requests by route (app, metadata, refused) and status sent (0: none, the stream was reset or the client left first)',
    labelNames: ['route', 'status'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tether_ingress_request_duration_seconds',
    help: 'Time from the request reaching the ingress until its response closed, by route and status',
    labelNames: ['route', 'status'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const open = new Gauge({ name: 'tether_ingress_connections', help: 'Open client TLS connections', registers: [registry] });
  verifierMetrics(registry, verifier, stats);
  return {
    registry,
    request(route, status, seconds) {
      const labels = { route, status: String(status) };
      requests.inc(labels);
      duration.observe(labels, seconds);
    },
    fail(reason) {
      stats.failures[reason] = (stats.failures[reason] ?? 0) + 1;
    },
    connections(n) {
      stats.connectionsOpen = n;
      open.set(n);
    },
  };
}
