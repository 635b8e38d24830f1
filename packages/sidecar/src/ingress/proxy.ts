/**
 * Forwarding a verified request to the application over plain HTTP/1.1 (loopback or a Unix
 * socket): identity headers replaced by `X-Tether-Principal`, the application's response relayed
 * as it streams, the wait for its response headers bounded by `appTimeoutMs`, and the request to
 * the application cancelled when the client goes away before the response is complete.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type RequestOptions, type ServerResponse } from 'node:http';
import { constants as h2, type Http2ServerRequest } from 'node:http2';
import type { VerifiedPrincipal } from '@tether/core';
import type { Endpoint } from '../config.js';
import { endToEndHeaders, IDENTITY_HEADERS, IDENTITY_PREFIXES } from '../headers.js';
import type { Logger } from '../log.js';
import { pipeBody } from '../servers.js';
import { abortResponse, sendError, type AnyResponse } from '../shared/respond.js';
import { ingressError } from './errors.js';
import { encodePrincipal, PRINCIPAL_HEADER } from './principal.js';

type Req = IncomingMessage | Http2ServerRequest;

export interface ProxyOptions {
  app: Endpoint;
  basePath: string;
  /** 0 = no limit. */
  appTimeoutMs: number;
  passAuthorization: boolean;
}

export interface ProxyContext {
  options: ProxyOptions;
  agent: HttpAgent;
  log: Logger;
  /** Count a failure by reason. */
  fail(reason: string): void;
  /** A response from the application is being relayed. */
  proxied(): void;
  /** Shutdown has begun: HTTP/1.1 responses say `Connection: close`. */
  draining(): boolean;
}

/** One request being forwarded. */
interface Forward {
  req: Req;
  res: AnyResponse;
  upstream: ClientRequest;
  /** The client's response has closed. */
  gone(): boolean;
  timedOut: boolean;
  /** The application's response ended completely. */
  complete: boolean;
}

/** The headers sent to the application: end-to-end ones without client identity, plus the principal and `X-Forwarded-*`. */
export function upstreamHeaders(req: Req, principal: VerifiedPrincipal, drop: ReadonlySet<string>): OutgoingHttpHeaders {
  const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
  const headers: OutgoingHttpHeaders = endToEndHeaders(req.headers, { drop, dropPrefixes: IDENTITY_PREFIXES });
  headers.host = authority;
  headers[PRINCIPAL_HEADER] = encodePrincipal(principal);
  headers['x-forwarded-proto'] = 'https';
  headers['x-forwarded-host'] = authority;
  if (req.socket.remoteAddress !== undefined) headers['x-forwarded-for'] = req.socket.remoteAddress;
  return headers;
}

/**
 * The response timeout: bounds the wait for the application's response headers, not the body. On
 * expiry the request to the application is aborted and the client gets 504. Returns the timer's cancel.
 */
function startAppTimeout(ctx: ProxyContext, f: Forward): () => void {
  const ms = ctx.options.appTimeoutMs;
  if (ms === 0) return () => undefined;
  const timer = setTimeout(() => {
    if (f.gone() || f.res.headersSent) return;
    f.timedOut = true;
    const error = ingressError('ERR_INGRESS_UPSTREAM_TIMEOUT');
    ctx.fail(error.reason);
    // No method, path or headers: the path or query may carry secrets.
    ctx.log.warn({ timeoutMs: ms, code: error.code }, 'application response timed out');
    f.upstream.destroy(); // the application sees its request aborted
    sendError(f.res, error, { closeUnreadBody: true });
    // An upload still coming in is not read any more: HTTP/1.1 closes the connection (above),
    // HTTP/2 ends the stream with RST_STREAM NO_ERROR once the answer is out (RFC 9113 8.1; Node
    // sends the reset only after the stream's writable side has finished).
    if ('stream' in f.req && !f.req.complete) {
      f.req.unpipe();
      if (!f.req.stream.destroyed) f.req.stream.close(h2.NGHTTP2_NO_ERROR);
    }
  }, ms);
  return () => clearTimeout(timer);
}

/** Relay the application's response: status, end-to-end headers and the body as it streams. */
function relay(ctx: ProxyContext, f: Forward, appRes: IncomingMessage): void {
  if (f.timedOut) {
    appRes.destroy();
    return;
  }
  ctx.proxied();
  appRes.on('error', () => {
    // The application's response was cut off (connection closed mid-body).
    ctx.fail(ingressError('ERR_INGRESS_UPSTREAM_RESET').reason);
    abortResponse(f.res);
  });
  appRes.once('end', () => (f.complete = true));
  const out = endToEndHeaders(appRes.headers);
  if (ctx.draining() && !('stream' in f.req)) out.connection = 'close';
  (f.res as ServerResponse).writeHead(appRes.statusCode ?? 502, out);
  if ('flushHeaders' in f.res) f.res.flushHeaders();
  appRes.pipe(f.res as NodeJS.WritableStream);
}

/** The proxy: `(req, res, principal, gone)` forwards one verified request. */
export function createProxy(ctx: ProxyContext): (req: Req, res: AnyResponse, principal: VerifiedPrincipal, gone: () => boolean) => void {
  const drop = new Set(IDENTITY_HEADERS);
  if (!ctx.options.passAuthorization) drop.add('authorization');
  const { app, basePath } = ctx.options;
  const agent = ctx.agent;
  const requestOptions =
    app.kind === 'unix'
      ? (method: string | undefined, path: string, headers: OutgoingHttpHeaders): RequestOptions => ({ socketPath: app.path, method, path, headers, agent })
      : (method: string | undefined, path: string, headers: OutgoingHttpHeaders): RequestOptions => ({ host: app.host, port: app.port, method, path, headers, agent });
  return (req, res, principal, gone) => {
    const upstream = httpRequest(requestOptions(req.method, basePath + (req.url ?? '/'), upstreamHeaders(req, principal, drop)));
    const f: Forward = { req, res, upstream, gone, timedOut: false, complete: false };
    const stopTimer = startAppTimeout(ctx, f);
    upstream.on('error', (cause) => {
      stopTimer();
      if (gone() || f.timedOut) return; // we cancelled it (the client left, or the timeout)
      const error = ingressError('ERR_INGRESS_UPSTREAM_UNAVAILABLE', { cause });
      ctx.fail(error.reason);
      ctx.log.warn({ err: cause.message, code: error.code }, 'application request failed');
      sendError(res, error, { closeUnreadBody: true }); // aborts the response instead if it has started
    });
    upstream.once('response', (appRes: IncomingMessage) => {
      stopTimer();
      relay(ctx, f, appRes);
    });
    // The client went away before the application's response was complete: cancel it. (Not
    // 'finish' / writableFinished: Http2ServerResponse reports those on a reset stream too.)
    res.once('close', () => {
      stopTimer();
      if (!f.complete) upstream.destroy();
    });
    if (gone()) upstream.destroy();
    pipeBody(req, upstream, () => upstream.destroy());
  };
}
