/**
 * One Fastify instance per listener (HTTP/2 with HTTP/1.1 fallback over TLS), with what every
 * request gets before and after its endpoint: size limits, the form parser, the error table's
 * responses, connection tracking for shutdown. The endpoints are in routes.ts.
 */
import type { IncomingMessage } from 'node:http';
import { constants as http2Constants, type Http2ServerRequest, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { sessionBoundTlsOptions, type TlsVersion } from '@tether/core';
import { hasUnreadBody, resetOversizedHttp2Request } from '@tether/core/node';
import type { ResolvedConfig } from '../config.js';
import type { AuthorizationEngine } from '../engine.js';
import { OAuthError } from '../errors.js';
import { FormParams } from '../form.js';
import { clientErrorHandler, sendError, toOAuthError } from '../http-errors.js';
import type { KeyManager } from '../keys.js';
import type { AsMetrics } from '../metrics.js';
import { registerRoutes } from './routes.js';

export type Listener = 'mtls' | 'plain';

export interface AppContext {
  engine: AuthorizationEngine;
  keys: KeyManager;
  metrics: AsMetrics;
  logger: Logger;
  tlsVersions: readonly TlsVersion[];
  config: ResolvedConfig;
}

export interface ListenerApp {
  app: FastifyInstance;
  sockets: Set<Socket>;
  sessions: Set<ServerHttp2Session>;
}

/**
 * The Fastify instance of a listener. The mutual-TLS listener requests a client certificate
 * without rejecting unverified ones, so self-signed certificates reach
 * `self_signed_tls_client_auth`; the plain-TLS listener does not request one.
 */
function createListenerApp(ctx: AppContext, listener: Listener): ListenerApp & { maxHeaderBytes: number } {
  const { config, metrics } = ctx;
  const tls = sessionBoundTlsOptions({
    cert: config.tls.cert,
    key: config.tls.key,
    ...(listener === 'mtls' && config.clientCaPem.length > 0 ? { ca: config.clientCaPem } : {}),
    allowTls12: config.tls.allowTls12,
    rejectUnauthorized: false,
  });
  if (listener === 'plain') tls.requestCert = false;
  const app = fastify({
    http2: true,
    https: { ...tls, allowHTTP1: true },
    loggerInstance: ctx.logger.child({ listener }),
    logController: new fastify.LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyBytes,
    requestTimeout: config.limits.requestTimeoutMs,
    connectionTimeout: config.limits.requestTimeoutMs * 3,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    clientErrorHandler: clientErrorHandler(metrics),
  }) as unknown as FastifyInstance;

  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  const server = app.server as unknown as Http2SecureServer;
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('session', (s: ServerHttp2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  return { app, sockets, sessions, maxHeaderBytes: tls.settings.maxHeaderListSize };
}

/** Size limits and unread bodies: nothing is parsed or drained for a request that is refused. */
function installLimits(app: FastifyInstance, metrics: AsMetrics, maxHeaderBytes: number): void {
  // Request size limits, before any parsing. HTTP/2: Node applies `maxHeaderListSize` only once
  // the client has acknowledged our SETTINGS; before that, oversized header sections are reset here
  // the same way (ENHANCE_YOUR_CALM). HTTP/1.1 header sections are bounded by Node's parser (431,
  // clientErrorHandler) and bodies by `bodyLimit` (413).
  app.addHook('onRequest', (request, reply, done) => {
    if (resetOversizedHttp2Request(request.raw, maxHeaderBytes)) {
      const endpoint = (request.routeOptions.config as { endpoint?: string } | undefined)?.endpoint ?? 'other';
      metrics.failures.inc({ endpoint, error: 'invalid_request', reason: 'header_too_large' });
      reply.hijack(); // nothing further runs for it (Fastify stops at a hijacked reply)
    }
    done();
  });
  // A response sent before the request body was read (a refusal, a 404, a GET with a body) must
  // not leave the server reading, then discarding, whatever an unauthenticated client keeps
  // uploading. HTTP/1.1: close the connection (Node would keep it alive and drain the body).
  // HTTP/2: reset the stream with NO_ERROR once the response is out (RFC 9113 section 8.1); Node
  // does so itself only when nothing of the body was read, and the body parser reads up to the
  // limit before its 413. (Node drops a `connection` field on HTTP/2 with a warning: removed.)
  app.addHook('onSend', (request, reply, payload, done) => {
    const raw = request.raw as IncomingMessage | Http2ServerRequest;
    if ('stream' in raw) {
      reply.removeHeader('connection');
      const stream = raw.stream;
      stream.once('finish', () =>
        setImmediate(() => {
          if (!stream.destroyed && !stream.closed && stream.state.remoteClose === 0) stream.close(http2Constants.NGHTTP2_NO_ERROR);
        }),
      );
    } else if (hasUnreadBody(raw)) reply.header('connection', 'close');
    done(null, payload);
  });
}

/** Form bodies only (UTF-8), parsed once into {@link FormParams}. */
function installFormParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (request, body, done) => {
    try {
      const type = String(request.headers['content-type'] ?? '');
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(type)?.[1];
      if (charset !== undefined && !/^utf-?8$/i.test(charset)) throw new OAuthError('invalid_request', 'Only UTF-8 form bodies are accepted', { reason: 'charset' });
      done(null, FormParams.parse(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
}

/** Every error becomes an RFC 6749 error body from the error table, counted and logged once. */
function installErrorHandlers(app: FastifyInstance, metrics: AsMetrics): void {
  app.setErrorHandler((error, request, reply) => {
    const oauth = toOAuthError(error);
    const endpoint = (request.routeOptions.config as { endpoint?: string } | undefined)?.endpoint ?? 'other';
    if (oauth.statusCode >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.info({ event: 'request_refused', endpoint, error: oauth.error, reason: oauth.reason }, 'request refused');
    metrics.failures.inc({ endpoint, error: oauth.error, reason: oauth.reason });
    return sendError(reply, oauth);
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, new OAuthError('not_found', 'Not found', { reason: 'not_found' })));
}

export function buildApp(ctx: AppContext, listener: Listener): ListenerApp {
  const { app, sockets, sessions, maxHeaderBytes } = createListenerApp(ctx, listener);
  installLimits(app, ctx.metrics, maxHeaderBytes);
  installFormParser(app);
  installErrorHandlers(app, ctx.metrics);
  registerRoutes(app, ctx, listener);
  return { app, sockets, sessions };
}
