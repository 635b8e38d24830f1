/** What the demo reports, and what it can be asked to do. */
import type { UserLogin } from './login.js';
import type { AgentDiscovery } from './protocol.js';

export interface HopReport {
  hop: 'A->B' | 'B->C';
  /** Requests with a token the egress sent on this hop (MCP messages for A->B, API calls for B->C). */
  requests: number;
  /** Requests without a token on this hop: agent A's discovery (the first 401, the RFC 9728 metadata). */
  unauthenticated: number;
  /** Upstream TLS connections the egress opened for this hop. */
  connections: number;
  /** Distinct access tokens used on this hop. */
  tokens: number;
  /** Session-Binding Proofs signed by the egress. */
  proofsSigned: number;
  /** Full proof verifications (signature checked) at the ingress. */
  fullVerifications: number;
  /** Requests the ingress served from its per-connection binding cache. */
  cacheHits: number;
  /** Requests the ingress accepted. */
  accepted: number;
  /** proofsSigned / requests (requests with a token). */
  signaturesPerRequest: number;
}

export interface AttackReport {
  id: string;
  /** The draft's threat ID(s) (section 6.1; T6 from revision -07). */
  threat: string;
  attempt: string;
  where: string;
  expected: { status: number; error: string };
  status: number;
  error: string | null;
  /** Refused with exactly the expected status and error code. */
  pass: boolean;
}

export interface DemoReport {
  ok: boolean;
  durationMs: number;
  phasesMs: { setup: number; honest: number; attacks: number; shutdown: number };
  honest: {
    users: number;
    toolCalls: number;
    succeeded: number;
    /** Progress notifications received by A for the streamed tool, all users. */
    progressNotifications: number;
    /**
     * What service C saw for each user: subject and act chain (outermost actor first); what agent B
     * saw (the principal B's ingress verified); how the user logged in.
     */
    principals: Array<{ user: string; sub: string | null; actChain: string[]; atB: { sub: string | null; actChain: string[] }; login: string }>;
    tokenExchanges: { byA: number; byB: number };
    errors: string[];
  };
  /** The identity provider the users logged in at (its issuer). */
  identityProvider: { issuer: string };
  /** What agent A discovered from B's first 401 (MCP authorization: RFC 9728, RFC 8414). */
  discovery: AgentDiscovery | null;
  deferredKeyBinding: { viaSidecar: boolean; principal: unknown };
  hops: HopReport[];
  attacks: AttackReport[];
  /** Exit codes of the child processes after SIGTERM (0 = clean). */
  exitCodes: Record<string, number | null>;
}

export interface DemoOptions {
  callsPerUser?: number;
  progressSteps?: number;
  signal?: AbortSignal;
  /** How each user logs in at the identity provider (default: scripted, {@link scriptedLogin}). */
  login?: UserLogin;
  /** Called once the report is ready, before shutdown; resolve to shut down (`--keep-running`). */
  hold?: (stack: StackInfo, report: DemoReport) => Promise<void>;
}

export interface StackInfo {
  dir: string;
  caFile: string;
  pkiDir: string;
  issuer: string;
  tokenEndpoint: string;
  /** The identity provider (issuer) where the users log in. */
  identityProvider: string;
  /** B's MCP endpoint through A's egress (plain HTTP; the egress adds A's identity and proofs). */
  mcpUrlViaEgressA: string;
  /** The AS token endpoint through A's egress (mTLS as agent-a). */
  tokenUrlViaEgressA: string;
  ingressB: string;
  ingressC: string;
  /** A fresh token for B (alice, logged in at the IdP, via agent-a), usable only through A's egress. */
  tokenForB: string;
  pids: Record<string, number | undefined>;
}
