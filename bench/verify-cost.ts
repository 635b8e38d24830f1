/**
 * In-process cost of one verification, CPU µs per call (issue 13 items 2 and 3), measured in the
 * process that calls it (the matrix RS child, so in the same run as the matrix):
 *
 * - `primitive`: a raw ES256 signature check, `crypto.verify('sha256', ..., {dsaEncoding:
 *   'ieee-p1363'})` with a P-256 public key object, the floor every proof verification pays;
 * - `session-proof`: `verifySessionBindingProof`, a first presentation (distinct proofs, each for a
 *   new token so its `ath` is hashed in the call), called as the verifier calls it: with the
 *   connection's public key and `x5t#S256`, which a connection derives once, not per proof;
 * - `dpop`: `verifyDpopProof`, distinct proofs by one client key (its key cache warm, as at an RS);
 * - `dpop-jose`: what a user would otherwise write with jose: `jwtVerify(proof, EmbeddedJWK,
 *   {typ: 'dpop+jwt'})` then `calculateJwkThumbprint` of the header's `jwk`, plus the same `ath`.
 *
 * Inputs are made before the timed loops; each loop runs `samples` calls and is timed with
 * `process.cpuUsage()`. Loops alternate `rounds` times; the median round is reported.
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify } from 'jose';
import { MemoryReplayStore, accessTokenHash, certificateThumbprint, createSessionBindingProof, verifySessionBindingProof } from '@tether/core';
import { createDpopProof, publicJwkOf, verifyDpopProof } from '@tether/core/dpop';
import { median } from './median.js';

export const VERIFY_COST_ROWS = ['primitive', 'session-proof', 'dpop', 'dpop-jose'] as const;
export type VerifyCostRow = (typeof VERIFY_COST_ROWS)[number];
export type VerifyCosts = Record<VerifyCostRow, { cpuUsPerCall: number; rounds: number[] }>;

const HTU = 'https://rs.bench/resource';

async function cpuPerCall(samples: number, call: (i: number) => unknown): Promise<number> {
  const start = process.cpuUsage();
  for (let i = 0; i < samples; i++) await call(i);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / samples;
}


/** Measure every row; `certPem`/`keyPem` are the client certificate and key the proofs are made with. */
export async function measureVerifyCosts(certPem: string, keyPem: string, samples: number, rounds: number): Promise<VerifyCosts> {
  const certificate = new X509Certificate(certPem);
  const privateKey = createPrivateKey(keyPem);
  const publicKey: KeyObject = certificate.publicKey;
  const thumbprint = certificateThumbprint(certificate);
  const ekm = randomBytes(32);
  const tokens = Array.from({ length: samples }, (_, i) => `bench-token-${i}-${randomBytes(8).toString('hex')}`);
  const data = tokens.map((t) => Buffer.from(t));
  const signatures = data.map((d) => sign('sha256', d, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
  const proofs = await Promise.all(tokens.map((accessToken) => createSessionBindingProof({ privateKey, certificate, accessToken, ekm })));
  const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const publicJwk = publicJwkOf(dpopKey);
  // Fresh jti per proof; the proofs of each round go to a fresh replay store.
  const dpopProofs = await Promise.all(tokens.map((accessToken) => createDpopProof({ privateKey: dpopKey, publicJwk, htm: 'GET', htu: HTU, accessToken })));

  const loops: Record<VerifyCostRow, () => Promise<number>> = {
    primitive: () =>
      cpuPerCall(samples, (i) => {
        if (!verify('sha256', data[i] as Buffer, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signatures[i] as Buffer)) throw new Error('primitive: bad signature');
      }),
    'session-proof': () => cpuPerCall(samples, (i) => verifySessionBindingProof(proofs[i] as string, { certificate, publicKey, thumbprint, ekm, accessToken: tokens[i] as string })),
    dpop: () => {
      const replayStore = new MemoryReplayStore();
      return cpuPerCall(samples, (i) => verifyDpopProof(dpopProofs[i] as string, { htm: 'GET', htu: HTU, accessToken: tokens[i] as string, replayStore }));
    },
    'dpop-jose': () =>
      cpuPerCall(samples, async (i) => {
        const { payload, protectedHeader } = await jwtVerify(dpopProofs[i] as string, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
        const jkt = await calculateJwkThumbprint(protectedHeader.jwk as Parameters<typeof calculateJwkThumbprint>[0]);
        if (payload.ath !== accessTokenHash(tokens[i] as string) || payload.htm !== 'GET' || payload.htu !== HTU || jkt.length !== 43) throw new Error('dpop-jose: mismatch');
      }),
  };
  const out = Object.fromEntries(VERIFY_COST_ROWS.map((r) => [r, { cpuUsPerCall: 0, rounds: [] as number[] }])) as VerifyCosts;
  await loops.dpop(); // the key cache holds the client's key, as at an RS after its first proof
  for (let round = 0; round < rounds; round++) {
    for (const row of VERIFY_COST_ROWS) out[row].rounds.push(await loops[row]());
  }
  for (const row of VERIFY_COST_ROWS) out[row].cpuUsPerCall = median(out[row].rounds);
  return out;
}

interface CellCost {
  repeat: number;
  rsCpuUs: number;
}
type CellsOf = (scenario: string, mode: 'bearer' | 'session' | 'dpop' | 'dpop-jose') => CellCost[];

/** Median over repeats of (mode − bearer RS CPU per request in the same repeat) / primitive. */
function extraOverPrimitive(cells: CellsOf, scenario: string, mode: 'session' | 'dpop' | 'dpop-jose', primitive: number): number[] {
  const bearer = cells(scenario, 'bearer');
  return cells(scenario, mode).flatMap((c) => {
    const b = bearer.find((x) => x.repeat === c.repeat);
    return b === undefined ? [] : [(c.rsCpuUs - b.rsCpuUs) / primitive];
  });
}

const spread = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}..${Math.max(...xs).toFixed(2)})`;

/** The targets of issue 13 items 2 and 3, against the primitive measured in the same run. */
/**
 * `row` / primitive: the median of the ratios of the same round (the loops of a round run back to
 * back, so a machine that slows down for a while slows both), not a ratio of medians.
 */
export function overPrimitive(costs: VerifyCosts, row: VerifyCostRow): number {
  return median(costs[row].rounds.map((v, i) => v / (costs.primitive.rounds[i] as number)));
}

export function verifyCostTargets(costs: VerifyCosts, cells: CellsOf): Array<{ claim: string; scenario: string; value: string; holds: boolean | null }> {
  const p = costs.primitive.cpuUsPerCall;
  const x = (row: VerifyCostRow) => overPrimitive(costs, row);
  const out: Array<{ claim: string; scenario: string; value: string; holds: boolean | null }> = [];
  const first = extraOverPrimitive(cells, 'h2-long-m1-presigned', 'session', p);
  if (first.length > 0) {
    out.push({ claim: 'first Session-Binding-Proof verification at the RS <= 1.3x a raw P-256 verification (RS CPU/request session - bearer, h2-long M=1 with proofs signed before the timed window, / primitive)', scenario: 'h2-long-m1-presigned', value: spread(first), holds: median(first) <= 1.3 });
  }
  const paced = extraOverPrimitive(cells, 'h2-long-m1', 'session', p);
  if (paced.length > 0) {
    out.push({ claim: 'the same with the client signing as it goes (h2-long M=1; informational: the RS runs at a slower client\'s pace)', scenario: 'h2-long-m1', value: spread(paced), holds: null });
  }
  out.push({ claim: 'verifySessionBindingProof in the RS process / primitive (informational)', scenario: '-', value: x('session-proof').toFixed(2), holds: null });
  out.push({ claim: 'DPoP verification <= 1.5x a raw verification (verifyDpopProof in the RS process / primitive)', scenario: '-', value: x('dpop').toFixed(2), holds: x('dpop') <= 1.5 });
  out.push({ claim: "jose's standard DPoP path in the RS process / primitive (informational)", scenario: '-', value: x('dpop-jose').toFixed(2), holds: null });
  for (const mode of ['dpop', 'dpop-jose'] as const) {
    const wire = extraOverPrimitive(cells, 'h2-long-m100', mode, p);
    if (wire.length > 0) out.push({ claim: `${mode} at the RS: (RS CPU/request ${mode} - bearer, h2-long M=100) / primitive (informational)`, scenario: 'h2-long-m100', value: spread(wire), holds: null });
  }
  return out;
}

/** The "primitive" table of the matrix: CPU per verification in the RS process. */
export function verifyCostTable(costs: VerifyCosts): string[] {
  const what: Record<VerifyCostRow, string> = {
    primitive: 'raw `crypto.verify` ES256 (P-256 key object): the floor',
    'session-proof': '`verifySessionBindingProof`, first presentation (distinct proofs and tokens; connection key and thumbprint given, as the verifier does)',
    dpop: '`verifyDpopProof` (client key cached, fresh `jti` each)',
    'dpop-jose': "jose's standard path: `jwtVerify` + `EmbeddedJWK` + `calculateJwkThumbprint`",
  };
  return [
    '## Cost of one verification (in the RS process, same run)',
    '',
    `Median of ${costs.primitive.rounds.length} rounds; CPU µs per call (process.cpuUsage).`,
    '',
    '| row | what | CPU µs/call | x primitive (same round) | rounds |',
    '|---|---|---|---|---|',
    ...VERIFY_COST_ROWS.map((r) => `| ${r} | ${what[r]} | ${costs[r].cpuUsPerCall.toFixed(1)} | ${overPrimitive(costs, r).toFixed(2)} | ${costs[r].rounds.map((v) => v.toFixed(1)).join(', ')} |`),
  ];
}
