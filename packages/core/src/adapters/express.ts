/**
 * Express 5 adapter. Translation only: the request goes through `verifyNodeRequest` (the node
 * adapter's `requestInputOf` plus the core verifier) and a refusal is written by `sendRefusal`.
 *
 * Express runs on `node:http`/`node:https` (HTTP/1.1). It has no HTTP/2 support: its request and
 * response objects extend `http.IncomingMessage`/`http.ServerResponse`, not the `node:http2`
 * compatibility API. Serve Express with `https.createServer(sessionBoundTlsOptions(...), app)`;
 * for HTTP/2 use the node adapter (`@tether/core/node`) or the Fastify plugin.
 *
 * ```ts
 * const app = express();
 * app.use('/api', sessionBoundMiddleware(verifier));
 * app.get('/api/me', (req, res) => res.json(principalOf(req)));
 * https.createServer(sessionBoundTlsOptions({ cert, key, ca }), app).listen(8443);
 * ```
 */
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { InvalidTokenError, isTetherError, type TetherError } from '../errors.js';
import type { SessionBoundVerifier } from '../verifier/create-verifier.js';
import type { VerifiedPrincipal } from '../verifier/principal.js';
import { sendRefusal, verifyNodeRequest } from './node.js';

declare global {
  // Express's documented extension point for request properties (`Express.Request`).
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified principal, set by `sessionBoundMiddleware` before the next handler runs. */
      tether?: VerifiedPrincipal;
    }
  }
}

export interface SessionBoundMiddlewareOptions {
  /**
   * Pass a refusal to `next(err)` instead of answering it (default false). The error is a
   * `TetherError`: `statusCode`, `headers` (with `WWW-Authenticate`) and `toJSON()` are the
   * response to send. Install `sessionBoundErrorHandler()` or an equivalent: Express's final
   * handler would send an HTML page (with the stack trace outside production) instead of the
   * RFC 6750 JSON body.
   */
  passErrors?: boolean;
}

function refusalOf(error: unknown): TetherError {
  return isTetherError(error) ? error : new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified', cause: error });
}

/**
 * Express middleware that runs draft section 3.3 steps a to i on every request it sees. On success
 * the principal is on `req.tether` (read it with {@link principalOf}); on failure the request is
 * answered with the status, `WWW-Authenticate`, `Cache-Control: no-store` and an RFC 6750 JSON
 * body, or handed to `next(err)` with `passErrors`.
 *
 * The request path used for `htu` is `req.originalUrl`, so mounting the middleware under a path
 * (`app.use('/api', ...)`, which strips `/api` from `req.url`) does not change what is verified.
 */
export function sessionBoundMiddleware(verifier: SessionBoundVerifier, options: SessionBoundMiddlewareOptions = {}): RequestHandler {
  const passErrors = options.passErrors === true;
  return (req: Request, res: Response, next) => {
    verifyNodeRequest(verifier, req, { path: req.originalUrl }).then(
      (principal) => {
        req.tether = principal;
        next();
      },
      (error: unknown) => {
        const refusal = refusalOf(error);
        if (passErrors) next(refusal);
        else sendRefusal(res, refusal);
      },
    );
  };
}

/**
 * Express error handler that answers a `TetherError` (from `passErrors`) with its challenge and
 * RFC 6750 JSON body and passes every other error on.
 */
export function sessionBoundErrorHandler(): ErrorRequestHandler {
  return (error: unknown, _req, res, next) => {
    if (isTetherError(error)) sendRefusal(res, error);
    else next(error);
  };
}

/** The principal `sessionBoundMiddleware` verified for `req`. Throws if the middleware did not run. */
export function principalOf(req: Request): VerifiedPrincipal {
  const principal = req.tether;
  if (principal === undefined) throw new Error('no verified principal: sessionBoundMiddleware did not run for this request');
  return principal;
}

export { sessionBoundTlsOptions, type SessionBoundTlsOptions, type SessionBoundServerOptions } from '../tls-options.js';
