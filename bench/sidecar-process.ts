/**
 * One component of the sidecar benchmark, in its own process (forked with IPC by bench/sidecar.ts):
 *
 *   app      plain HTTP/1.1 application behind the ingress and behind nginx
 *   ingress  @tether/sidecar ingress (session binding required) in front of `app`
 *   egress   @tether/sidecar egress, route `api` -> the ingress
 *   rs-mtls  an in-process resource server: HTTP/2 over mTLS accepting bearer tokens, validated by
 *            the core verifier (minimumBinding 'none', so the JWT validation cost equals the ingress's)
 *   load     the load generator (bench/sidecar-load.ts)
 *
 * Messages: {cmd:'start', ...} -> {url}; {cmd:'reset'} -> {ok}; {cmd:'report'} -> {cpuMicros, ...};
 * {cmd:'run', ...} (load only) -> RunReply; {cmd:'exit'}. The process exits by itself when its IPC
 * channel closes (the bench is gone), so it never outlives the bench.
 *
 * Fault injection for the bench's own tests: start `app` with `fault: 'stall'` and it never answers.
 */
import { createServer as createHttpServer } from 'node:http';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createSessionBoundVerifier, jwtAccessTokenValidator, localJwks, type SessionBoundVerifier } from '@tether/core';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { startEgress, startIngress, type EgressSidecar } from '@tether/sidecar';
import { runLoad, type RunRequest } from './sidecar-load.js';

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

export interface StartRequest {
  cmd: 'start';
  material: Material;
  upstream?: string;
  fault?: 'stall';
}

const role = process.argv[2];
const send = (msg: unknown) => process.send?.(msg);
if (process.send === undefined) throw new Error('sidecar-process.ts is forked with IPC by bench/sidecar.ts');
process.on('disconnect', () => process.exit(1));

const sidecarLog = (process.env.TETHER_BENCH_SIDECAR_LOG ?? 'silent') as 'silent';
const BODY = Buffer.from('{"ok":true}');
let cpu = process.cpuUsage();
let verifier: SessionBoundVerifier | undefined;
let egress: EgressSidecar | undefined;
let close: () => Promise<void> = async () => undefined;

async function startApp(fault: StartRequest['fault']): Promise<string> {
  const server = createHttpServer((req, res) => {
    req.resume();
    if (fault === 'stall') return; // never answers: exercises the bench's deadlines
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

async function start(msg: StartRequest): Promise<string> {
  const m = msg.material;
  const tokens = () => jwtAccessTokenValidator({ keys: localJwks(m.jwks as Parameters<typeof localJwks>[0]), issuer: m.issuer, audience: m.audience });
  switch (role) {
    case 'app':
      return startApp(msg.fault);
    case 'rs-mtls': {
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
      const ingress = await startIngress({
        listen: '127.0.0.1:0',
        cert: m.serverCert,
        key: m.serverKey,
        ca: m.ca,
        upstream: msg.upstream as string,
        tokens: tokens(),
        drainTimeoutMs: 1000,
        log: { level: sidecarLog },
      });
      verifier = ingress.verifier;
      close = () => ingress.close();
      return ingress.url;
    }
    case 'egress': {
      const e = await startEgress({
        listen: '127.0.0.1:0',
        cert: m.clientCert,
        key: m.clientKey,
        ca: m.ca,
        routes: [{ name: 'api', upstream: msg.upstream as string, audience: m.audience }],
        drainTimeoutMs: 1000,
        log: { level: sidecarLog },
      });
      egress = e;
      close = () => e.close();
      return e.url;
    }
    case 'load':
      return '';
    default:
      throw new Error(`unknown role ${String(role)}`);
  }
}

const counters = () => ({ proofsSigned: egress?.stats.proofsSigned ?? 0, proofVerifications: verifier?.stats.proofVerifications ?? 0 });

process.on('message', (msg: { cmd: string }) => {
  void (async () => {
    if (msg.cmd === 'start') send({ url: await start(msg as StartRequest) });
    else if (msg.cmd === 'reset') {
      cpu = process.cpuUsage();
      send({ ok: true, ...counters() });
    } else if (msg.cmd === 'report') {
      const used = process.cpuUsage(cpu);
      send({ cpuMicros: used.user + used.system, ...counters() });
    } else if (msg.cmd === 'run') send(await runLoad(msg as RunRequest));
    else if (msg.cmd === 'exit') {
      // A close that hangs must not keep the process: exit after 3 s regardless.
      setTimeout(() => process.exit(0), 3000).unref();
      await close();
      process.exit(0);
    }
  })().catch((error: unknown) => {
    console.error(`${String(role)}:`, error);
    process.exit(1);
  });
});
send({ ready: true });
