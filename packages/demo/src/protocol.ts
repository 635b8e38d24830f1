/** Messages between the demo orchestrator and its child processes. */
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN } from '@tether/core';
import type { EgressRoute } from '@tether/sidecar';

export const TOKEN_EXCHANGE = GRANT_TYPE_TOKEN_EXCHANGE;
export { TOKEN_TYPE_ACCESS_TOKEN };

export interface EgressStartParams {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** One egress listener per purpose (all in this one process, which alone holds the key). */
  listeners: Array<{ name: string; routes: EgressRoute[] }>;
}

export interface EgressStatsSnapshot {
  requests: number;
  proofsSigned: number;
  proofCacheHits: number;
  retries: number;
  upstreamConnectionsOpened: number;
  failures: Record<string, number>;
}

export interface IngressStartParams {
  certFile: string;
  keyFile: string;
  caFile: string;
  upstream: string;
  issuer: string;
  jwksUri: string;
  audience: string[];
}

export interface IngressStatsSnapshot {
  requests: number;
  accepted: number;
  proofVerifications: number;
  cacheHits: number;
  failures: Record<string, number>;
  connectionsOpen: number;
}

export interface AgentRunParams {
  /** A's egress: MCP listener (route `b`) and token listener (route `as`). */
  egressUrl: string;
  tokenUrl: string;
  audienceB: string;
  users: Array<{ user: string; token: string }>;
  callsPerUser: number;
  progressSteps: number;
  tmbUser?: string;
  tmbToken?: string;
  ingressBUrl: string;
  caFile: string;
}

export interface AgentUserResult {
  user: string;
  /** Tool calls made (lookups + the streamed report). */
  calls: number;
  ok: number;
  /** Progress notifications received for the streamed tool. */
  progress: number;
  streamed: boolean;
  /** `sub` that service C saw. */
  sub: string | null;
  /** `act` chain that service C saw, outermost first. */
  actChain: string[];
  atB: unknown;
  fromC: unknown;
}

export interface AgentRunResult {
  users: AgentUserResult[];
  errors: string[];
  /** Distinct tokens A used towards B (one per user). */
  tokens: number;
  tmbViaSidecar?: { ok: boolean; principal: unknown; error?: string };
  tmbDirect?: { status: number; error: string | null };
}
