/**
 * What a token-held client key costs (issue 17 point 4): a SoftHSM2 P-256 key against the same
 * kind of key in memory, measured in the same run, on the client side.
 *
 *   proof signing   createSessionBindingProof: KeyObject (jose) vs C_Sign through @tether/pkcs11
 *   TLS handshake   TLS 1.3 with a client certificate to a real resource server (child process):
 *                   PEM key vs OpenSSL's pkcs11 engine (prebuilt secure context either way)
 *   warm request    one request on an open HTTP/2 connection with its cached proof (no signature)
 *   context build   tls.createSecureContext once per client (the engine loads the key, logs in)
 *
 * and from those, the client's amortised CPU per request when a connection carries M requests
 * (one handshake and one proof per connection): (handshake + proof) / M + warm request, for
 * M = 1, 10, 100. CPU is this process's user+system time (SoftHSM2 runs inside it, so its work is
 * counted; a network HSM's would not be, and its latency would show in the wall times instead).
 * Every figure is the median of the repeats; every operation has a deadline, the whole run too.
 *
 *   npm run bench:pkcs11             # full run, writes bench/results/pkcs11.md and .json
 *   npm run bench:pkcs11 -- --quick  # seconds; writes pkcs11-quick.*
 *   ... --out DIR                    # write the results to DIR instead of bench/results
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect as tlsConnect, createSecureContext, type SecureContext } from 'node:tls';
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { SessionBoundClient, createSessionBindingProof, openClientKey, sessionBoundConfirmation, tlsKeyOptions, type ExternalClientKey } from '@tether/core';
import { Pkcs11Key } from '@tether/pkcs11';
import { ForkedChild, installExitGuards, trackTempDir } from './children.js';
import { median } from './median.js';
import { softHsm, removeSoftHsm } from '../test/helpers/softhsm.js';
import { testPki } from '../test/helpers/pki.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const outIndex = process.argv.indexOf('--out');
const outDir = outIndex === -1 ? join(here, 'results') : (process.argv[outIndex + 1] ?? join(here, 'results'));
const REPEATS = quick ? 2 : 5;
const SIGNS = quick ? 100 : 1000;
const HANDSHAKES = quick ? 30 : 200;
const WARM = quick ? 300 : 3000;
const CONTEXTS = quick ? 5 : 20;
const MS = [1, 10, 100];
const RUN_DEADLINE_MS = quick ? 120_000 : 900_000;
const OP_TIMEOUT_MS = 10_000;

interface Sample {
  wallUs: number;
  cpuUs: number;
}

/** Wall and CPU µs per operation of `n` sequential runs of `op`. */
async function measure(n: number, op: (i: number) => Promise<unknown>): Promise<Sample> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await op(i);
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000 / n;
  const cpu = process.cpuUsage(cpu0);
  return { wallUs, cpuUs: (cpu.user + cpu.system) / n };
}

function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} missed its ${ms} ms deadline`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function handshake(port: number, context: SecureContext): Promise<void> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: context, ALPNProtocols: ['h2'] });
  try {
    await deadline(once(socket, 'secureConnect'), OP_TIMEOUT_MS, 'handshake');
  } finally {
    socket.destroy();
  }
}

interface KeyUnderTest {
  name: 'memory' | 'softhsm2';
  cert: string;
  /** What signs the proofs. */
  signer: KeyObject | ExternalClientKey;
  /** What the client is given: PEM, or the opened token key. */
  clientKey: string | ExternalClientKey;
}

type Figures = Record<'sign' | 'handshake' | 'warm' | 'context', Sample>;

async function measureKey(k: KeyUnderTest, port: number, ca: string, token: string, url: string): Promise<Figures> {
  const certificate = new X509Certificate(k.cert);
  const ekm = randomBytes(32);
  const sign = await measure(SIGNS, (i) =>
    createSessionBindingProof({ privateKey: k.signer, alg: 'ES256', certificate, accessToken: `token-${i}`, ekm }),
  );
  const contextOptions = { cert: k.cert, ...tlsKeyOptions(k.clientKey), ca, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
  const context = await measure(CONTEXTS, async () => createSecureContext(contextOptions));
  const shared = createSecureContext(contextOptions);
  const hs = await measure(HANDSHAKES, () => handshake(port, shared));
  const client = new SessionBoundClient({ cert: k.cert, key: k.clientKey, ca, timeoutMs: OP_TIMEOUT_MS });
  try {
    const first = await client.request(url, { token });
    if (first.status !== 200) throw new Error(`${k.name}: first request answered ${first.status}: ${first.body.toString()}`);
    const warm = await measure(WARM, async () => {
      const r = await client.request(url, { token });
      if (r.status !== 200) throw new Error(`${k.name}: ${r.status}`);
    });
    if (client.stats.proofsSigned !== 1 || client.stats.connectionsOpened !== 1) throw new Error(`${k.name}: expected one proof on one connection, got ${JSON.stringify(client.stats)}`);
    return { sign, handshake: hs, warm, context };
  } finally {
    await client.close();
  }
}

const ISSUER = 'https://as.bench';
const AUDIENCE = 'https://rs.bench';

async function mint(issuerKey: KeyObject, cert: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ client_id: 'bench', cnf: sessionBoundConfirmation(new X509Certificate(cert)) })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'bench' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('bench')
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(issuerKey);
}

const fmt = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

function mergeRepeats(samples: Figures[]): Figures {
  const pick = (k: keyof Figures): Sample => ({ wallUs: median(samples.map((s) => s[k].wallUs)), cpuUs: median(samples.map((s) => s[k].cpuUs)) });
  return { sign: pick('sign'), handshake: pick('handshake'), warm: pick('warm'), context: pick('context') };
}

function amortised(f: Figures, m: number): Sample {
  return { wallUs: (f.handshake.wallUs + f.sign.wallUs) / m + f.warm.wallUs, cpuUs: (f.handshake.cpuUs + f.sign.cpuUs) / m + f.warm.cpuUs };
}

function report(results: Record<KeyUnderTest['name'], Figures>, cSigns: number, expectedSigns: number, load: string): string {
  const mem = results.memory;
  const hsm = results.softhsm2;
  const row = (label: string, a: Sample, b: Sample) =>
    `| ${label} | ${fmt(a.cpuUs)} | ${fmt(b.cpuUs)} | ${(b.cpuUs / a.cpuUs).toFixed(2)} | ${fmt(a.wallUs)} | ${fmt(b.wallUs)} | ${(b.wallUs / a.wallUs).toFixed(2)} |`;
  const lines = [
    `# Client cost of a token-held key (SoftHSM2) vs a key in memory${quick ? ' (quick)' : ''}`,
    '',
    `${new Date().toISOString()}, Node ${process.version}, OpenSSL ${process.versions.openssl}; P-256 keys, TLS 1.3, resource server in a child process (bench/rs-process.ts). ${REPEATS} alternating repeats, medians. Per repeat: ${SIGNS} proof signatures, ${HANDSHAKES} handshakes, ${WARM} warm requests, ${CONTEXTS} secure contexts. CPU = this process (SoftHSM2 runs in it). Load average (1 min) at start and end: ${load} on ${availableParallelism()} cores.`,
    '',
    'The warm request runs the same code for both keys (no signature): its ratio shows how far noise alone moves a ratio in this run.',
    '',
    '| figure (per operation) | memory CPU µs | SoftHSM2 CPU µs | ratio | memory wall µs | SoftHSM2 wall µs | ratio |',
    '|---|---|---|---|---|---|---|',
    row('proof signature', mem.sign, hsm.sign),
    row('TLS 1.3 handshake (client side)', mem.handshake, hsm.handshake),
    row('warm request (cached proof, open connection)', mem.warm, hsm.warm),
    row('secure context (once per client)', mem.context, hsm.context),
    '',
    'Amortised client cost per request when one connection carries M requests: (handshake + proof) / M + warm request.',
    '',
    '| M | memory CPU µs | SoftHSM2 CPU µs | ratio | memory wall µs | SoftHSM2 wall µs | ratio |',
    '|---|---|---|---|---|---|---|',
    ...MS.map((m) => row(String(m), amortised(mem, m), amortised(hsm, m))),
    '',
    `C_Sign calls counted at the token key: ${cSigns} (expected ${expectedSigns}: the proof signatures plus one proof per warm-request connection).`,
  ];
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  installExitGuards();
  const guard = setTimeout(() => {
    console.error(`bench:pkcs11 missed its ${RUN_DEADLINE_MS} ms run deadline`);
    process.exit(1);
  }, RUN_DEADLINE_MS);
  guard.unref();
  const hsm = await softHsm();
  const pki = await testPki('p256');
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-pkcs11-'));
  trackTempDir(dir);
  const issuer = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(dir, 'server.pem'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pem'), pki.ca.cert);
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(issuer.publicKey)), kid: 'bench', alg: 'ES256' }] }));
  const rs = new ForkedChild('rs', join(here, 'rs-process.ts'), 30_000, { args: [dir] });
  const { port } = (await rs.ready) as { port: number };
  const url = `https://127.0.0.1:${port}/resource`;
  const opened = (await openClientKey(hsm.keys.p256.uri, hsm.keys.p256.cert, { modulePath: hsm.modulePath })).key;
  if (!(opened instanceof Pkcs11Key)) throw new Error('expected a Pkcs11Key');
  const memoryPem = pki.clients.client!;
  const keys: KeyUnderTest[] = [
    { name: 'memory', cert: memoryPem.cert, signer: createPrivateKey(memoryPem.key), clientKey: memoryPem.key },
    { name: 'softhsm2', cert: hsm.keys.p256.cert, signer: opened, clientKey: opened },
  ];
  const tokens = { memory: await mint(issuer.privateKey, memoryPem.cert), softhsm2: await mint(issuer.privateKey, hsm.keys.p256.cert) };
  const samples: Record<KeyUnderTest['name'], Figures[]> = { memory: [], softhsm2: [] };
  const signsBefore = opened.signatures;
  const loadAtStart = loadavg()[0] ?? 0;
  try {
    for (let r = 0; r < REPEATS; r++) {
      for (const k of r % 2 === 0 ? keys : [...keys].reverse()) {
        samples[k.name].push(await measureKey(k, port, pki.ca.cert, tokens[k.name], url));
        console.error(`bench:pkcs11 repeat ${r + 1}/${REPEATS} ${k.name} done`);
      }
    }
    const results = { memory: mergeRepeats(samples.memory), softhsm2: mergeRepeats(samples.softhsm2) };
    const text = report(results, opened.signatures - signsBefore, REPEATS * (SIGNS + 1), `${loadAtStart.toFixed(1)} / ${(loadavg()[0] ?? 0).toFixed(1)}`);
    const base = join(outDir, quick ? 'pkcs11-quick' : 'pkcs11');
    writeFileSync(`${base}.md`, text);
    writeFileSync(`${base}.json`, `${JSON.stringify({ date: new Date().toISOString(), node: process.version, quick, repeats: REPEATS, results, samples }, null, 2)}\n`);
    process.stdout.write(text);
  } finally {
    await rs.exit();
    await opened.close();
    await removeSoftHsm();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
