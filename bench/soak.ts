/**
 * Load and soak (issue 7): a long run with connection churn and many tokens per connection, honest
 * and attacker traffic interleaved on one resource server, over HTTP/2 and HTTP/1.1.
 *
 * The resource server runs in a child process (bench/soak-rs.ts, started with --expose-gc) so its
 * heap and RSS are sampled on their own, after a full GC; this process is the load generator.
 *
 *   npm run soak                                  # 300 s
 *   npm run soak -- --duration 3600               # the hour run (bench/results/soak.md)
 *   npm run soak -- --duration 15 --out /tmp/x    # short run, results elsewhere
 *
 * Options: --duration s (300), --connections n honest workers (16), --tokens-per-connection n (50),
 * --requests-per-token n (4), --churn fraction of batches after which a worker closes its
 * connection and opens a new one (0.5), --attackers n (2), --per-request fraction of workers that
 * sign per-request claims (0.25), --token-lifetime s (60), --cache-per-connection n (32),
 * --cache-max n (512), --heap-bound-mib n (16), --rss-bound-mib n (5 per hour after warm-up, at
 * least 5; see bench/soak-memory.ts), --warmup s (min(360, duration/5): the replay store's fill),
 * --sample s (5), --rs-allocator glibc|jemalloc|auto (glibc, Node's default; auto: jemalloc when installed),
 * --rs-node-options "FLAGS" (Node flags for the server; default RS_NODE_OPTIONS, the young generation
 * pinned as the deploy recipes do; "" for Node's own sizing), --out dir (bench/results).
 *
 * Deadlines: every honest request and every attacker step has one (REQUEST_TIMEOUT_MS); the run
 * has `duration` + 120 s, after which it fails naming the requests still outstanding; the server
 * child is questioned with deadlines and killed by PID on every exit path.
 *
 * Exits 1 when an attack request is accepted or answered otherwise than expected, an honest
 * request is lost (non-200 or network error after the client's single retry), the binding cache or
 * the server's connection set does not drain after the clients close, a cache size limit is
 * exceeded, the server's heap grows by more than its bound between the first sample after warm-up
 * and the end, or its RSS under load grows by more than the RSS bound after warm-up.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate, randomBytes, randomUUID } from 'node:crypto';
import { createDevPki } from '@tether/pki';
import { SessionBoundClient, sessionBoundConfirmation } from '@tether/core';
import { TestIssuer } from '../test/helpers/issuer.js';
import { openRawConnection, type RawConnection, type RawResponse } from '../test/adapters/raw.js';
import { ForkedChild, installExitGuards, trackTempDir } from './children.js';
import { Outstanding, REQUEST_TIMEOUT_MS, withRunDeadline } from './deadline.js';
import type { RsSample } from './soak-rs.js';
import { arg, num } from './args.js';
import { writeSoakRsDir } from './soak-rs-dir.js';
import { resolveAllocator, rssGrowth } from './soak-memory.js';

const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;
/**
 * The server's Node flags unless --rs-node-options says otherwise: V8's young generation pinned at
 * 16 MiB per semi-space, as deploy/ recommends. Left to itself V8 shrinks the new space when the
 * server is starved of CPU and grows it back under load, which moved RSS by about 25 MiB in the
 * first hour run (bench/results/soak.md) without any memory being retained.
 */
const RS_NODE_OPTIONS = '--min-semi-space-size=16 --max-semi-space-size=16';


// -------------------------------------------------------------------------------------------------
// Load generator

interface Expected {
  status: number;
  error: string;
}

/** Every attack and what the server must answer (draft section 3.3; RFC 6750 section 3.1). */
const ATTACKS: Record<string, Expected> = {
  't1-replay-other-connection': { status: 401, error: 'invalid_proof' },
  't2-other-certificate': { status: 401, error: 'invalid_token' },
  't4-stolen-token-and-proof': { status: 401, error: 'invalid_token' },
  'missing-proof': { status: 401, error: 'use_session_binding' },
  'proof-for-other-token': { status: 401, error: 'invalid_proof' },
  'stale-iat-same-connection': { status: 401, error: 'invalid_proof' },
  'duplicate-authorization': { status: 400, error: 'invalid_request' },
  'duplicate-proof': { status: 400, error: 'invalid_request' },
  'jti-replay': { status: 401, error: 'invalid_proof' },
  'garbage-proof': { status: 401, error: 'invalid_proof' },
  'tampered-signature': { status: 401, error: 'invalid_proof' },
};

interface AttackCount {
  sent: number;
  refusedAsExpected: number;
  wronglyAccepted: number;
  unexpected: number;
}

const b64u = (n: number) => randomBytes(n).toString('base64url');

/** Random proofs of several shapes; none can verify. */
function garbageProof(): string {
  switch (Math.floor(Math.random() * 5)) {
    case 0:
      return b64u(1 + Math.floor(Math.random() * 300));
    case 1:
      return `${b64u(20)}.${b64u(60)}.${b64u(64)}`;
    case 2:
      return `${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'sbp+jwt' })).toString('base64url')}.${b64u(80)}.${b64u(64)}`;
    case 3:
      return `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iat: Math.floor(Date.now() / 1000) })).toString('base64url')}.`;
    default:
      return `..${b64u(8)}`;
  }
}

function tamper(proof: string): string {
  const dot = proof.lastIndexOf('.');
  const sig = Buffer.from(proof.slice(dot + 1), 'base64url');
  sig[Math.floor(Math.random() * sig.length)]! ^= 1 + Math.floor(Math.random() * 255);
  return `${proof.slice(0, dot + 1)}${sig.toString('base64url')}`;
}

function errorOf(res: RawResponse): string | undefined {
  try {
    return (JSON.parse(res.body) as { error?: string }).error;
  } catch {
    return undefined;
  }
}

function slopePerMinute(points: Array<{ t: number; v: number }>): number {
  if (points.length < 2) return 0;
  const mt = points.reduce((a, p) => a + p.t, 0) / points.length;
  const mv = points.reduce((a, p) => a + p.v, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runGenerator(): Promise<void> {
  const duration = num('duration', 300);
  const workersN = Math.max(1, Math.floor(num('connections', 16)));
  const tokensPerConnection = Math.max(1, Math.floor(num('tokens-per-connection', 50)));
  const requestsPerToken = Math.max(1, Math.floor(num('requests-per-token', 4)));
  const churn = Math.min(1, num('churn', 0.5));
  const attackersN = Math.floor(num('attackers', 2));
  const perRequestFraction = Math.min(1, num('per-request', 0.25));
  const tokenLifetime = Math.max(30, num('token-lifetime', 60));
  const cachePerConnection = Math.max(1, Math.floor(num('cache-per-connection', 32)));
  const cacheMax = Math.max(1, Math.floor(num('cache-max', 512)));
  const heapBoundMiB = num('heap-bound-mib', 16);
  // Warm-up covers the replay store's fill: per-request ids are kept for the proof's acceptance
  // window (proofMaxAge 300 s + clockSkew 30 s), so the live set is steady only after that.
  const warmup = num('warmup', Math.min(360, duration / 5));
  const allocator = resolveAllocator(arg('rs-allocator') ?? 'glibc');
  const sampleEvery = Math.max(0.5, num('sample', 5));
  const outDir = arg('out') ?? join(here, 'results');
  const inFlight = 8;

  const dir = mkdtempSync(join(tmpdir(), 'tether-soak-'));
  trackTempDir(dir);
  const pki = await createDevPki({ clients: ['client', 'attacker'] });
  const client = pki.clients.client as { cert: string; key: string };
  const attacker = pki.clients.attacker as { cert: string; key: string };
  const issuer = await TestIssuer.create();
  writeSoakRsDir(dir, pki, issuer.jwks, { cachePerConnection, cacheMax });

  const rsNodeOptions = (arg('rs-node-options') ?? RS_NODE_OPTIONS).split(' ').filter((a) => a !== '');
  const rs = new ForkedChild('rs', join(here, 'soak-rs.ts'), 30_000, { args: [dir], execArgv: ['--expose-gc', ...rsNodeOptions], env: allocator.env });
  const { port } = (await rs.ready) as { port: number };
  const origin = `https://127.0.0.1:${port}`;
  let sampling = Promise.resolve<RsSample | undefined>(undefined);
  const sampleRs = (): Promise<RsSample> => {
    // One question at a time over IPC, each with a deadline (a GC and a sample take milliseconds).
    const next = sampling.then(() => rs.ask<RsSample>({ cmd: 'sample' }, 60_000));
    sampling = next.catch(() => undefined);
    return next;
  };
  // Requests in flight, named if the run misses its deadline.
  const outstanding = new Outstanding();

  // Tokens: a pool refreshed every min(20 s, lifetime / 3); each token lives `tokenLifetime` seconds,
  // so a token is never picked within a third of its lifetime of expiring. A batch that runs long on
  // a loaded machine swaps a token for a fresh one before sending it within 10 s of its expiry
  // (an honest client renews its tokens; one sent expired would be refused, and rightly).
  const cnf = sessionBoundConfirmation(new X509Certificate(client.cert));
  const expiresAt = new Map<string, number>();
  const mintPool = async () => {
    const mintedAt = Date.now();
    const minted = await Promise.all(Array.from({ length: Math.max(200, tokensPerConnection * 2) }, (_, i) => issuer.mint({ cnf, sub: `user-${i}` }, { expiresIn: tokenLifetime })));
    for (const [t, exp] of expiresAt) if (exp < mintedAt) expiresAt.delete(t);
    for (const t of minted) expiresAt.set(t, mintedAt + tokenLifetime * 1000);
    return minted;
  };
  let pool = await mintPool();
  let poolMintedAt = Date.now();
  const renewed = (token: string): string => ((expiresAt.get(token) ?? 0) - Date.now() > 10_000 ? token : (pool[Math.floor(Math.random() * pool.length)] as string));
  let minting: Promise<void> | undefined;
  async function tokens(n: number): Promise<string[]> {
    const refreshMs = Math.min(20, tokenLifetime / 3) * 1000;
    if (Date.now() - poolMintedAt > refreshMs && minting === undefined) {
      minting = mintPool().then((p) => {
        pool = p;
        poolMintedAt = Date.now();
        minting = undefined;
      });
    }
    if (minting !== undefined && Date.now() - poolMintedAt > 2 * refreshMs) await minting;
    const out: string[] = [];
    const start = Math.floor(Math.random() * pool.length);
    for (let i = 0; i < n; i++) out.push(pool[(start + i * 7) % pool.length] as string);
    return out;
  }

  const honest = { requests: 0, ok: 0, lost: 0, retries: 0, networkErrors: 0, lostByStatus: {} as Record<string, number>, connectionCycles: 0, connectionsOpened: 0, proofsSigned: 0, byProtocol: { h2: 0, 'http/1.1': 0 } };
  const lostExamples: string[] = [];
  const attacks: Record<string, AttackCount> = Object.fromEntries(Object.keys(ATTACKS).map((k) => [k, { sent: 0, refusedAsExpected: 0, wronglyAccepted: 0, unexpected: 0 }]));
  const attackControls = { sent: 0, ok: 0, lost: 0 };
  const unexpectedExamples: string[] = [];
  let attackerCycles = 0;
  let attackErrors = 0;

  const started = Date.now();
  const deadline = started + duration * 1000;
  const running = () => Date.now() < deadline;

  async function honestWorker(index: number): Promise<void> {
    const protocol = index % 2 === 0 ? 'h2' : 'http/1.1';
    const perRequestClaims = index % Math.max(1, Math.round(1 / Math.max(perRequestFraction, 1e-9))) === 0 && perRequestFraction > 0;
    const open = () => new SessionBoundClient({ cert: client.cert, key: client.key, ca: pki.ca.cert, protocol, perRequestClaims, maxConnectionsPerOrigin: 2, timeoutMs: REQUEST_TIMEOUT_MS });
    let c = open();
    honest.connectionCycles++;
    const flush = () => {
      honest.retries += c.stats.retries;
      honest.connectionsOpened += c.stats.connectionsOpened;
      honest.proofsSigned += c.stats.proofsSigned;
    };
    while (running()) {
      const batch = await tokens(tokensPerConnection);
      const jobs: string[] = [];
      for (let r = 0; r < requestsPerToken; r++) jobs.push(...batch);
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < jobs.length) {
            const token = renewed(jobs[next++] as string);
            honest.requests++;
            honest.byProtocol[protocol]++;
            const id = outstanding.begin(`honest worker ${index} (${protocol}) request ${honest.requests}`);
            try {
              const res = await c.request(`${origin}/soak/${protocol}`, { token });
              if (res.status === 200) honest.ok++;
              else {
                honest.lost++;
                honest.lostByStatus[res.status] = (honest.lostByStatus[res.status] ?? 0) + 1;
                if (lostExamples.length < 10) lostExamples.push(`${protocol} ${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
              }
            } catch (error) {
              honest.lost++;
              honest.networkErrors++;
              if (lostExamples.length < 10) lostExamples.push(`${protocol} ${String(error)}`);
            } finally {
              outstanding.end(id);
            }
          }
        }),
      );
      if (Math.random() < churn && running()) {
        flush();
        await c.close();
        c = open();
        honest.connectionCycles++;
      }
    }
    flush();
    await c.close();
  }

  async function attackerWorker(index: number): Promise<void> {
    const protocol = index % 2 === 0 ? 'h2' : 'http/1.1';
    const opts = { protocol, ca: pki.ca.cert } as const;
    const path = `/soak/attack/${protocol}`;
    const bearer = (token: string, ...proofs: string[]): Array<[string, string]> => [['authorization', `Bearer ${token}`], ...proofs.map((p): [string, string] => ['session-binding-proof', p])];
    /** `step` within REQUEST_TIMEOUT_MS, named while outstanding; a miss fails the attacker's cycle. */
    async function timed<T>(what: string, step: Promise<T>): Promise<T> {
      const id = outstanding.begin(`attacker ${index} (${protocol}) ${what}`);
      try {
        return await withRunDeadline(`attacker ${index} (${protocol}) ${what}`, REQUEST_TIMEOUT_MS, outstanding, step);
      } finally {
        outstanding.end(id);
      }
    }
    async function expect(name: string, conn: RawConnection, headers: Array<[string, string]>): Promise<void> {
      const want = ATTACKS[name] as Expected;
      const count = attacks[name] as AttackCount;
      count.sent++;
      const res = await timed(name, conn.request({ path, headers }));
      const error = errorOf(res);
      if (res.status >= 200 && res.status < 300) count.wronglyAccepted++;
      else if (res.status === want.status && error === want.error) count.refusedAsExpected++;
      else {
        count.unexpected++;
        if (unexpectedExamples.length < 10) unexpectedExamples.push(`${name} ${protocol}: ${res.status} ${res.body.slice(0, 200)}`);
      }
    }
    async function control(conn: RawConnection, headers: Array<[string, string]>): Promise<void> {
      attackControls.sent++;
      const res = await timed('control', conn.request({ path, headers }));
      if (res.status === 200) attackControls.ok++;
      else {
        attackControls.lost++;
        if (lostExamples.length < 10) lostExamples.push(`control ${protocol} ${res.status} ${res.body.slice(0, 200)}`);
      }
    }
    while (running()) {
      const conns: RawConnection[] = [];
      try {
        const [token, other] = (await tokens(2)) as [string, string];
        const a = await timed('connect', openRawConnection(origin, client, opts));
        conns.push(a);
        const b = await timed('connect', openRawConnection(origin, client, opts));
        conns.push(b);
        const evil = await timed('connect', openRawConnection(origin, attacker, opts));
        conns.push(evil);
        // An honest exchange on A first: the binding is cached there, then attacked around it.
        const captured = await a.proof(token);
        await control(a, bearer(token, captured));
        await expect('t1-replay-other-connection', b, bearer(token, captured));
        await expect('t2-other-certificate', evil, bearer(token, await evil.proof(token)));
        await expect('t4-stolen-token-and-proof', evil, bearer(token, captured));
        await expect('missing-proof', b, bearer(token));
        await expect('proof-for-other-token', b, bearer(other, await b.proof(token)));
        await expect('stale-iat-same-connection', a, bearer(token, await a.proof(token, { iat: Math.floor(Date.now() / 1000) - 3600 })));
        await expect('duplicate-authorization', a, [['authorization', `Bearer ${token}`], ['authorization', `Bearer ${other}`], ['session-binding-proof', captured]]);
        await expect('duplicate-proof', a, bearer(token, captured, captured));
        const single = await b.proof(other, { jti: randomUUID(), htm: 'GET', htu: `${origin}${path}` });
        await control(b, bearer(other, single));
        await expect('jti-replay', b, bearer(other, single));
        await expect('garbage-proof', a, bearer(token, garbageProof()));
        await expect('tampered-signature', b, bearer(token, tamper(await b.proof(token))));
        // The binding cached on A still serves the honest proof after all that.
        await control(a, bearer(token, captured));
        attackerCycles++;
      } catch (error) {
        attackErrors++;
        if (unexpectedExamples.length < 10) unexpectedExamples.push(`attacker ${protocol}: ${String(error)}`);
      } finally {
        await Promise.all(conns.map((c) => c.close()));
      }
    }
  }

  const samples: Array<{ t: number; phase: 'warmup' | 'run' | 'end' } & RsSample & { generatorHeapUsed: number; honestRequests: number; attackRequests: number }> = [];
  const genGc = (globalThis as { gc?: () => void }).gc;
  const attackSent = () => Object.values(attacks).reduce((a, c) => a + c.sent, 0);
  async function takeSample(phase: 'warmup' | 'run' | 'end'): Promise<void> {
    const s = await sampleRs();
    genGc?.();
    const t = (Date.now() - started) / 1000;
    samples.push({ t, phase, ...s, generatorHeapUsed: process.memoryUsage().heapUsed, honestRequests: honest.requests, attackRequests: attackSent() });
    console.error(
      `t=${t.toFixed(0).padStart(4)}s heap ${(s.heapUsed / MiB).toFixed(1)}/${(s.heapTotal / MiB).toFixed(1)} MiB ext ${(s.external / MiB).toFixed(1)} ab ${(s.arrayBuffers / MiB).toFixed(1)} new ${(s.newSpace / MiB).toFixed(1)} anon ${(s.rssAnon / MiB).toFixed(1)} rss ${(s.rss / MiB).toFixed(1)} MiB cache ${s.cacheSize}/${s.cacheConnections} conns replay ${s.replayStoreSize} open ${s.openConnections} honest ${honest.requests} (lost ${honest.lost}) attacks ${attackSent()}`,
    );
  }

  const loops = [...Array.from({ length: workersN }, (_, i) => honestWorker(i)), ...Array.from({ length: attackersN }, (_, i) => attackerWorker(i))];
  const allDone = Promise.all(loops);
  let done = false;
  void allDone.finally(() => (done = true));
  const sampler = (async () => {
    while (!done && running()) {
      await Promise.race([sleep(sampleEvery * 1000), allDone]);
      if (done) break;
      await takeSample((Date.now() - started) / 1000 < warmup ? 'warmup' : 'run');
    }
  })();
  // Workers stop starting batches at the deadline; a batch in flight then has a bounded time to finish.
  await withRunDeadline(`soak (${duration} s + 120 s to finish)`, (duration + 120) * 1000, outstanding, allDone);
  await sampler;

  // Drain: every client has closed; the server's close events may trail by a moment.
  let end = await sampleRs();
  for (let i = 0; i < 50 && (end.cacheSize > 0 || end.cacheConnections > 0 || end.openConnections > 0); i++) {
    await sleep(100);
    end = await sampleRs();
  }
  await takeSample('end');
  const finalSample = samples[samples.length - 1]!;
  await rs.exit(10_000);
  rmSync(dir, { recursive: true, force: true });

  // ---------------------------------------------------------------------------------------------
  const afterWarmup = samples.filter((s) => s.phase === 'run');
  const baseline = afterWarmup[0] ?? samples[0]!;
  const heapGrowth = finalSample.heapUsed - baseline.heapUsed;
  const slopePoints = [...afterWarmup, finalSample].map((s) => ({ t: s.t, v: s.heapUsed / MiB }));
  const rssPoints = [...afterWarmup, finalSample].map((s) => ({ t: s.t, v: s.rss / MiB }));
  const rssBound = arg('rss-bound-mib');
  const rss = rssGrowth(afterWarmup, rssBound === undefined ? undefined : num('rss-bound-mib', 0));
  const totals = Object.values(attacks).reduce((a, c) => ({ sent: a.sent + c.sent, refusedAsExpected: a.refusedAsExpected + c.refusedAsExpected, wronglyAccepted: a.wronglyAccepted + c.wronglyAccepted, unexpected: a.unexpected + c.unexpected }), { sent: 0, refusedAsExpected: 0, wronglyAccepted: 0, unexpected: 0 });
  const peakCacheSize = Math.max(...samples.map((s) => s.peakCacheSize));
  const peakCacheRatio = Math.max(...samples.map((s) => s.peakCacheRatio));
  const elapsed = (Date.now() - started) / 1000;
  const checks = [
    { check: 'no attack request accepted', holds: totals.wronglyAccepted === 0, value: `${totals.wronglyAccepted} of ${totals.sent}` },
    { check: 'every attack refused with the exact expected status and error', holds: totals.unexpected === 0 && attackErrors === 0, value: `${totals.unexpected} unexpected, ${attackErrors} attacker-cycle errors` },
    { check: 'no honest request lost', holds: honest.lost === 0 && attackControls.lost === 0, value: `${honest.lost + attackControls.lost} of ${honest.requests + attackControls.sent}` },
    { check: 'binding cache drained after close (0 entries, 0 connections)', holds: finalSample.cacheSize === 0 && finalSample.cacheConnections === 0, value: `${finalSample.cacheSize} entries, ${finalSample.cacheConnections} connections` },
    { check: 'server holds no connection after close', holds: finalSample.openConnections === 0, value: `${finalSample.openConnections}` },
    { check: `binding cache never above maxEntries (${cacheMax})`, holds: peakCacheSize <= cacheMax, value: `peak ${peakCacheSize}` },
    { check: `entries per cached connection never above maxEntriesPerConnection (${cachePerConnection})`, holds: peakCacheRatio <= cachePerConnection, value: `peak ${peakCacheRatio.toFixed(1)}` },
    { check: `server heap growth after warm-up below ${heapBoundMiB} MiB`, holds: heapGrowth / MiB < heapBoundMiB, value: `${(heapGrowth / MiB).toFixed(2)} MiB` },
    {
      check: `server RSS growth after warm-up at most ${rss.boundMiB.toFixed(1)} MiB (least-squares trend of every sample under load over ${rss.spanSeconds.toFixed(0)} s)`,
      holds: rss.holds,
      value: `${rss.growthMiB.toFixed(2)} MiB (trend ${rss.fittedStartMiB.toFixed(1)} -> ${rss.fittedEndMiB.toFixed(1)} MiB)`,
    },
    { check: 'honest and attack traffic both ran', holds: honest.requests > 0 && totals.sent > 0, value: `${honest.requests} honest, ${totals.sent} attack` },
  ];
  const pass = checks.every((c) => c.holds);
  const mib = (b: number) => Number((b / MiB).toFixed(2));
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    pass,
    setup: {
      durationSeconds: duration,
      elapsedSeconds: Number(elapsed.toFixed(1)),
      honestWorkers: workersN,
      protocols: 'even workers HTTP/2, odd workers HTTP/1.1 (keep-alive, 2 sockets)',
      perRequestClaimsWorkers: Array.from({ length: workersN }, (_, i) => i).filter((i) => perRequestFraction > 0 && i % Math.max(1, Math.round(1 / perRequestFraction)) === 0).length,
      tokensPerConnection,
      requestsPerToken,
      streamsInFlightPerWorker: inFlight,
      churn,
      attackers: attackersN,
      tokenLifetimeSeconds: tokenLifetime,
      cache: { maxEntriesPerConnection: cachePerConnection, maxEntries: cacheMax },
      heapBoundMiB,
      rssBoundMiB: Number(rss.boundMiB.toFixed(2)),
      rsAllocator: allocator.name,
      rsNodeOptions,
      warmupSeconds: warmup,
      sampleSeconds: sampleEvery,
    },
    honest: { ...honest, attackControls },
    attacks: { totals, byKind: attacks, expected: ATTACKS, attackerCycles, attackerErrors: attackErrors },
    server: {
      connectionsAccepted: finalSample.connectionsAccepted,
      requests: finalSample.requests,
      accepted: finalSample.accepted,
      failures: finalSample.failures,
      peakCacheSize,
      peakEntriesPerConnection: Number(peakCacheRatio.toFixed(2)),
      heapBaselineMiB: mib(baseline.heapUsed),
      heapEndMiB: mib(finalSample.heapUsed),
      heapGrowthMiB: mib(heapGrowth),
      heapSlopeMiBPerMin: Number(slopePerMinute(slopePoints).toFixed(3)),
      heapMaxMiB: mib(Math.max(...samples.map((s) => s.heapUsed))),
      rssBaselineMiB: mib(baseline.rss),
      rssGrowth: { spanSeconds: Number(rss.spanSeconds.toFixed(0)), fittedStartMiB: Number(rss.fittedStartMiB.toFixed(2)), fittedEndMiB: Number(rss.fittedEndMiB.toFixed(2)), growthMiB: Number(rss.growthMiB.toFixed(2)), boundMiB: Number(rss.boundMiB.toFixed(2)) },
      rssEndMiB: mib(finalSample.rss),
      rssMaxMiB: mib(Math.max(...samples.map((s) => s.rss))),
      rssSlopeMiBPerMin: Number(slopePerMinute(rssPoints).toFixed(3)),
      replayStorePeak: Math.max(...samples.map((s) => s.replayStoreSize)),
      end: { cacheSize: finalSample.cacheSize, cacheConnections: finalSample.cacheConnections, openConnections: finalSample.openConnections, replayStoreSize: finalSample.replayStoreSize },
    },
    checks,
    examples: { lost: lostExamples, unexpected: unexpectedExamples },
    samples: samples.map((s) => ({
      t: Number(s.t.toFixed(1)),
      phase: s.phase,
      heapUsedMiB: mib(s.heapUsed),
      heapTotalMiB: mib(s.heapTotal),
      newSpaceMiB: mib(s.newSpace),
      externalMiB: mib(s.external),
      arrayBuffersMiB: mib(s.arrayBuffers),
      rssAnonMiB: mib(s.rssAnon),
      /** Anonymous resident memory outside V8's heap: malloc (OpenSSL, nghttp2, buffers) and its fragmentation. */
      rssAnonOutsideHeapMiB: mib(s.rssAnon - s.heapTotal),
      rssMiB: mib(s.rss),
      cacheSize: s.cacheSize,
      cacheConnections: s.cacheConnections,
      replayStoreSize: s.replayStoreSize,
      openConnections: s.openConnections,
      connectionsAccepted: s.connectionsAccepted,
      serverRequests: s.requests,
      honestRequests: s.honestRequests,
      attackRequests: s.attackRequests,
      generatorHeapUsedMiB: mib(s.generatorHeapUsed),
    })),
  };

  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'soak.json'), JSON.stringify(result, null, 2) + '\n');
  const s = result.server;
  const summary = [
    `# Soak: ${pass ? 'PASS' : 'FAIL'}`,
    '',
    `${result.date}, Node ${result.node}; ${elapsed.toFixed(0)} s; ${workersN} honest workers (HTTP/2 and HTTP/1.1, ${result.setup.perRequestClaimsWorkers} with per-request claims), ${tokensPerConnection} tokens x ${requestsPerToken} requests per connection batch, churn ${churn}, ${attackersN} attackers; binding cache limits ${cachePerConnection}/connection, ${cacheMax} total.`,
    '',
    `- honest: ${honest.requests} requests (${honest.byProtocol.h2} HTTP/2, ${honest.byProtocol['http/1.1']} HTTP/1.1), ${honest.ok} x 200, ${honest.lost} lost, ${honest.retries} client retries; ${honest.connectionCycles} client connection cycles, ${honest.proofsSigned} proofs signed; attacker-side controls ${attackControls.ok}/${attackControls.sent} x 200`,
    `- attack: ${totals.sent} requests in ${attackerCycles} cycles, ${totals.refusedAsExpected} refused as expected, ${totals.wronglyAccepted} accepted, ${totals.unexpected} other answers`,
    `- server: ${s.connectionsAccepted} TLS connections accepted, ${s.requests} requests; heap ${s.heapBaselineMiB} -> ${s.heapEndMiB} MiB after GC (growth ${s.heapGrowthMiB} MiB, slope ${s.heapSlopeMiBPerMin} MiB/min, max ${s.heapMaxMiB}); RSS ${s.rssBaselineMiB} -> ${s.rssEndMiB} MiB (max ${s.rssMaxMiB}, slope ${s.rssSlopeMiBPerMin} MiB/min; trend under load ${s.rssGrowth.fittedStartMiB} -> ${s.rssGrowth.fittedEndMiB} MiB, growth ${s.rssGrowth.growthMiB} MiB); allocator ${result.setup.rsAllocator}; server Node flags: ${result.setup.rsNodeOptions.join(' ') || 'none'}`,
    `- binding cache: peak ${s.peakCacheSize} entries, peak ${s.peakEntriesPerConnection} per connection; at the end ${s.end.cacheSize} entries / ${s.end.cacheConnections} connections, ${s.end.openConnections} open connections; replay store peak ${s.replayStorePeak}, end ${s.end.replayStoreSize}`,
    '',
    '| check | value | holds |',
    '|---|---|---|',
    ...checks.map((c) => `| ${c.check} | ${c.value} | ${c.holds ? 'yes' : '**NO**'} |`),
    '',
  ];
  const table = [
    '## Attacks',
    '',
    '| attack | expected | sent | refused as expected | accepted | other |',
    '|---|---|---|---|---|---|',
    ...Object.entries(attacks).map(([k, c]) => `| ${k} | ${ATTACKS[k]!.status} ${ATTACKS[k]!.error} | ${c.sent} | ${c.refusedAsExpected} | ${c.wronglyAccepted} | ${c.unexpected} |`),
    '',
    '## Samples (resource server, after GC)',
    '',
    'Memory in MiB. heap used / total: V8 heap after a full GC, used and committed (new space, the two semi-spaces, included); anon: anonymous resident memory (RssAnon); outside heap: anon minus heap total, i.e. malloc (OpenSSL, nghttp2, buffers) and its fragmentation.',
    '',
    '| t (s) | phase | heap used | heap total | new space | external | anon | outside heap | RSS | cache entries | cache connections | replay store | open connections | connections accepted | server requests |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...result.samples.map(
      (x) =>
        `| ${x.t} | ${x.phase} | ${x.heapUsedMiB} | ${x.heapTotalMiB} | ${x.newSpaceMiB} | ${x.externalMiB} | ${x.rssAnonMiB} | ${x.rssAnonOutsideHeapMiB} | ${x.rssMiB} | ${x.cacheSize} | ${x.cacheConnections} | ${x.replayStoreSize} | ${x.openConnections} | ${x.connectionsAccepted} | ${x.serverRequests} |`,
    ),
    '',
  ];
  writeFileSync(join(outDir, 'soak.md'), [...summary, ...table].join('\n'));
  console.log(summary.join('\n'));
  if (lostExamples.length > 0) console.log(`lost (examples): ${lostExamples.join(' | ')}`);
  if (unexpectedExamples.length > 0) console.log(`unexpected (examples): ${unexpectedExamples.join(' | ')}`);
  process.exitCode = pass ? 0 : 1;
}

installExitGuards();
runGenerator().catch((error: unknown) => {
  console.error(error);
  process.exit(2);
});
