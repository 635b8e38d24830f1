/**
 * Sidecar soak (issue 12): sustained concurrent traffic through egress and ingress, each in its own
 * process, for `--duration` seconds. Rounds alternate the agent transport (HTTP/1.1 keep-alive,
 * h2c), 32 workers, fresh tokens every round. After every round: no honest request lost or
 * truncated, no CLOSE-WAIT socket on either sidecar's port within 3 s, and each sidecar's RSS is
 * sampled. Exits 1 on any failure; results in bench/results/sidecar-soak.{json,md}.
 *
 *   npm run soak:sidecar -- --duration 300      # default 120 s
 *   Options: --duration S, --concurrency N (32), --out DIR
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchMaterial, tokenMinter } from './sidecar-material.js';
import { BenchFailure, ForkedChild, installExitGuards, killAllSync, trackedChildren } from './children.js';
import type { RunReply, RunRequest } from './sidecar-load.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({ options: { duration: { type: 'string', default: '120' }, concurrency: { type: 'string', default: '32' }, out: { type: 'string' } } });
const durationS = Number(args.duration);
const concurrency = Number(args.concurrency);
if (!(durationS > 0) || !(concurrency >= 1)) throw new BenchFailure('bad_option', '--duration and --concurrency must be positive numbers');
const TOKENS_PER_ROUND = 8;
const PER_TOKEN = 250;

interface Round {
  mode: 'sidecar-h1' | 'sidecar-h2c';
  requests: number;
  failures: number;
  throughput: number;
  p99Ms: number;
  closeWait: { ingress: number; egress: number };
  rssMiB: { ingress: number; egress: number };
}

const portOf = (url: string) => Number(new URL(url).port);

/** Sockets in CLOSE-WAIT on a local port. */
function closeWait(port: number): number {
  const out = execFileSync('ss', ['-Htan', 'state', 'close-wait', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

/** CLOSE-WAIT count on `port`, polled until 0 or 3 s. */
async function settledCloseWait(port: number): Promise<number> {
  const deadline = Date.now() + 3000;
  let n = closeWait(port);
  while (n > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    n = closeWait(port);
  }
  return n;
}

async function main(): Promise<number> {
  const { material: m, privateKey } = await benchMaterial();
  const mint = tokenMinter(m, privateKey, TOKENS_PER_ROUND);
  const script = join(here, 'sidecar-process.ts');
  const [app, ingress, egress, load] = ['app', 'ingress', 'egress', 'load'].map((role) => new ForkedChild(role, script, 30_000)) as [ForkedChild, ForkedChild, ForkedChild, ForkedChild];
  const start = async (c: ForkedChild, extra: Record<string, unknown> = {}) => {
    const msg = { cmd: 'start', material: m, ...extra };
    return (await c.ask<{ url: string }>(msg, 30_000)).url;
  };
  const appUrl = await start(app);
  const ingressUrl = await start(ingress, { upstream: appUrl });
  const egressUrl = await start(egress, { upstream: ingressUrl });
  await start(load);
  console.error(`soak: child processes: ${trackedChildren()}`);
  const rounds: Round[] = [];
  const started = Date.now();
  const rssStart = { ingress: rssMiB(ingress.pid), egress: rssMiB(egress.pid) };
  // At least one round per agent transport, however short the duration.
  while (rounds.length < 2 || Date.now() - started < durationS * 1000) {
    const mode = rounds.length % 2 === 0 ? 'sidecar-h1' : 'sidecar-h2c';
    const tokens = await mint(true);
    const deadlineMs = 30_000 + 3 * tokens.length * PER_TOKEN;
    const request: RunRequest = { cmd: 'run', mode, url: egressUrl, path: '/api/resource', tokens, perToken: PER_TOKEN, concurrency, requestTimeoutMs: 10_000, deadlineMs, material: { ca: m.ca, clientCert: m.clientCert, clientKey: m.clientKey } };
    const reply = await load.ask<RunReply>(request, deadlineMs + 10_000);
    if (reply.kind === 'deadline') throw new BenchFailure('run_deadline_missed', `round ${rounds.length + 1} (${mode}) missed its ${deadlineMs} ms deadline with ${reply.outstanding.length} request(s) outstanding`);
    const round: Round = {
      mode,
      requests: reply.requests,
      failures: reply.failures,
      throughput: reply.throughput,
      p99Ms: reply.p99Ms,
      closeWait: { ingress: await settledCloseWait(portOf(ingressUrl)), egress: await settledCloseWait(portOf(egressUrl)) },
      rssMiB: { ingress: rssMiB(ingress.pid), egress: rssMiB(egress.pid) },
    };
    rounds.push(round);
    console.error(`soak: round ${rounds.length} ${mode}: ${round.requests} requests, ${round.failures} failed, ${round.throughput.toFixed(0)} req/s, CLOSE-WAIT ${JSON.stringify(round.closeWait)}, RSS MiB ingress ${round.rssMiB.ingress.toFixed(1)} egress ${round.rssMiB.egress.toFixed(1)}`);
    if (reply.failures > 0) console.error(`soak: failures: ${reply.failureSamples.join('; ')}`);
  }
  await Promise.all([app, ingress, egress, load].map((c) => c.exit()));
  const total = rounds.reduce((a, r) => a + r.requests, 0);
  const failed = rounds.reduce((a, r) => a + r.failures, 0);
  const leftOpen = rounds.filter((r) => r.closeWait.ingress + r.closeWait.egress > 0).length;
  const pass = failed === 0 && leftOpen === 0 && rounds.length > 0;
  const last = rounds.at(-1);
  const result = { date: new Date().toISOString(), node: process.version, seconds: (Date.now() - started) / 1000, concurrency, tokensPerRound: TOKENS_PER_ROUND, perToken: PER_TOKEN, total, failed, roundsWithCloseWait: leftOpen, rssStart, rssEnd: last?.rssMiB, pass, rounds };
  const outDir = args.out ?? join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'sidecar-soak.json'), JSON.stringify(result, null, 2) + '\n');
  const md = [
    `# Sidecar soak: ${pass ? 'PASS' : 'FAIL'}`,
    '',
    `${result.date}, Node ${result.node}, ${result.seconds.toFixed(0)} s, ${rounds.length} rounds alternating HTTP/1.1 and h2c agents, ${concurrency} workers, ${TOKENS_PER_ROUND} fresh tokens per round.`,
    '',
    `- honest requests: ${total}, failed or truncated: ${failed}`,
    `- rounds after which a CLOSE-WAIT socket stayed more than 3 s: ${leftOpen}`,
    `- RSS MiB: ingress ${rssStart.ingress.toFixed(1)} -> ${last?.rssMiB.ingress.toFixed(1)}, egress ${rssStart.egress.toFixed(1)} -> ${last?.rssMiB.egress.toFixed(1)}`,
    '',
  ].join('\n');
  writeFileSync(join(outDir, 'sidecar-soak.md'), md);
  console.log(md);
  return pass ? 0 : 1;
}

installExitGuards();
main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`soak: FAILED: ${error instanceof BenchFailure ? `[${error.code}] ${error.message}` : error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    killAllSync();
    process.exit(1);
  },
);
