/**
 * Fastify 5 plugin. Translation only: an `onRequest` hook sends `request.raw` through
 * `verifyNodeRequest` (the node adapter's `requestInputOf` plus the core verifier). Works with
 * `fastify({ https })` (HTTP/1.1) and `fastify({ http2: true, https })` (HTTP/2; the request's
 * connection is its HTTP/2 session).
 *
 * ```ts
 * const app = fastify({ http2: true, https: sessionBoundTlsOptions({ cert, key, ca }) });
 * await app.register(sessionBoundPlugin, { verifier });
 * app.get('/me', async (request) => principalOf(request));
 * ```
 *
 * The plugin is not encapsulated (`Symbol.for('skip-override')`): its hook applies to the context
 * it is registered in and that context's children. Register it inside an encapsulated plugin to
 * protect only that plugin's routes.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest, RawServerBase } from 'fastify';
import { InvalidTokenError, isTetherError, type TetherError } from '../errors.js';
import type { SessionBoundVerifier } from '../verifier/create-verifier.js';
import type { VerifiedPrincipal } from '../verifier/principal.js';
import { resolveMaxHeaderBytes } from '../tls-options.js';
import { hasUnreadBody, resetOversizedHttp2Request, verifyNodeRequest } from './node.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified principal, set by the session-binding `onRequest` hook; null before it runs. */
    tether: VerifiedPrincipal | null;
  }
}

export interface SessionBoundPluginOptions {
  verifier: SessionBoundVerifier;
  /**
   * Throw the refusal (a `TetherError`) from the hook so the context's error handler answers it
   * (default false: the hook answers). The error carries `statusCode` and `headers`, which
   * Fastify's default error handler honours, but that handler's body is
   * `{statusCode, code, error: "Unauthorized", message}`, not RFC 6750 JSON: call
   * {@link replyWithRefusal} from your `setErrorHandler`.
   */
  passErrors?: boolean;
  /**
   * HTTP/2: a request whose header section is larger than this is reset (`ENHANCE_YOUR_CALM`) in
   * the hook, before verification, from the first request of a connection (Node enforces the
   * `maxHeaderListSize` setting only after the client acknowledged it). Give the value passed to
   * `sessionBoundTlsOptions` (default 16384 there and here).
   */
  maxHeaderBytes?: number;
}

const DECORATOR = 'tether';

function refusalOf(error: unknown): TetherError {
  return isTetherError(error) ? error : new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified', cause: error });
}

/** The part of `FastifyReply` a refusal needs; any Fastify reply (HTTP/1.1 or HTTP/2) fits. */
export interface RefusalReply {
  code(statusCode: number): unknown;
  headers(values: Record<string, string>): unknown;
  type(contentType: string): unknown;
  send(payload: string): unknown;
}

/**
 * Answer `reply` with a refusal: status, `WWW-Authenticate`, `Cache-Control: no-store` and the
 * RFC 6750 JSON body `{error, error_description}`. Nothing else from the error is sent.
 */
export function replyWithRefusal<Reply extends RefusalReply>(reply: Reply, error: TetherError): Reply {
  reply.code(error.statusCode);
  reply.headers({ ...error.headers, 'cache-control': 'no-store' });
  reply.type('application/json; charset=utf-8');
  reply.send(JSON.stringify(error.toJSON()));
  return reply;
}

async function plugin(fastify: FastifyInstance<RawServerBase>, options: SessionBoundPluginOptions): Promise<void> {
  const { verifier } = options;
  if (verifier === undefined || typeof verifier.verify !== 'function') {
    throw new TypeError('sessionBoundPlugin needs { verifier } (createSessionBoundVerifier)');
  }
  const passErrors = options.passErrors === true;
  const maxHeaderBytes = resolveMaxHeaderBytes(options.maxHeaderBytes);
  if (!fastify.hasRequestDecorator(DECORATOR)) fastify.decorateRequest(DECORATOR, null);
  fastify.addHook('onRequest', async (request, reply) => {
    if (resetOversizedHttp2Request(request.raw, maxHeaderBytes)) {
      reply.hijack(); // the stream is reset: nothing further runs for this request
      return;
    }
    try {
      // originalUrl: the target the client sent (and signed as htu), before any `rewriteUrl`.
      request.tether = await verifyNodeRequest(verifier, request.raw, { path: request.originalUrl });
    } catch (error) {
      const refusal = refusalOf(error);
      // Do not wait for, or drain, the body of a refused HTTP/1.1 request (see hasUnreadBody). Set
      // before throwing too: Fastify keeps reply headers into the error handler.
      if (hasUnreadBody(request.raw)) reply.header('connection', 'close');
      if (passErrors) throw refusal;
      return replyWithRefusal(reply, refusal);
    }
  });
}

// Escape encapsulation so the hook covers the routes of the context that registers the plugin.
Object.assign(plugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: '@tether/core/fastify' });

/**
 * Fastify plugin: verifies every request of the registering context in `onRequest` (draft section
 * 3.3 steps a to i) and puts the principal on `request.tether`. Register with `{ verifier }`.
 */
export const sessionBoundPlugin: FastifyPluginAsync<SessionBoundPluginOptions, RawServerBase> = plugin;

/** The principal the plugin verified for `request`. Throws if the hook did not run. */
export function principalOf(request: Pick<FastifyRequest, 'tether'>): VerifiedPrincipal {
  const principal = request.tether;
  if (principal === null || principal === undefined) throw new Error('no verified principal: sessionBoundPlugin did not run for this request');
  return principal;
}

export { sessionBoundTlsOptions, type SessionBoundTlsOptions, type SessionBoundServerOptions } from '../tls-options.js';
