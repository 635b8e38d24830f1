/**
 * Resource server for the benchmark matrix (bench/matrix.ts), built from the public entry points
 * the way a user would: createSessionBoundVerifier + jwtAccessTokenValidator + sessionBoundHandler
 * over node:http2 (HTTP/1.1 allowed), DPoP enabled. `minimumBinding: 'none'` so one server process
 * serves every mode; a token carrying a binding is still held to it.
 *
 * Paths under `/jose/` take the reference DPoP path instead (`dpop-jose` mode, bench/jose-dpop.ts):
 * what a user would otherwise write with jose, behind the same token validation.
 *
 * Runs as a child process with IPC. Argument: a directory holding ca.pem, server.pem, server.key,
 * jwks.json, client.pem, client.key; optional second argument: idle timeout in ms after which the
 * server drops a quiet connection (the "keep-alive timeout" of the agent-like mix).
 * Messages: {cmd:'reset', profile?} -> {ok} (with TETHER_BENCH_RS_PROFILE_DIR set, `profile` names
 * a CPU profile of the cell that follows, written at its report), {cmd:'report'} -> {cpuMicros, stats, connections, resumed},
 * {cmd:'verify-costs', samples, rounds} -> VerifyCosts (bench/verify-cost.ts), {cmd:'exit'}.
 */
import { createSecureServer } from 'node:http2';
import crypto from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createSessionBoundVerifier, jwtAccessTokenValidator, localJwks } from '@tether/core';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { joseDpopHandler } from './jose-dpop.js';
import { measureVerifyCosts } from './verify-cost.js';

const [dir, idleArg] = process.argv.slice(2);
if (dir === undefined || process.send === undefined) throw new Error('usage: matrix-rs.ts DIR [IDLE_MS] (forked with IPC)');
const read = (name: string) => readFileSync(`${dir}/${name}`, 'utf8');
const idleMs = Number(idleArg ?? 0);

const tokens = jwtAccessTokenValidator({ keys: localJwks(JSON.parse(read('jwks.json'))), issuer: 'https://as.bench', audience: 'https://rs.bench' });
const verifier = createSessionBoundVerifier({ tokens, minimumBinding: 'none', dpop: {} });
const body = Buffer.from('{"ok":true}');
const library = sessionBoundHandler(verifier, (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
const jose = joseDpopHandler(tokens, verifier.stats, body);
const serverOptions = sessionBoundTlsOptions({ cert: read('server.pem'), key: read('server.key'), ca: read('ca.pem') });
const server = createSecureServer(
  {
    ...serverOptions,
    allowHTTP1: true,
    // Headroom for a client that keeps 32+ streams in flight; TETHER_BENCH_HPACK overrides the HPACK table size.
    settings: { ...serverOptions.settings, maxConcurrentStreams: 256, ...(process.env.TETHER_BENCH_HPACK === undefined ? {} : { headerTableSize: Number(process.env.TETHER_BENCH_HPACK) }) },
  },
  (req, res) => (req.url?.startsWith('/jose/') === true ? jose(req, res) : library(req, res)),
);
// Idle HTTP/2 sessions (and HTTP/1.1 sockets) are closed after idleMs without activity.
if (idleMs > 0) {
  server.setTimeout(idleMs);
  server.on('timeout', (s: { close?: () => void; destroy: () => void }) => (typeof s.close === 'function' ? s.close() : s.destroy()));
}

let connections = 0;
let resumed = 0;
server.on('secureConnection', (socket: TLSSocket) => {
  connections++;
  if (socket.isSessionReused()) resumed++;
});

// Per-cell CPU profiles (TETHER_BENCH_RS_PROFILE_DIR): a reset naming `profile` starts the
// sampling profiler, the next report writes DIR/<profile>-<n>.cpuprofile covering that cell only.
const profileDir = process.env.TETHER_BENCH_RS_PROFILE_DIR;
let profiling: { session: Session; name: string } | undefined;
let profiles = 0;
let lastCell = '?';
async function startProfile(name: string): Promise<void> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  profiling = { session, name };
}
async function stopProfile(): Promise<void> {
  if (profiling === undefined) return;
  const { session, name } = profiling;
  profiling = undefined;
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(`${profileDir}/${name}-${profiles++}.cpuprofile`, JSON.stringify(profile));
  session.disconnect();
}

// TETHER_BENCH_RS_TIME_VERIFY: time every node:crypto verify (the signature primitive under every
// proof check) where it runs, and print the median wall time per call at each report and after the
// verify-costs loops: the primitive in the server's working conditions against the tight loop's.
// With it, the CPU of the main thread and of the other threads (GC helpers) per request.
const verifyTimes: number[] = [];
if (process.env.TETHER_BENCH_RS_TIME_VERIFY !== undefined) {
  const original = crypto.verify;
  crypto.verify = ((...args: Parameters<typeof crypto.verify>) => {
    const t0 = process.hrtime.bigint();
    try {
      return original(...args);
    } finally {
      verifyTimes.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  }) as typeof crypto.verify;
  syncBuiltinESMExports();
}
/** CPU ms of the main thread and of all other threads (GC helpers, libuv pool), from /proc (Linux). */
function threadCpuMs(): { main: number; others: number } {
  const out = { main: 0, others: 0 };
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, at 100 ticks/s
      if (Number(tid) === process.pid) out.main += ms;
      else out.others += ms;
    }
  } catch {
    // not Linux: no split
  }
  return out;
}
let threadsAtReset = threadCpuMs();
// With it too: wall time of each verifier.verify() call (all of the library's per-request work).
const verifyCallTimes: number[] = [];
if (process.env.TETHER_BENCH_RS_TIME_VERIFY !== undefined) {
  const original = verifier.verify.bind(verifier);
  (verifier as { verify: typeof verifier.verify }).verify = async (input) => {
    const t0 = process.hrtime.bigint();
    try {
      return await original(input);
    } finally {
      verifyCallTimes.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  };
}
function stats(xs: number[]): string {
  const sorted = [...xs].sort((a, b) => a - b);
  const q = (f: number) => (sorted[Math.floor(f * (sorted.length - 1))] as number).toFixed(1);
  return `n=${sorted.length} median=${q(0.5)} µs mean=${(sorted.reduce((a, b) => a + b, 0) / sorted.length).toFixed(1)}`;
}
function reportVerifyTimes(what: string, requests?: number, used?: NodeJS.CpuUsage): void {
  if (process.env.TETHER_BENCH_RS_TIME_VERIFY === undefined) return;
  const now = threadCpuMs();
  const per = (ms: number) => (requests === undefined || requests === 0 ? `${ms.toFixed(0)} ms` : `${((ms * 1000) / requests).toFixed(1)} µs/req`);
  const split = used === undefined ? '' : `user ${per(used.user / 1000)}, system ${per(used.system / 1000)}; `;
  const threads = `${split}main thread ${per(now.main - threadsAtReset.main)}, other threads ${per(now.others - threadsAtReset.others)}`;
  const prim = verifyTimes.length === 0 ? '' : `crypto.verify ${stats(verifyTimes)}; `;
  const calls = verifyCallTimes.length === 0 ? '' : `verifier.verify() ${stats(verifyCallTimes)}; `;
  console.error(`rs ${what}: ${prim}${calls}${threads}`);
  verifyTimes.length = 0;
  verifyCallTimes.length = 0;
}

let cpu = process.cpuUsage();
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('message', async (msg: { cmd: string; profile?: string }) => {
  if (msg.cmd === 'reset') {
    Object.assign(verifier.stats, { requests: 0, accepted: 0, proofVerifications: 0, cacheHits: 0, dpopProofVerifications: 0, failures: {} });
    connections = 0;
    resumed = 0;
    await stopProfile();
    verifyTimes.length = 0;
    verifyCallTimes.length = 0;
    threadsAtReset = threadCpuMs();
    lastCell = msg.profile ?? '?';
    if (profileDir !== undefined && msg.profile !== undefined) await startProfile(msg.profile);
    cpu = process.cpuUsage();
    process.send?.({ ok: true });
  } else if (msg.cmd === 'report') {
    const used = process.cpuUsage(cpu);
    await stopProfile();
    reportVerifyTimes(`cell ${lastCell}`, verifier.stats.requests, used);
    process.send?.({ cpuMicros: used.user + used.system, stats: verifier.stats, connections, resumed });
  } else if (msg.cmd === 'verify-costs') {
    const { samples, rounds } = msg as unknown as { samples: number; rounds: number };
    verifyTimes.length = 0;
    threadsAtReset = threadCpuMs();
    void measureVerifyCosts(read('client.pem'), read('client.key'), samples, rounds).then((costs) => {
      reportVerifyTimes('verify-costs loops');
      process.send?.(costs);
    });
  } else if (msg.cmd === 'exit') {
    server.close();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
