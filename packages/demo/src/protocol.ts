/** Messages between the demo orchestrator and its child processes. */
import { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN } from '@tether/core';
import type { EgressRoute } from '@tether/sidecar';
import type { IdentityProviderClient, IdentityProviderUser } from './idp/index.js';

export const TOKEN_EXCHANGE = GRANT_TYPE_TOKEN_EXCHANGE;
export { TOKEN_TYPE_ACCESS_TOKEN };

export interface IdpStartParams {
  certFile: string;
  keyFile: string;
  users: IdentityProviderUser[];
  clients: IdentityProviderClient[];
  /** The tether AS's resource identifier at the IdP: the `aud` of the access tokens it issues. */
  resource: string;
}

export interface AsStartParams {
  pkiDir: string;
  dataDir: string;
  /** Users whose tokens may be bound to `tmbHolder`'s sidecar key (deferred key binding). */
  tmbUsers: string[];
  tmbHolder: string;
  /** The identity provider whose access tokens `clients` may exchange (trustedIssuers). */
  idp: { issuer: string; caFile: string; audience: string; clients: string[]; claims: string[] };
  /** Certificates in the PKI that are not registered at the AS (an intruder from the same CA). */
  unregistered: string[];
  /** More identifiers of registered clients: RFC 8707 resource URLs naming them (`agent-b` -> its MCP resource). */
  identifiers: Record<string, string[]>;
}

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
  /** `resource` of the RFC 9728 metadata (default: https:// + the authority the client used). */
  resource?: string;
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
  /** A's egress listeners: `mcp` (route `b` to B's ingress) and `token` (route `as` to the AS). */
  egress: { mcp: string; token: string };
  /** Each user's access token from the identity provider (what A received after the login). */
  users: Array<{ user: string; token: string }>;
  callsPerUser: number;
  progressSteps: number;
  tmbUser?: string;
  tmbToken?: string;
  ingressBUrl: string;
  caFile: string;
}

/** What A discovered before its first token request (MCP authorization, RFC 9728 and RFC 8414). */
export interface AgentDiscovery {
  /** `resource_metadata` of the first 401 (an upstream URL, fetched through the egress). */
  resourceMetadata: string;
  /** `resource` of that metadata: sent as the RFC 8707 `resource` parameter. */
  resource: string;
  authorizationServer: string;
  tokenEndpoint: string;
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
  /** `sub` and `act` chain that agent B saw (the principal its ingress verified). */
  atBSub: string | null;
  atBActChain: string[];
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
  discovery?: AgentDiscovery;
}
