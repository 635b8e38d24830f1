/**
 * An in-process deployment for the sidecar tests: echo application <- ingress <- egress, all on
 * 127.0.0.1:0, with development PKI certificates and test-issuer tokens.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jwtAccessTokenValidator, localJwks } from '@tether/core';
import type { DevPki } from '@tether/pki';
import { startEgress, startIngress, type EgressConfig, type EgressSidecar, type IngressConfig, type IngressSidecar } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../../helpers/issuer.js';
import { testPki } from '../../helpers/pki.js';

export interface EchoRecord {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface EchoApp {
  url: string;
  port: number;
  /** Requests the application received, newest last. */
  seen: EchoRecord[];
  /** Resolves the pending `/sse` stream's second half. */
  releaseSse(): void;
  /** How many `/forever` streams the application saw closed by the other side. */
  foreverClosed: number;
  close(): Promise<void>;
}

/**
 * The local application: `/sse` sends one event, waits for `releaseSse()`, sends two more and ends;
 * `/slow` answers after 300 ms (`/slow?ms=N`: after N ms); `/reset` destroys the connection; anything else echoes JSON.
 */
export async function startEchoApp(): Promise<EchoApp> {
  const seen: EchoRecord[] = [];
  let release: (() => void) | undefined;
  let released = false;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(record);
      const path = (req.url ?? '').split('?')[0];
      if (path === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: event 1\n\n');
        const rest = () => {
          res.write('data: event 2\n\n');
          setTimeout(() => res.end('data: event 3\n\n'), 20);
        };
        if (released) rest();
        else release = rest;
        return;
      }
      if (path === '/forever') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const timer = setInterval(() => res.write('data: tick\n\n'), 20);
        res.on('close', () => {
          clearInterval(timer);
          app.foreverClosed++;
        });
        return;
      }
      if (path === '/slow') {
        // `?ms=N` (0 to 60000) sets the delay, and a hang-up cancels the answer; 300 ms without it.
        const asked = new URL(req.url ?? '/', 'http://app').searchParams.get('ms');
        const delay = asked === null ? Number.NaN : Number(asked);
        if (Number.isInteger(delay) && delay >= 0 && delay <= 60_000) {
          const timer = setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('slow done'), delay);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('slow done'), 300);
        return;
      }
      if (path === '/reset') {
        req.socket.destroy();
        return;
      }
      if (path === '/cut') {
        // Dies mid-response: 10 of 100 declared bytes, then the connection is gone.
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('0123456789', () => setTimeout(() => req.socket.destroy(), 10));
        return;
      }
      const body = JSON.stringify(record);
      res.writeHead(200, { 'content-type': 'application/json', 'x-app': 'echo', connection: 'keep-alive, x-hop', 'x-hop': 'secret' });
      res.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const app: EchoApp = {
    foreverClosed: 0,
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    releaseSse() {
      released = true;
      const r = release;
      release = undefined;
      r?.();
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
  return app;
}

/**
 * An ingress on 127.0.0.1:0 in front of `upstream` (an application's URL or `unix:` path), with the development PKI's
 * server certificate (`pki` may be any development PKI), accepting `issuer`'s tokens.
 */
export function startTestIngress(pki: DevPki, issuer: TestIssuer, upstream: string, config: Partial<IngressConfig> = {}): Promise<IngressSidecar> {
  return startIngress({
    listen: '127.0.0.1:0',
    cert: pki.server.cert,
    key: pki.server.key,
    ca: pki.ca.cert,
    upstream,
    tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }),
    log: { level: 'silent' },
    ...config,
  });
}

export interface Stack {
  pki: DevPki;
  issuer: TestIssuer;
  app: EchoApp;
  ingress: IngressSidecar;
  egress: EgressSidecar;
  close(): Promise<void>;
}

export async function startStack(
  options: { egress?: Partial<EgressConfig>; ingress?: Partial<IngressConfig>; extraRoutes?: EgressConfig['routes'] } = {},
): Promise<Stack> {
  const pki = await testPki();
  const issuer = await TestIssuer.create();
  const app = await startEchoApp();
  const ingress = await startTestIngress(pki, issuer, app.url, {
    authorizationServers: [ISSUER],
    metricsListen: '127.0.0.1:0',
    drainTimeoutMs: 2000,
    ...options.ingress,
  });
  const egress = await startEgress({
    listen: '127.0.0.1:0',
    cert: pki.clients.client!.cert,
    key: pki.clients.client!.key,
    ca: pki.ca.cert,
    routes: [{ name: 'api', upstream: ingress.url, audience: AUDIENCE }, { name: 'other', upstream: ingress.url }, ...(options.extraRoutes ?? [])],
    metricsListen: '127.0.0.1:0',
    drainTimeoutMs: 2000,
    log: { level: 'silent' },
    ...options.egress,
  });
  return {
    pki,
    issuer,
    app,
    ingress,
    egress,
    async close() {
      await egress.close();
      await ingress.close();
      await app.close();
    },
  };
}
