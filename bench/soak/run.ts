/** What the soak's workers share: the run's setup, its deadline, and the counts they keep. */
import type { Identity } from '../../test/adapters/raw.js';
import type { Outstanding } from '../deadline.js';
import type { SoakConfig } from './config.js';
import type { TokenPool } from './tokens.js';

/** Examples of lost or unexpected answers kept for the report. */
const EXAMPLES_MAX = 10;

export interface SoakRun {
  config: SoakConfig;
  origin: string;
  ca: string;
  client: Identity;
  attacker: Identity;
  pool: TokenPool;
  /** Requests in flight, named if the run misses its deadline. */
  outstanding: Outstanding;
  /** False once the run's duration is over: workers start no new batch or cycle. */
  running: () => boolean;
}

export interface AttackCount {
  sent: number;
  refusedAsExpected: number;
  wronglyAccepted: number;
  unexpected: number;
}

export interface HonestCount {
  requests: number;
  ok: number;
  lost: number;
  retries: number;
  networkErrors: number;
  lostByStatus: Record<string, number>;
  connectionCycles: number;
  connectionsOpened: number;
  proofsSigned: number;
  byProtocol: { h2: number; 'http/1.1': number };
}

export interface Tally {
  honest: HonestCount;
  lostExamples: string[];
  attacks: Record<string, AttackCount>;
  /** The honest requests attackers send on their own connections. */
  attackControls: { sent: number; ok: number; lost: number };
  unexpectedExamples: string[];
  attackerCycles: number;
  attackErrors: number;
}

/** Empty counts, one per attack kind in `attackKinds`' order (the report's order). */
export function newTally(attackKinds: string[]): Tally {
  return {
    honest: { requests: 0, ok: 0, lost: 0, retries: 0, networkErrors: 0, lostByStatus: {}, connectionCycles: 0, connectionsOpened: 0, proofsSigned: 0, byProtocol: { h2: 0, 'http/1.1': 0 } },
    lostExamples: [],
    attacks: Object.fromEntries(attackKinds.map((k) => [k, { sent: 0, refusedAsExpected: 0, wronglyAccepted: 0, unexpected: 0 }])),
    attackControls: { sent: 0, ok: 0, lost: 0 },
    unexpectedExamples: [],
    attackerCycles: 0,
    attackErrors: 0,
  };
}

export function attackTotals(attacks: Record<string, AttackCount>): AttackCount {
  return Object.values(attacks).reduce((a, c) => ({ sent: a.sent + c.sent, refusedAsExpected: a.refusedAsExpected + c.refusedAsExpected, wronglyAccepted: a.wronglyAccepted + c.wronglyAccepted, unexpected: a.unexpected + c.unexpected }), { sent: 0, refusedAsExpected: 0, wronglyAccepted: 0, unexpected: 0 });
}

export function attackSent(tally: Tally): number {
  return Object.values(tally.attacks).reduce((a, c) => a + c.sent, 0);
}

/** Keep `example` if fewer than EXAMPLES_MAX are kept already. */
export function keepExample(examples: string[], example: string): void {
  if (examples.length < EXAMPLES_MAX) examples.push(example);
}
