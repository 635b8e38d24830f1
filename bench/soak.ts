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
 * --rs-node-options "FLAGS" (Node flags for the server; default RS_NODE_OPTIONS in bench/soak/config.ts:
 * the young generation pinned as the deploy recipes do; "" for Node's own sizing), --out dir
 * (bench/results).
 *
 * Layout: this file sets the run up and sequences it; bench/soak/ holds the parts: config.ts (the
 * options above), tokens.ts (token pool), honest.ts and attacks.ts (the workers), run.ts (what
 * they share and count), samples.ts (sampling the server), verdict.ts (memory figures and checks),
 * report.ts (soak.json and soak.md).
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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { createDevPki } from '@tether/pki';
import { sessionBoundConfirmation } from '@tether/core';
import { TestIssuer } from '../test/helpers/issuer.js';
import { ForkedChild, installExitGuards, trackTempDir } from './children.js';
import { Outstanding, withRunDeadline } from './deadline.js';
import { writeSoakRsDir } from './soak-rs-dir.js';
import { ATTACKS, attackerWorker } from './soak/attacks.js';
import { readConfig } from './soak/config.js';
import { honestWorker } from './soak/honest.js';
import { buildResult, writeReport } from './soak/report.js';
import { newTally, type SoakRun } from './soak/run.js';
import { RsSampler } from './soak/samples.js';
import { TokenPool } from './soak/tokens.js';
import { verdictOf } from './soak/verdict.js';

const here = dirname(fileURLToPath(import.meta.url));

async function runGenerator(): Promise<void> {
  const config = readConfig();
  const { duration } = config;
  const dir = mkdtempSync(join(tmpdir(), 'tether-soak-'));
  trackTempDir(dir);
  const pki = await createDevPki({ clients: ['client', 'attacker'] });
  const client = pki.clients.client as { cert: string; key: string };
  const attacker = pki.clients.attacker as { cert: string; key: string };
  const issuer = await TestIssuer.create();
  writeSoakRsDir(dir, pki, issuer.jwks, { cachePerConnection: config.cachePerConnection, cacheMax: config.cacheMax });

  const rs = new ForkedChild('rs', join(here, 'soak-rs.ts'), 30_000, { args: [dir], execArgv: ['--expose-gc', ...config.rsNodeOptions], env: config.allocator.env });
  const { port } = (await rs.ready) as { port: number };
  const pool = await TokenPool.create(issuer, sessionBoundConfirmation(new X509Certificate(client.cert)), config.tokensPerConnection, config.tokenLifetime);
  const tally = newTally(Object.keys(ATTACKS));
  const started = Date.now();
  const deadline = started + duration * 1000;
  const outstanding = new Outstanding();
  const run: SoakRun = { config, origin: `https://127.0.0.1:${port}`, ca: pki.ca.cert, client, attacker, pool, outstanding, running: () => Date.now() < deadline };
  const sampler = new RsSampler(rs, tally, started);

  const loops = [...Array.from({ length: config.workersN }, (_, i) => honestWorker(run, tally, i)), ...Array.from({ length: config.attackersN }, (_, i) => attackerWorker(run, tally, i))];
  const allDone = Promise.all(loops);
  const sampling = sampler.whileRunning(allDone, run.running, config.sampleEvery, config.warmup);
  // Workers stop starting batches at the deadline; a batch in flight then has a bounded time to finish.
  await withRunDeadline(`soak (${duration} s + 120 s to finish)`, (duration + 120) * 1000, outstanding, allDone);
  await sampling;

  // Every client has closed: the end sample once the server has drained.
  const final = await sampler.end();
  await rs.exit(10_000);
  rmSync(dir, { recursive: true, force: true });
  const elapsed = (Date.now() - started) / 1000;

  const verdict = verdictOf(config, tally, sampler.samples, final);
  writeReport(config.outDir, buildResult(config, tally, verdict, sampler.samples, elapsed), elapsed);
  process.exitCode = verdict.pass ? 0 : 1;
}

installExitGuards();
runGenerator().catch((error: unknown) => {
  console.error(error);
  process.exit(2);
});
