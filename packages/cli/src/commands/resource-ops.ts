/**
 * Operations support of `tether resource`: its counters as Prometheus text (for the
 * `--metrics-listen` listener), its readiness, and the background retry of a JWKS URL that could
 * not be fetched at start.
 */
import type { RemoteJwksStats } from '@tether/core';
import type { Readiness } from '@tether/core/node';

export const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

/** The resource's counters: what `stats()` returns and what the metrics are made of. */
export interface ResourceStats {
  requests: number;
  accepted: number;
  proofVerifications: number;
  cacheHits: number;
  failures: Record<string, number>;
  /** Verified bindings currently cached. */
  bindings: number;
  /** Open TLS connections. */
  connections: number;
  jwks?: RemoteJwksStats;
}

function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Prometheus exposition text (format 0.0.4) of the resource's counters. */
export function resourceMetricsText(s: ResourceStats): string {
  const out: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: Array<[string, number]>) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels} ${value}`);
  };
  metric('tether_resource_requests_total', 'counter', 'Requests verified', [['', s.requests]]);
  metric('tether_resource_accepted_total', 'counter', 'Requests accepted', [['', s.accepted]]);
  metric('tether_resource_proof_verifications_total', 'counter', 'Session-Binding Proofs verified', [['', s.proofVerifications]]);
  metric('tether_resource_binding_cache_hits_total', 'counter', 'Requests accepted from the binding cache', [['', s.cacheHits]]);
  const reasons = Object.keys(s.failures).sort();
  metric('tether_resource_failures_total', 'counter', 'Refused requests by reason', reasons.map((r) => [`{reason="${labelValue(r)}"}`, s.failures[r] as number]));
  metric('tether_resource_bindings', 'gauge', 'Verified bindings cached', [['', s.bindings]]);
  metric('tether_resource_connections', 'gauge', 'Open TLS connections', [['', s.connections]]);
  if (s.jwks !== undefined) {
    metric('tether_resource_jwks_fetches_total', 'counter', 'JWKS fetches', [['', s.jwks.fetches]]);
    metric('tether_resource_jwks_fetch_failures_total', 'counter', 'Failed JWKS fetches', [['', s.jwks.failures]]);
    metric('tether_resource_jwks_keys', 'gauge', 'Keys in the last good JWKS', [['', s.jwks.keys]]);
  }
  return `${out.join('\n')}\n`;
}

/**
 * Readiness of the resource, first failing condition wins: `draining` once closing, then
 * `not_listening`, `certificate_expired` (the server certificate's notAfter has passed),
 * `jwks_unavailable` (a JWKS URL never fetched successfully).
 */
export function resourceReadiness(s: { closing: boolean; listening: boolean; certificateNotAfter: number; now: number; jwks: RemoteJwksStats | undefined }): Readiness {
  if (s.closing) return { ready: false, reason: 'draining' };
  if (!s.listening) return { ready: false, reason: 'not_listening' };
  if (!(s.now < s.certificateNotAfter)) return { ready: false, reason: 'certificate_expired' };
  if (s.jwks !== undefined && s.jwks.keys === 0) return { ready: false, reason: 'jwks_unavailable' };
  return { ready: true };
}

/**
 * Retry `reload` until it succeeds: after 1 s, then doubling up to 30 s. The resolver refetches on
 * its own only when a token names an unknown `kid` (and at most once per cooldown), so without
 * this a resource started while its issuer was down would stay unready until traffic arrived.
 * `stop` cancels the pending retry.
 */
export function retryUntilLoaded(reload: () => Promise<boolean>, firstDelayMs = 1000, maxDelayMs = 30_000): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = (delay: number) => {
    timer = setTimeout(() => {
      reload().then(
        (ok) => {
          if (!ok && !stopped) schedule(Math.min(delay * 2, maxDelayMs));
        },
        () => {
          if (!stopped) schedule(Math.min(delay * 2, maxDelayMs));
        },
      );
    }, delay);
    timer.unref();
  };
  schedule(firstDelayMs);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
