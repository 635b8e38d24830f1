/**
 * In-process microbenchmark of the resource server's verification work, for profiling (issue 13):
 * CPU µs per call of each row below, rows alternating, median of rounds. No HTTP, no TLS: the
 * verifier rows run `createSessionBoundVerifier().verify()` on a `ConnectionContext` implemented
 * here (the interface allows it) with the certificate, key, thumbprint and exporter value a TLS
 * connection would give, so they measure the library's per-request work alone.
 *
 * - `primitive`: raw ES256 `crypto.verify` with a P-256 key object (the floor);
 * - `session-proof`: `verifySessionBindingProof` given only the certificate (as bench/verify-cost.ts);
 * - `session-proof-rs`: the same with the connection's key, thumbprint and `ath` passed, as the verifier does;
 * - `dpop`: `verifyDpopProof`, key cache warm, fresh `jti` each;
 * - `verify-bearer` / `verify-session` / `verify-dpop`: the verifier's `verify()` for a new token
 *   each call (M=1), the token validator's cache warm: for session/DPoP one proof verification each;
 * - `verify-bearer-again` / `verify-session-again`: one token (and proof) presented on every call,
 *   the binding cached after the first (the per-request cost at large M).
 *
 *   node --import tsx bench/verify-micro.ts [--samples N] [--rounds R] [--only row,row]
 *
 * Profile the timed rounds only (not the setup): `--profile FILE.cpuprofile` (node:inspector,
 * sampling every 50 µs), for example `--only dpop --profile /tmp/dpop.cpuprofile`;
 * or count instructions, immune to machine noise: `valgrind --tool=callgrind --dump-before=uv_getrusage
 * node --import tsx bench/verify-micro.ts --only dpop --samples 200 --rounds 1` writes one dump per
 * interval between `process.cpuUsage()` calls, so each timed loop is a dump of its own (bench/callgrind-loops.sh).
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { SignJWT, exportJWK } from 'jose';
import { createDevPki } from '@tether/pki';
import {
  MemoryReplayStore,
  accessTokenHash,
  certificateThumbprint,
  createSessionBindingProof,
  createSessionBoundVerifier,
  jwtAccessTokenValidator,
  localJwks,
  sessionBoundConfirmation,
  verifySessionBindingProof,
  type ConnectionContext,
  type RequestInput,
} from '@tether/core';
import { createDpopProof, jwkThumbprint, publicJwkOf, verifyDpopProof } from '@tether/core/dpop';
import { median } from './median.js';

const ROWS = ['primitive', 'session-proof', 'session-proof-rs', 'dpop', 'verify-bearer', 'verify-session', 'verify-dpop', 'verify-bearer-again', 'verify-session-again'] as const;
type Row = (typeof ROWS)[number];

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const samples = Number(arg('--samples') ?? 2000);
const rounds = Number(arg('--rounds') ?? 7);
const only = (arg('--only')?.split(',') ?? ROWS) as Row[];
const profileOut = arg('--profile');
const HTU = 'https://rs.bench/resource';

async function main(): Promise<void> {
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  const certificate = new X509Certificate(client.cert);
  const privateKey = createPrivateKey(client.key);
  const publicKey: KeyObject = certificate.publicKey;
  const thumbprint = certificateThumbprint(certificate);
  const ekm = randomBytes(32);
  const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const publicJwk = publicJwkOf(dpopKey);
  const as = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = { keys: [{ ...(await exportJWK(as.publicKey)), kid: 'b1', alg: 'ES256' }] };
  const mint = (cnf: unknown, i: number) =>
    new SignJWT({ client_id: 'bench', scope: 'read', ...(cnf === undefined ? {} : { cnf }) })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'b1' })
      .setIssuer('https://as.bench').setAudience('https://rs.bench').setSubject(`u${i}`)
      .setIssuedAt().setExpirationTime('1h').sign(as.privateKey);

  // Every round gets fresh tokens and proofs (the verifier caches by token; DPoP jti are single use).
  const total = samples * (rounds + 1);
  const tokens = Array.from({ length: total }, (_, i) => `bench-token-${i}-${randomBytes(8).toString('hex')}`);
  const wanted = (r: Row) => only.includes(r);
  // Inputs of the rows that run only (setup dominates a run under valgrind).
  const data = tokens.map((t) => Buffer.from(t));
  const signatures = wanted('primitive') ? data.map((d) => sign('sha256', d, { key: privateKey, dsaEncoding: 'ieee-p1363' })) : [];
  const proofs = wanted('session-proof') || wanted('session-proof-rs') ? await Promise.all(tokens.map((accessToken) => createSessionBindingProof({ privateKey, certificate, accessToken, ekm }))) : [];
  const aths = tokens.map((t) => accessTokenHash(t));
  const dpopProofs = wanted('dpop') ? await Promise.all(tokens.map((accessToken) => createDpopProof({ privateKey: dpopKey, publicJwk, htm: 'GET', htu: HTU, accessToken }))) : [];
  const jwts = {
    bearer: wanted('verify-bearer') || wanted('verify-bearer-again') ? await Promise.all(tokens.map((_, i) => mint(undefined, i))) : [],
    session: wanted('verify-session') || wanted('verify-session-again') ? await Promise.all(tokens.map((_, i) => mint(sessionBoundConfirmation(certificate), i))) : [],
    dpop: wanted('verify-dpop') ? await Promise.all(tokens.map(async (_, i) => mint({ jkt: await jwkThumbprint(publicJwk) }, i))) : [],
  };
  const sessionProofs = await Promise.all(jwts.session.map((accessToken) => createSessionBindingProof({ privateKey, certificate, accessToken, ekm })));
  const proofCopies = wanted('verify-session-again') ? tokens.map(() => Buffer.from(sessionProofs[0] as string).toString('latin1')) : [];
  const verifierDpopProofs = await Promise.all(jwts.dpop.map((accessToken) => createDpopProof({ privateKey: dpopKey, publicJwk, htm: 'GET', htu: HTU, accessToken })));

  const connection: ConnectionContext = {
    id: 1,
    protocol: 'TLSv1.3',
    authorized: true,
    certificate,
    thumbprint,
    publicKey,
    exporter: () => ekm,
    onClose: () => undefined,
    closed: false,
  };
  // One verifier per kind, its tokens validated beforehand, as in the matrix (whose tokens recur
  // across cells): the verifier rows measure what a request costs beyond the token signature.
  const verifierOf = async (kind: readonly string[]) => {
    const tokens = jwtAccessTokenValidator({ keys: localJwks(jwks), issuer: 'https://as.bench', audience: 'https://rs.bench' });
    for (const jwt of kind) await tokens.validate(jwt);
    return createSessionBoundVerifier({ tokens, minimumBinding: 'none', dpop: { maxAge: 3600 } });
  };
  const verifiers = { bearer: await verifierOf(jwts.bearer), session: await verifierOf(jwts.session), dpop: await verifierOf(jwts.dpop) };
  const input = (authorization: string, proof: string | undefined, dpop: string | undefined): RequestInput => ({
    method: 'GET',
    scheme: 'https',
    authority: 'rs.bench',
    path: '/resource',
    authorization: [authorization],
    sessionBindingProof: proof === undefined ? [] : [proof],
    ...(dpop === undefined ? {} : { dpop: [dpop] }),
    connection,
  });

  const replayStore = new MemoryReplayStore();
  let offset = 0;
  const calls: Record<Row, (i: number) => unknown> = {
    primitive: (i) => {
      if (!verify('sha256', data[i] as Buffer, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signatures[i] as Buffer)) throw new Error('bad signature');
    },
    'session-proof': (i) => verifySessionBindingProof(proofs[i] as string, { certificate, ekm, accessToken: tokens[i] as string }),
    'session-proof-rs': (i) => verifySessionBindingProof(proofs[i] as string, { certificate, publicKey, thumbprint, ekm, ath: aths[i] as string }),
    // maxAge: an hour, so proofs made in a slow setup (valgrind) are still fresh; the checks are the same.
    dpop: (i) => verifyDpopProof(dpopProofs[i] as string, { htm: 'GET', htu: HTU, accessToken: tokens[i] as string, replayStore, maxAge: 3600 }),
    'verify-bearer': (i) => verifiers.bearer.verify(input(`Bearer ${jwts.bearer[i]}`, undefined, undefined)),
    'verify-session': (i) => verifiers.session.verify(input(`Bearer ${jwts.session[i]}`, sessionProofs[i], undefined)),
    'verify-dpop': (i) => verifiers.dpop.verify(input(`DPoP ${jwts.dpop[i]}`, undefined, verifierDpopProofs[i])),
    // Header values are fresh strings per request at an RS (parsed from the frame): copies here too.
    'verify-bearer-again': () => verifiers.bearer.verify(input(`Bearer ${jwts.bearer[0]}`, undefined, undefined)),
    'verify-session-again': (i) => verifiers.session.verify(input(`Bearer ${jwts.session[0]}`, proofCopies[i], undefined)),
  };
  async function loop(row: Row): Promise<number> {
    const call = calls[row];
    // With --expose-gc: each loop starts on a collected heap, so it pays for its own garbage only.
    (globalThis as { gc?: () => void }).gc?.();
    const start = process.cpuUsage();
    for (let i = offset; i < offset + samples; i++) await call(i);
    const used = process.cpuUsage(start);
    return (used.user + used.system) / samples;
  }
  const results = Object.fromEntries(only.map((r) => [r, [] as number[]])) as Record<Row, number[]>;
  for (const row of only) await loop(row); // warm-up round (JIT, key cache), not reported
  offset += samples;
  const session = profileOut === undefined ? undefined : new Session();
  if (session !== undefined) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 50 });
    await session.post('Profiler.start');
  }
  for (let round = 0; round < rounds; round++) {
    for (const row of only) results[row].push(await loop(row));
    offset += samples;
  }
  if (session !== undefined) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(profileOut as string, JSON.stringify(profile));
    session.disconnect();
  }
  const p = wanted('primitive') ? median(results.primitive) : undefined;
  console.log(`samples ${samples}, rounds ${rounds}; CPU µs/call median (min..max)${p === undefined ? '' : ', x primitive (median of per-round ratios)'}`);
  for (const row of only) {
    const xs = results[row];
    const ratios = wanted('primitive') ? xs.map((x, k) => x / (results.primitive[k] as number)) : [];
    const ratio = ratios.length > 0 ? `  x ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)})` : '';
    console.log(`${row.padEnd(18)} ${median(xs).toFixed(1).padStart(7)} (${Math.min(...xs).toFixed(1)}..${Math.max(...xs).toFixed(1)})${ratio}`);
  }
}

await main();
