/** The egress and ingress sidecar roles. */
import { readFileSync } from 'node:fs';
import type { EgressSidecar, IngressSidecar } from '@tether/sidecar';
import type { EgressStartParams, EgressStatsSnapshot, IngressStartParams, IngressStatsSnapshot } from '../protocol.js';
import type { RoleHandlers } from './shared.js';

export function egressRole(): RoleHandlers {
  const listeners = new Map<string, EgressSidecar>();
  return {
    methods: {
      async start(params) {
        const p = params as EgressStartParams;
        const cert = readFileSync(p.certFile);
        const key = readFileSync(p.keyFile);
        const ca = readFileSync(p.caFile);
        const { startEgress } = await import('@tether/sidecar');
        const urls: Record<string, string> = {};
        for (const l of p.listeners) {
          const egress = await startEgress({ listen: '127.0.0.1:0', cert, key, ca, routes: l.routes, log: { level: 'silent' } });
          listeners.set(l.name, egress);
          urls[l.name] = egress.url;
        }
        return urls;
      },
      stats(): Record<string, EgressStatsSnapshot> {
        const out: Record<string, EgressStatsSnapshot> = {};
        for (const [name, e] of listeners) {
          const s = e.stats;
          out[name] = { requests: s.requests, proofsSigned: s.proofsSigned, proofCacheHits: s.proofCacheHits, retries: s.retries, upstreamConnectionsOpened: s.upstreamConnectionsOpened, failures: { ...s.failures } };
        }
        return out;
      },
    },
    async close() {
      await Promise.all([...listeners.values()].map((e) => e.close()));
    },
  };
}

export function ingressRole(): RoleHandlers {
  let ingress: IngressSidecar | undefined;
  return {
    methods: {
      async start(params) {
        const p = params as IngressStartParams;
        const ca = readFileSync(p.caFile);
        const { startIngress } = await import('@tether/sidecar');
        const { jwtAccessTokenValidator, remoteJwks } = await import('@tether/core');
        ingress = await startIngress({
          listen: '127.0.0.1:0',
          cert: readFileSync(p.certFile),
          key: readFileSync(p.keyFile),
          ca,
          upstream: p.upstream,
          tokens: jwtAccessTokenValidator({ keys: remoteJwks(p.jwksUri, { ca }), issuer: p.issuer, audience: p.audience }),
          authorizationServers: [p.issuer],
          ...(p.resource === undefined ? {} : { resource: p.resource }),
          log: { level: 'silent' },
        });
        return ingress.url;
      },
      stats(): IngressStatsSnapshot {
        const v = (ingress as IngressSidecar).verifier.stats;
        return { requests: v.requests, accepted: v.accepted, proofVerifications: v.proofVerifications, cacheHits: v.cacheHits, failures: { ...v.failures }, connectionsOpen: (ingress as IngressSidecar).state().connections };
      },
    },
    async close() {
      await ingress?.close();
    },
  };
}
