/**
 * The endpoints: token, introspection, revocation (POST only), JWKS, metadata (RFC 8414, also at
 * the issuer's path), health and metrics. Each OAuth endpoint turns the request into the engine's
 * {@link RequestInfo} and sends the engine's answer; refusals go through the error handler.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PROOF_HEADER } from '@tether/core';
import { DPOP_HEADER } from '@tether/core/dpop';
import { peerOf } from '../connection.js';
import { PATHS, type Endpoint, type RequestInfo } from '../engine.js';
import { OAuthError } from '../errors.js';
import { FormParams } from '../form.js';
import { sendError } from '../http-errors.js';
import type { AppContext, Listener } from './app.js';

type AnyRequest = FastifyRequest;

/** The raw TLS socket of a request and the object that identifies its connection. */
function connectionOf(request: AnyRequest): { socket: TLSSocket; key: Parameters<typeof peerOf>[1] } {
  const raw = request.raw as IncomingMessage | Http2ServerRequest;
  const session = 'stream' in raw ? raw.stream?.session : undefined;
  if (session !== undefined) return { socket: session.socket as TLSSocket, key: session };
  return { socket: raw.socket as TLSSocket, key: raw.socket };
}

function rawHeaderValues(request: AnyRequest, name: string): string[] {
  const out: string[] = [];
  const raw = request.raw.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) out.push(raw[i + 1] as string);
  return out;
}

const noStore = { 'cache-control': 'no-store', pragma: 'no-cache' };

/** Token, introspection and revocation, each timed once its response is out. */
function registerOAuthEndpoints(app: FastifyInstance, ctx: AppContext, listener: Listener): void {
  const { engine, metrics } = ctx;
  const requestInfo = (request: AnyRequest, endpoint: Endpoint): RequestInfo => {
    const body = request.body;
    const params = body instanceof FormParams ? body : FormParams.empty();
    if (body !== undefined && !(body instanceof FormParams)) throw new OAuthError('invalid_request', 'The request body must be application/x-www-form-urlencoded', { reason: 'content_type' });
    const { socket, key } = connectionOf(request);
    const peer = listener === 'mtls' && typeof socket?.getPeerX509Certificate === 'function' ? peerOf(socket, key, ctx.tlsVersions) : undefined;
    return {
      listener,
      peer,
      params,
      authorization: rawHeaderValues(request, 'authorization'),
      proofs: rawHeaderValues(request, PROOF_HEADER.toLowerCase()),
      dpop: rawHeaderValues(request, DPOP_HEADER.toLowerCase()),
      endpointUrl: engine.endpoint(endpoint, listener),
    };
  };

  // Requests whose endpoint handler ran are observed once their response is out (the status is
  // then the one sent: a refusal's comes from the error handler, after the handler threw). The
  // duration is Fastify's, from the request's arrival to the end of its response.
  const handled = new WeakMap<AnyRequest, Endpoint>();
  app.addHook('onResponse', (request, reply, done) => {
    const endpoint = handled.get(request);
    if (endpoint !== undefined) metrics.requestDuration.observe({ endpoint, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });
  const timed = (endpoint: Endpoint, handler: (request: AnyRequest, reply: FastifyReply) => Promise<unknown>) => {
    return (request: AnyRequest, reply: FastifyReply) => {
      handled.set(request, endpoint);
      return handler(request, reply);
    };
  };

  app.post(
    PATHS.token,
    { config: { endpoint: 'token' } },
    timed('token', async (request, reply) => {
      const response = await engine.token(requestInfo(request, 'token'));
      // RFC 9449 section 8.2: a fresh nonce with every response, so clients renew before it expires.
      const nonce = engine.dpopNonce();
      if (nonce !== undefined) reply.header('dpop-nonce', nonce);
      return reply.headers(noStore).type('application/json').send(JSON.stringify(response));
    }),
  );
  app.post(
    PATHS.introspection,
    { config: { endpoint: 'introspection' } },
    timed('introspection', async (request, reply) => {
      const response = await engine.introspect(requestInfo(request, 'introspection'));
      return reply.headers(noStore).type('application/json').send(JSON.stringify(response));
    }),
  );
  app.post(
    PATHS.revocation,
    { config: { endpoint: 'revocation' } },
    timed('revocation', async (request, reply) => {
      await engine.revoke(requestInfo(request, 'revocation'));
      return reply.headers(noStore).code(200).send();
    }),
  );
}

/** Public documents and operations: JWKS, metadata, health, metrics; wrong methods on the OAuth endpoints. */
function registerDocuments(app: FastifyInstance, ctx: AppContext): void {
  const { config, engine, metrics } = ctx;
  app.get(PATHS.jwks, async (_request, reply) =>
    reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(JSON.stringify(ctx.keys.jwks)),
  );
  const metadataPaths = new Set<string>([PATHS.metadata]);
  if (config.issuer !== undefined) {
    const path = new URL(config.issuer).pathname.replace(/\/+$/, '');
    if (path !== '') metadataPaths.add(`${PATHS.metadata}${path}`);
  }
  for (const path of metadataPaths) {
    app.get(path, async (_request, reply) => reply.header('cache-control', 'public, max-age=300').type('application/json').send(JSON.stringify(engine.metadata())));
  }
  app.get(PATHS.health, async (_request, reply) => {
    const ok = engine.ready && ctx.keys.jwks.keys.length > 0;
    return reply.code(ok ? 200 : 503).header('cache-control', 'no-store').type('application/json').send(JSON.stringify({ status: ok ? 'ok' : 'starting' }));
  });
  if (config.metrics.enabled) {
    app.get(config.metrics.path, async (_request, reply) => reply.header('cache-control', 'no-store').type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  // Wrong methods on the OAuth endpoints.
  for (const path of [PATHS.token, PATHS.introspection, PATHS.revocation]) {
    app.route({
      method: ['GET', 'PUT', 'DELETE', 'PATCH'],
      url: path,
      handler: async (_request, reply) =>
        sendError(reply.header('allow', 'POST'), new OAuthError('invalid_request', 'Use POST', { reason: 'method', statusCode: 405 })),
    });
  }
}

export function registerRoutes(app: FastifyInstance, ctx: AppContext, listener: Listener): void {
  registerOAuthEndpoints(app, ctx, listener);
  registerDocuments(app, ctx);
}
