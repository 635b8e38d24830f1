/**
 * The patterns of the benchmark matrix (bench/matrix.ts), sized by bench/matrix/config.ts; `--only`
 * selects some of them.
 */
import type { ForkedChild } from '../children.js';
import type { CellMeasurement } from '../load/recorder.js';
import { MODES, type Mode } from '../load/signer.js';
import { agentMix, churnBehindEgress, connectionPerRequest, keepAlivePool, longLivedH2, type PatternContext } from '../load/patterns.js';
import { ASK_TIMEOUT_MS, config, only } from './config.js';

export interface Scenario {
  id: string;
  pattern: 'h2-long' | 'h2-long-presigned' | 'conn-per-request' | 'conn-per-request-resumed' | 'h1-pool' | 'agent-mix' | 'egress-churn';
  /** The modes this pattern runs (default: all). */
  modes?: readonly Mode[];
  /** Requests per token on one connection (h2-long and h1-pool). */
  m?: number;
  tokens: number;
  description: string;
  /** Which RS process serves it. */
  rs: 'main' | 'idle';
  run: (ctx: PatternContext, tokens: string[]) => Promise<CellMeasurement>;
}

export /** A new TLS 1.3 connection per request: full handshake, or PSK resumption with `resume`. */
function connectionPerRequestScenario(resume: boolean): Scenario {
  const id = resume ? 'conn-per-request-resumed' : 'conn-per-request';
  return {
    id,
    pattern: id,
    tokens: config.perConnTokens,
    description: `new TLS 1.3 connection per request (${resume ? 'PSK resumption' : 'full handshake'}, HTTP/1.1), ${config.perConnRequests} requests, ${config.perConnWorkers} workers`,
    rs: 'main',
    run: (ctx, t) => connectionPerRequest(ctx, t.slice(0, config.perConnTokens), config.perConnRequests, config.perConnWorkers, resume),
  };
}

const allScenarios: Scenario[] = [
  ...config.mValues.map((m): Scenario => {
    const n = Math.max(1, Math.round(config.longRequests / m));
    return {
      id: `h2-long-m${m}`,
      pattern: 'h2-long',
      m,
      tokens: n,
      description: `one HTTP/2 connection, ${n} tokens x ${m} requests, ${config.concurrency} streams in flight`,
      rs: 'main',
      run: (ctx, t) => longLivedH2(ctx, t.slice(0, n), m, config.concurrency),
    };
  }),
  {
    // The RS cost of a first presentation, apart from the load generator's pace: signing as it goes,
    // the client is slower in session mode than in bearer, so the RS reads fewer requests per
    // wake-up and pays more per request for reasons that are not the proof.
    id: 'h2-long-m1-presigned',
    pattern: 'h2-long-presigned',
    m: 1,
    tokens: config.longRequests,
    description: `as h2-long-m1 (${config.longRequests} tokens x 1 request), the session proofs signed before the timed window`,
    modes: ['bearer', 'session'],
    rs: 'main',
    run: (ctx, t) => longLivedH2(ctx, t.slice(0, config.longRequests), 1, config.concurrency, true),
  },
  connectionPerRequestScenario(false),
  connectionPerRequestScenario(true),
  {
    id: 'h1-pool',
    pattern: 'h1-pool',
    m: config.poolM,
    tokens: config.poolTokens,
    description: `HTTP/1.1 keep-alive pool of ${config.poolSize}, ${config.poolTokens} tokens x ${config.poolM} requests`,
    rs: 'main',
    run: (ctx, t) => keepAlivePool(ctx, t.slice(0, config.poolTokens), config.poolM, config.poolSize),
  },
  {
    id: 'agent-mix',
    pattern: 'agent-mix',
    tokens: config.agent.connections * config.agent.usersPerConnection,
    description:
      `agent-like mix: ${config.agent.connections} HTTP/2 connections x ${config.agent.usersPerConnection} users, bursts of ${config.agent.burst} calls, ` +
      `${config.agent.rounds} rounds, ${config.agent.gapMs} ms idle gaps > ${config.idleMs} ms RS idle timeout (connection dropped; next burst resumes; a connection dropped mid-burst is reopened and the call retried once)`,
    rs: 'idle',
    run: (ctx, t) => agentMix(ctx, t, config.agent),
  },
  {
    id: 'egress-churn',
    pattern: 'egress-churn',
    tokens: config.perConnTokens,
    description:
      `agent churn behind the egress sidecar: a new plain HTTP/1.1 connection from the agent to the egress for every request (${config.perConnRequests} requests, ${config.perConnWorkers} agents, ${config.perConnTokens} tokens); ` +
      'the egress keeps its HTTP/2 mTLS connection to the RS and adds the Session-Binding Proofs (Bearer tokens); DPoP: the agent signs a proof per request, the egress forwards it',
    modes: ['bearer', 'session', 'dpop'],
    rs: 'main',
    run: async (ctx, t) => {
      const egress = egressSidecar as EgressSidecar;
      const meas = await churnBehindEgress({ ...ctx, beforeTimed: async () => (await ctx.beforeTimed(), await egress.child.ask({ cmd: 'reset' }, ASK_TIMEOUT_MS)) }, egress.address, t.slice(0, config.perConnTokens), config.perConnRequests, config.perConnWorkers);
      const report = await egress.child.ask<{ cpuMicros: number; proofsSigned: number }>({ cmd: 'report' }, ASK_TIMEOUT_MS);
      return { ...meas, sidecarCpuMicros: report.cpuMicros };
    },
  },
];

export interface EgressSidecar {
  child: ForkedChild;
  address: { host: string; port: number };
}
/** The egress sidecar of the `egress-churn` pattern (a bench/sidecar-process.ts child), started in main. */
let egressSidecar: EgressSidecar | undefined;
/** Called by main once the egress child has started, before any `egress-churn` cell runs. */
export function useEgressSidecar(egress: EgressSidecar): void {
  egressSidecar = egress;
}

export const modesOf = (s: Scenario): readonly Mode[] => s.modes ?? MODES;
export const scenarios = allScenarios.filter((s) => only?.includes(s.id) ?? true);
if (scenarios.length === 0) throw new Error(`--only matched no pattern; known: ${allScenarios.map((s) => s.id).join(', ')}`);
