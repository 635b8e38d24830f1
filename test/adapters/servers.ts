/**
 * Echo resources for the adapter suite, one per framework. Each answers `GET /api/echo` with 200
 * and `{principal, method, path}` (the shape `startEchoServer` in test/helpers uses), listens on
 * 127.0.0.1:0 and destroys every connection it still holds on close.
 */
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import express, { type Express } from 'express';
import fastify, { type FastifyInstance, type RawServerBase } from 'fastify';
import type { SessionBoundVerifier } from '@tether/core';
import { principalOf as expressPrincipal, sessionBoundMiddleware, sessionBoundTlsOptions, type SessionBoundMiddlewareOptions } from '@tether/core/express';
import { principalOf as fastifyPrincipal, sessionBoundPlugin, type SessionBoundPluginOptions } from '@tether/core/fastify';
import type { DevPki } from '@tether/pki';
import { startEchoServer } from '../helpers/servers.js';
import { ECHO_PATH, type AdapterServer, type AdapterUnderTest } from './shared-suite.js';

function tlsOptions(pki: DevPki, allowTls12: boolean) {
  return sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, allowTls12 });
}

/** Every TLS socket `server` accepts, so close() can end them all. */
function trackSockets(server: HttpsServer | Http2SecureServer): Set<TLSSocket> {
  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}

function destroyAll(sockets: Set<TLSSocket>): void {
  for (const socket of sockets) socket.destroy();
}

export interface ExpressEchoOptions {
  allowTls12?: boolean;
  middleware?: SessionBoundMiddlewareOptions;
  /** Extra setup after the echo route (e.g. error handlers). */
  configure?: (app: Express) => void;
}

/** Express 5 on node:https. The middleware is mounted at `/api`, so Express strips it from `req.url`. */
export async function startExpressEcho(pki: DevPki, verifier: SessionBoundVerifier, options: ExpressEchoOptions = {}): Promise<AdapterServer> {
  const app = express();
  app.disable('x-powered-by');
  app.use('/api', sessionBoundMiddleware(verifier, options.middleware));
  app.get(ECHO_PATH, (req, res) => {
    res.json({ principal: expressPrincipal(req), method: req.method, path: req.originalUrl });
  });
  options.configure?.(app);
  const server = createHttpsServer(tlsOptions(pki, options.allowTls12 === true), app);
  const sockets = trackSockets(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      destroyAll(sockets);
      await closed;
    },
  };
}

export interface FastifyEchoOptions {
  allowTls12?: boolean;
  http2: boolean;
  /** Fastify's `rewriteUrl` server option. */
  rewriteUrl?: (req: { url?: string }) => string;
  plugin?: Omit<SessionBoundPluginOptions, 'verifier'>;
  /** Replace the default setup (plugin at the root, echo route) with your own. */
  configure?: (app: FastifyInstance<RawServerBase>, verifier: SessionBoundVerifier) => Promise<void>;
}

async function defaultFastifySetup(app: FastifyInstance<RawServerBase>, verifier: SessionBoundVerifier, plugin: FastifyEchoOptions['plugin']): Promise<void> {
  await app.register(sessionBoundPlugin, { ...plugin, verifier });
  app.get(ECHO_PATH, async (request) => ({ principal: fastifyPrincipal(request), method: request.method, path: request.url }));
}

async function serveFastify(app: FastifyInstance<RawServerBase>, verifier: SessionBoundVerifier, options: FastifyEchoOptions): Promise<AdapterServer> {
  const sockets = trackSockets(app.server as HttpsServer | Http2SecureServer);
  await (options.configure ?? ((a, v) => defaultFastifySetup(a, v, options.plugin)))(app, verifier);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    async close() {
      const closed = app.close();
      destroyAll(sockets);
      await closed;
    },
  };
}

/** Fastify 5 over `https` (HTTP/1.1) or `http2: true` (HTTP/2 only, no HTTP/1.1 fallback). */
export function startFastifyEcho(pki: DevPki, verifier: SessionBoundVerifier, options: FastifyEchoOptions): Promise<AdapterServer> {
  const https = tlsOptions(pki, options.allowTls12 === true);
  const rewriteUrl = options.rewriteUrl === undefined ? {} : { rewriteUrl: options.rewriteUrl };
  const app = options.http2 ? fastify({ http2: true, https, ...rewriteUrl }) : fastify({ https, ...rewriteUrl });
  return serveFastify(app as unknown as FastifyInstance<RawServerBase>, verifier, options);
}

/** The five adapter/transport combinations the shared suite runs through. */
export const ADAPTERS = {
  nodeH2: {
    name: 'node adapter, http2.createSecureServer',
    protocol: 'h2',
    start: (pki, verifier, { allowTls12 }) => startEchoServer(pki, verifier, { protocol: 'h2', allowTls12 }),
  },
  nodeH1: {
    name: 'node adapter, https.createServer',
    protocol: 'http/1.1',
    start: (pki, verifier, { allowTls12 }) => startEchoServer(pki, verifier, { protocol: 'http/1.1', allowTls12 }),
  },
  express: {
    name: 'express middleware, https.createServer',
    protocol: 'http/1.1',
    start: (pki, verifier, { allowTls12 }) => startExpressEcho(pki, verifier, { allowTls12 }),
  },
  fastifyH1: {
    name: 'fastify plugin, https',
    protocol: 'http/1.1',
    start: (pki, verifier, { allowTls12 }) => startFastifyEcho(pki, verifier, { allowTls12, http2: false }),
  },
  fastifyH2: {
    name: 'fastify plugin, http2',
    protocol: 'h2',
    start: (pki, verifier, { allowTls12 }) => startFastifyEcho(pki, verifier, { allowTls12, http2: true }),
  },
} satisfies Record<string, AdapterUnderTest>;
