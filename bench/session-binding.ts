/**
 * Resource-server cost of session binding against bearer-only validation, on one long-lived
 * HTTP/2 connection (issue 2's measurement), plus the cost of a first-presentation proof
 * verification. The resource server runs in a child process; this process is the load generator.
 * Bearer and session-bound runs alternate on the same server process and are repeated; each
 * figure is reported as a ratio to bearer measured in the same run, with median and spread.
 *
 *   npm run bench:session              # full run
 *   npm run bench:session -- --quick   # smoke run (seconds)
 *
 * Deadlines: every request has one (REQUEST_TIMEOUT_MS; a request that times out fails the run),
 * every run has RUN_DEADLINE_MS, after which it fails naming the requests still outstanding, and
 * every question to the resource-server child has ASK_TIMEOUT_MS; the child is killed by PID on
 * every exit path.
 */
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { createDevPki } from '@tether/pki';
import {
  SessionBoundClient,
  createSessionBindingProof,
  sessionBoundConfirmation,
  verifySessionBindingProof,
} from '@tether/core';
import { ForkedChild, installExitGuards } from './children.js';
import { Outstanding, REQUEST_TIMEOUT_MS, withRunDeadline } from './deadline.js';
import { median } from './median.js';
import { writeServerTlsFiles } from './server-tls-files.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const repeats = quick ? 2 : 5;
const tokensN = quick ? 10 : 20;
const perTokenM = quick ? 100 : 500;
const concurrency = 32;
/** Deadline of one question to the resource-server child, ms. */
const ASK_TIMEOUT_MS = 30_000;
/** Deadline of one bearer or session run, ms. */
const RUN_DEADLINE_MS = 120_000;
const spread = (xs: number[]) => ({ min: Math.min(...xs), max: Math.max(...xs) });

async function main(): Promise<void> {
  installExitGuards();
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-'));
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  writeServerTlsFiles(dir, pki);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'b1', alg: 'ES256' }] }));
  const mint = (cnf: unknown, sub: string) =>
    new SignJWT({ client_id: 'bench', scope: 'read', ...(cnf === undefined ? {} : { cnf }) })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'b1' })
      .setIssuer('https://as.bench').setAudience('https://rs.bench').setSubject(sub)
      .setIssuedAt().setExpirationTime('1h').sign(privateKey);
  const cnf = sessionBoundConfirmation(new X509Certificate(client.cert));
  const bearerTokens = await Promise.all(Array.from({ length: tokensN }, (_, i) => mint(undefined, `u${i}`)));
  const boundTokens = await Promise.all(Array.from({ length: tokensN }, (_, i) => mint(cnf, `u${i}`)));

  const rs = new ForkedChild('rs', join(here, 'rs-process.ts'), ASK_TIMEOUT_MS, { args: [dir] });
  const { port } = (await rs.ready) as { port: number };
  const url = `https://127.0.0.1:${port}/resource`;

  async function run(tokens: string[]) {
    const c = new SessionBoundClient({ cert: client.cert, key: client.key, ca: pki.ca.cert, timeoutMs: REQUEST_TIMEOUT_MS });
    // Open the connection (handshake) outside the timed window, with a bearer token so no proof is counted.
    await c.request(url, { token: bearerTokens[0] as string });
    await rs.ask({ cmd: 'reset' }, ASK_TIMEOUT_MS);
    const started = c.stats.proofsSigned;
    const jobs: string[] = [];
    for (let m = 0; m < perTokenM; m++) for (const t of tokens) jobs.push(t);
    let next = 0;
    let failures = 0;
    const outstanding = new Outstanding();
    const request = async (i: number) => {
      const id = outstanding.begin(`request ${i} of ${jobs.length}`);
      try {
        const r = await c.request(url, { token: jobs[i] as string });
        if (r.status !== 200) failures++;
      } finally {
        outstanding.end(id);
      }
    };
    const t0 = process.hrtime.bigint();
    const workers = Array.from({ length: concurrency }, async () => {
      while (next < jobs.length) await request(next++);
    });
    await withRunDeadline('session-binding run', RUN_DEADLINE_MS, outstanding, Promise.all(workers));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const report = await rs.ask<{ cpuMicros: number; stats: { proofVerifications: number; cacheHits: number } }>({ cmd: 'report' }, ASK_TIMEOUT_MS);
    const result = {
      requests: jobs.length,
      failures,
      throughput: jobs.length / seconds,
      rsCpuMicrosPerRequest: report.cpuMicros / jobs.length,
      proofsSigned: c.stats.proofsSigned - started,
      proofVerifications: report.stats.proofVerifications,
      connections: c.stats.connectionsOpened,
    };
    await c.close();
    return result;
  }

  const runs: Array<{ bearer: Awaited<ReturnType<typeof run>>; session: Awaited<ReturnType<typeof run>> }> = [];
  for (let i = 0; i < repeats; i++) {
    const bearer = await run(bearerTokens);
    const session = await run(boundTokens);
    runs.push({ bearer, session });
    console.error(`run ${i + 1}/${repeats}: bearer ${bearer.throughput.toFixed(0)} req/s, session ${session.throughput.toFixed(0)} req/s`);
  }
  await rs.exit();

  // First-presentation verification cost: full proof verification vs. the same loop doing nothing
  // but creating distinct inputs, in this process.
  const proofs: string[] = [];
  const ekm = randomBytes(32);
  const key = createPrivateKey(client.key);
  const cert = new X509Certificate(client.cert);
  const samples = quick ? 300 : 2000;
  for (let i = 0; i < samples; i++) proofs.push(await createSessionBindingProof({ privateKey: key, certificate: cert, accessToken: `tok${i}`, ekm }));
  const tv0 = process.hrtime.bigint();
  for (let i = 0; i < samples; i++) await verifySessionBindingProof(proofs[i] as string, { certificate: cert, ekm, accessToken: `tok${i}` });
  const verifyMicros = Number(process.hrtime.bigint() - tv0) / 1e3 / samples;
  const ts0 = process.hrtime.bigint();
  for (let i = 0; i < samples; i++) await createSessionBindingProof({ privateKey: key, certificate: cert, accessToken: `tok${i}`, ekm });
  const signMicros = Number(process.hrtime.bigint() - ts0) / 1e3 / samples;

  const ratios = runs.map((r) => r.session.throughput / r.bearer.throughput);
  const cpuRatios = runs.map((r) => r.session.rsCpuMicrosPerRequest / r.bearer.rsCpuMicrosPerRequest);
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    quick,
    setup: { tokens: tokensN, requestsPerToken: perTokenM, concurrency, repeats, transport: 'one HTTP/2 connection, TLS 1.3, P-256 client certificate, ES256 access tokens' },
    throughputRatio: { median: median(ratios), ...spread(ratios) },
    rsCpuPerRequestRatio: { median: median(cpuRatios), ...spread(cpuRatios) },
    bearer: { throughput: median(runs.map((r) => r.bearer.throughput)), rsCpuMicrosPerRequest: median(runs.map((r) => r.bearer.rsCpuMicrosPerRequest)) },
    session: {
      throughput: median(runs.map((r) => r.session.throughput)),
      rsCpuMicrosPerRequest: median(runs.map((r) => r.session.rsCpuMicrosPerRequest)),
      proofsSignedPerRun: runs.map((r) => r.session.proofsSigned),
      proofVerificationsPerRun: runs.map((r) => r.session.proofVerifications),
      failures: runs.reduce((a, r) => a + r.session.failures + r.bearer.failures, 0),
    },
    firstPresentation: { verifyMicros, signMicros, samples },
    runs,
  };
  const outDir = join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const name = quick ? 'session-binding-quick' : 'session-binding';
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
  const md = [
    `# Session binding vs bearer on one HTTP/2 connection${quick ? ' (quick)' : ''}`,
    '',
    `${result.date}, Node ${result.node}; ${tokensN} tokens x ${perTokenM} requests, ${concurrency} streams in flight, ${repeats} alternating runs. Ratios are session-bound / bearer from the same run.`,
    '',
    '| figure | bearer (median) | session-bound (median) | ratio median | ratio min..max |',
    '|---|---|---|---|---|',
    `| RS throughput (req/s) | ${result.bearer.throughput.toFixed(0)} | ${result.session.throughput.toFixed(0)} | ${result.throughputRatio.median.toFixed(3)} | ${result.throughputRatio.min.toFixed(3)}..${result.throughputRatio.max.toFixed(3)} |`,
    `| RS CPU µs/request | ${result.bearer.rsCpuMicrosPerRequest.toFixed(1)} | ${result.session.rsCpuMicrosPerRequest.toFixed(1)} | ${result.rsCpuPerRequestRatio.median.toFixed(3)} | ${result.rsCpuPerRequestRatio.min.toFixed(3)}..${result.rsCpuPerRequestRatio.max.toFixed(3)} |`,
    '',
    `Proofs signed per session-bound run: ${result.session.proofsSignedPerRun.join(', ')} (tokens: ${tokensN}); full proof verifications at the RS: ${result.session.proofVerificationsPerRun.join(', ')}. Non-200 responses: ${result.session.failures}.`,
    '',
    `First presentation (ES256, in-process, ${samples} distinct proofs): verification ${verifyMicros.toFixed(1)} µs, signing ${signMicros.toFixed(1)} µs.`,
    '',
  ].join('\n');
  writeFileSync(join(outDir, `${name}.md`), md);
  console.log(md);
  rmSync(dir, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
