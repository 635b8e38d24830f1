/**
 * One component of the sidecar benchmark, in its own process (forked with IPC by bench/sidecar.ts):
 *
 *   app      plain HTTP/1.1 application behind the ingress
 *   ingress  @tether/sidecar ingress (session binding required) in front of `app`
 *   egress   @tether/sidecar egress, route `api` -> the ingress
 *   direct   the baseline: HTTP/2 over mTLS accepting bearer tokens, validated by the core verifier
 *            (minimumBinding 'none', so the JWT validation cost equals the ingress's)
 *   load     the load generator (HTTP/2 over mTLS to `direct`; HTTP/1.1 keep-alive or h2c to `egress`)
 *
 * Messages: {cmd:'start', ...} -> {url}; {cmd:'reset'} -> {ok}; {cmd:'report'} -> {cpuMicros, ...};
 * {cmd:'run', ...} (load only) -> RunResult; {cmd:'exit'}.
 */
import { createServer as createHttpServer, request as httpRequest, Agent as HttpAgent } from 'node:http';
import { connect as http2Connect, createSecureServer, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createSessionBoundVerifier, jwtAccessTokenValidator, localJwks, type SessionBoundVerifier } from '@tether/core';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { startEgress, startIngress, type EgressSidecar, type IngressSidecar } from '@tether/sidecar';

export interface Material {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  jwks: unknown;
  issuer: string;
  audience: string;
}

export interface RunRequest {
  cmd: 'run';
  mode: 'direct' | 'sidecar-h1' | 'sidecar-h2c';
  url: string;
  path: string;
  tokens: string[];
  perToken: number;
  concurrency: number;
  material: Material;
}

export interface RunResult {
  requests: number;
  failures: number;
  seconds: number;
  throughput: number;
  p50Ms: number;
  p99Ms: number;
}

const role = process.argv[2];
const send = (msg: unknown) => process.send?.(msg);
if (process.send === undefined) throw new Error('sidecar-process.ts is forked with IPC by bench/sidecar.ts');

const BODY = Buffer.from('{"ok":true}');
let cpu = process.cpuUsage();
let verifier: SessionBoundVerifier | undefined;
let egress: EgressSidecar | undefined;
let ingress: IngressSidecar | undefined;
let close: () => Promise<void> = async () => undefined;

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function run(msg: RunRequest): Promise<RunResult> {
  const jobs: string[] = [];
  for (let m = 0; m < msg.perToken; m++) for (const t of msg.tokens) jobs.push(t);
  const latencies = new Float64Array(jobs.length);
  let failures = 0;
  let next = 0;
  let session: ClientHttp2Session | undefined;
  let agent: HttpAgent | undefined;
  let one: (token: string) => Promise<number>;
  if (msg.mode === 'sidecar-h1') {
    const u = new URL(msg.url);
    agent = new HttpAgent({ keepAlive: true, maxSockets: msg.concurrency });
    const a = agent;
    one = (token) =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: u.hostname, port: u.port, path: msg.path, agent: a, headers: { authorization: `Bearer ${token}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
  } else {
    session =
      msg.mode === 'direct'
        ? http2Connect(msg.url, { cert: msg.material.clientCert, key: msg.material.clientKey, ca: msg.material.ca, minVersion: 'TLSv1.3' })
        : http2Connect(msg.url);
    const s = session;
    s.on('error', () => undefined);
    one = (token) =>
      new Promise((resolve, reject) => {
        const stream = s.request({ ':path': msg.path, authorization: `Bearer ${token}` });
        let status = 0;
        stream.once('response', (h) => (status = Number(h[':status'])));
        stream.on('error', reject);
        stream.resume();
        stream.on('end', () => resolve(status));
        stream.end();
      });
  }
  // Open the connection(s) outside the timed window. The first token is used only here.
  const warm = msg.tokens[0] as string;
  await Promise.all(Array.from({ length: msg.concurrency }, () => one(warm)));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: msg.concurrency }, async () => {
      while (next < jobs.length) {
        const i = next++;
        const started = process.hrtime.bigint();
        const status = await one(jobs[i] as string).catch(() => 0);
        latencies[i] = Number(process.hrtime.bigint() - started) / 1e6;
        if (status !== 200) failures++;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  session?.close();
  agent?.destroy();
  const sorted = latencies.slice().sort();
  return { requests: jobs.length, failures, seconds, throughput: jobs.length / seconds, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

async function start(msg: { material: Material; upstream?: string }): Promise<string> {
  const m = msg.material;
  const tokens = () => jwtAccessTokenValidator({ keys: localJwks(m.jwks as Parameters<typeof localJwks>[0]), issuer: m.issuer, audience: m.audience });
  switch (role) {
    case 'app': {
      const server = createHttpServer((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length }).end(BODY));
      });
      server.keepAliveTimeout = 60_000;
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      close = async () => {
        server.closeAllConnections();
        server.close();
      };
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
    case 'direct': {
      verifier = createSessionBoundVerifier({ tokens: tokens(), minimumBinding: 'none' });
      const server = createSecureServer(
        { ...sessionBoundTlsOptions({ cert: m.serverCert, key: m.serverKey, ca: m.ca }), allowHTTP1: true },
        sessionBoundHandler(verifier, (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
          res.end(BODY);
        }),
      );
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      close = async () => {
        server.close();
      };
      return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
    case 'ingress': {
      ingress = await startIngress({
        listen: '127.0.0.1:0',
        cert: m.serverCert,
        key: m.serverKey,
        ca: m.ca,
        upstream: msg.upstream as string,
        tokens: tokens(),
        drainTimeoutMs: 1000,
        log: { level: 'silent' },
      });
      verifier = ingress.verifier;
      const i = ingress;
      close = () => i.close();
      return ingress.url;
    }
    case 'egress': {
      egress = await startEgress({
        listen: '127.0.0.1:0',
        cert: m.clientCert,
        key: m.clientKey,
        ca: m.ca,
        routes: [{ name: 'api', upstream: msg.upstream as string, audience: m.audience }],
        drainTimeoutMs: 1000,
        log: { level: 'silent' },
      });
      const e = egress;
      close = () => e.close();
      return egress.url;
    }
    case 'load':
      return '';
    default:
      throw new Error(`unknown role ${String(role)}`);
  }
}

process.on('message', (msg: { cmd: string }) => {
  void (async () => {
    if (msg.cmd === 'start') send({ url: await start(msg as unknown as { material: Material; upstream?: string }) });
    else if (msg.cmd === 'reset') {
      cpu = process.cpuUsage();
      send({ ok: true, proofsSigned: egress?.stats.proofsSigned ?? 0, proofVerifications: verifier?.stats.proofVerifications ?? 0 });
    } else if (msg.cmd === 'report') {
      const used = process.cpuUsage(cpu);
      send({ cpuMicros: used.user + used.system, proofsSigned: egress?.stats.proofsSigned ?? 0, proofVerifications: verifier?.stats.proofVerifications ?? 0 });
    } else if (msg.cmd === 'run') send(await run(msg as RunRequest));
    else if (msg.cmd === 'exit') {
      await close();
      process.exit(0);
    }
  })().catch((error: unknown) => {
    console.error(`${String(role)}:`, error);
    process.exit(1);
  });
});
send({ ready: true });
