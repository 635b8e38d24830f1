/**
 * The egress counters: `stats` (in-process, for tests and embedding) and the Prometheus registry,
 * both updated here, where the event is reported. `tether_egress_requests_total{route,status}` and
 * `tether_egress_request_duration_seconds{route,status}` count every agent request exactly once,
 * when its response closes (however it ends), with the status sent (0 when none was).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EgressStats } from './types.js';

/** Latency buckets, seconds (the ingress's): from a cached-proof hit to a long upstream answer. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class EgressMetrics {
  readonly stats: EgressStats = {
    requests: 0,
    proofsSigned: 0,
    proofCacheHits: 0,
    retries: 0,
    connectionRetries: 0,
    connectRetries: 0,
    upstreamConnectionsOpened: 0,
    upstreamConnectionsOpen: 0,
    agentConnectionsOpen: 0,
    tokensFetched: 0,
    failures: {},
  };
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'status'>;
  readonly #duration: Histogram<'route' | 'status'>;
  readonly #proofsSigned: Counter;
  readonly #cacheHits: Counter;
  readonly #retries: Counter;
  readonly #connectionRetries: Counter;
  readonly #failures: Counter<'reason'>;
  readonly #upstreamOpen: Gauge;
  readonly #agentOpen: Gauge;

  /** `cachedProofs` reports the proof cache size over all open upstream connections. */
  constructor(cachedProofs: () => number) {
    const registers = [this.registry];
    const stats = this.stats;
    this.#requests = new Counter({
      name: 'tether_egress_requests_total',
      help: 'Agent requests by route (- when none was resolved) and status sent (0: none, the agent left or the response was reset first)',
      labelNames: ['route', 'status'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'tether_egress_request_duration_seconds',
      help: 'Time from the agent request reaching the egress until its response closed, by route and status',
      labelNames: ['route', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#proofsSigned = new Counter({ name: 'tether_egress_proofs_signed_total', help: 'Session-Binding Proofs signed', registers });
    this.#cacheHits = new Counter({ name: 'tether_egress_proof_cache_hits_total', help: 'Requests that reused a cached proof', registers });
    this.#retries = new Counter({ name: 'tether_egress_retries_total', help: 'Requests retried once on a fresh proof', registers });
    this.#connectionRetries = new Counter({
      name: 'tether_egress_connection_retries_total',
      help: 'Requests sent again on a new upstream connection after the previous one went away without a response',
      registers,
    });
    this.#failures = new Counter({ name: 'tether_egress_failures_total', help: 'Requests refused or failed by the egress, by reason', labelNames: ['reason'], registers });
    this.#upstreamOpen = new Gauge({ name: 'tether_egress_upstream_connections', help: 'Open upstream mTLS connections', registers });
    this.#agentOpen = new Gauge({ name: 'tether_egress_agent_connections', help: 'Open agent connections', registers });
    new Gauge({
      name: 'tether_egress_proofs_cached',
      help: 'Proofs cached over all open upstream connections',
      registers,
      collect() {
        this.set(cachedProofs());
      },
    });
    new Counter({
      name: 'tether_egress_upstream_connections_opened_total',
      help: 'Upstream mTLS connections opened',
      registers,
      collect() {
        this.reset();
        this.inc(stats.upstreamConnectionsOpened);
      },
    });
    new Counter({
      name: 'tether_egress_tokens_fetched_total',
      help: 'Access tokens the egress obtained from the token endpoint',
      registers,
      collect() {
        this.reset();
        this.inc(stats.tokensFetched);
      },
    });
    new Gauge({
      name: 'tether_signatures_per_request',
      help: 'Proofs signed divided by requests (1 = one signature per request, like DPoP; lower = amortized per connection)',
      registers,
      collect() {
        this.set(stats.requests === 0 ? 0 : stats.proofsSigned / stats.requests);
      },
    });
  }

  request(): void {
    this.stats.requests++;
  }

  /** One agent request is over (its response closed): `status` is the status sent, 0 when none was. */
  answered(route: string, status: number, seconds: number): void {
    const labels = { route, status: String(status) };
    this.#requests.inc(labels);
    this.#duration.observe(labels, seconds);
  }

  /**
   * A request refused before the handler (agent-listener.ts): counted in the request metrics (route
   * `-`) and by failure reason; `stats.requests` counts the requests that reached the handler.
   */
  refused(status: number, reason: string): void {
    this.failure(reason);
    this.answered('-', status, 0);
  }

  failure(reason: string): void {
    this.stats.failures[reason] = (this.stats.failures[reason] ?? 0) + 1;
    this.#failures.inc({ reason });
  }

  proofSigned(): void {
    this.stats.proofsSigned++;
    this.#proofsSigned.inc();
  }

  proofCacheHit(): void {
    this.stats.proofCacheHits++;
    this.#cacheHits.inc();
  }

  freshProofRetry(): void {
    this.stats.retries++;
    this.#retries.inc();
  }

  connectionRetry(): void {
    this.stats.connectionRetries++;
    this.#connectionRetries.inc();
  }

  connectRetry(): void {
    this.stats.connectRetries++;
  }

  upstreamConnection(open: boolean): void {
    if (open) this.stats.upstreamConnectionsOpened++;
    this.stats.upstreamConnectionsOpen += open ? 1 : -1;
    this.#upstreamOpen.set(this.stats.upstreamConnectionsOpen);
  }

  agentConnections(open: number): void {
    this.stats.agentConnectionsOpen = open;
    this.#agentOpen.set(open);
  }

  tokensFetched(n: number): void {
    this.stats.tokensFetched += n;
  }
}
