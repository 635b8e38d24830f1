/**
 * One client request, top to bottom: accounting (counted once, in flight, timed) → limits (header
 * section size) → metadata (no token needed) → connection rotation → verification of the token and
 * its binding → proxy to the application. HTTP/1.1 requests the parser refuses never reach the
 * handler: {@link createClientErrorHandler} answers and counts those.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Duplex } from 'node:stream';
import { InvalidTokenError, isTetherError, type SessionBoundVerifier, type VerifiedPrincipal } from '@tether/core';
import { resetOversizedHttp2Request, sendRefusal, verifyNodeRequest } from '@tether/core/node';
import type { Logger } from '../log.js';
import type { ConnectionTracker } from '../servers.js';
import type { AnyResponse } from '../shared/respond.js';
import type { ClientConnections } from './connections.js';
import { ingressError, type IngressErrorCode } from './errors.js';
import { isMetadataPath, resourceMetadataParam, serveMetadata, type MetadataOptions } from './metadata.js';
import type { IngressMetrics } from './metrics.js';
import type { IngressStats, Route } from './types.js';

type Req = IncomingMessage | Http2ServerRequest;

export interface HandlerContext {
  verifier: SessionBoundVerifier;
  metadata: MetadataOptions;
  /** HTTP/2 header sections larger than this are reset (the TLS options' `maxHeaderListSize`). */
  maxHeaderBytes: number;
  connections: ClientConnections;
  tracker: ConnectionTracker;
  metrics: IngressMetrics;
  stats: IngressStats;
  log: Logger;
  proxy(req: Req, res: AnyResponse, principal: VerifiedPrincipal, gone: () => boolean): void;
  /** Shutdown has begun. */
  draining(): boolean;
}

/** A request being handled: its metric label and whether its response has closed. */
interface Exchange {
  route: Route;
  closed: boolean;
}

/**
 * Count the request exactly once, when its response closes (however it ends), with the status sent
 * (0 when none was) and its duration; and keep it in flight on its connection until then.
 */
function account(ctx: HandlerContext, res: AnyResponse): Exchange {
  const started = performance.now();
  const exchange: Exchange = { route: 'app', closed: false };
  ctx.stats.requests++;
  ctx.tracker.request(res);
  res.once('close', () => {
    exchange.closed = true;
    ctx.metrics.request(exchange.route, res.headersSent ? res.statusCode : 0, (performance.now() - started) / 1000);
  });
  return exchange;
}

/** Verification failed: the draft's 401 (or the verifier's status) with its challenge. */
function refuse(ctx: HandlerContext, req: Req, res: AnyResponse, error: unknown): void {
  const refusal = isTetherError(error) ? error : new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified' });
  ctx.log.info({ reason: refusal.reason, status: refusal.statusCode, error: refusal.error }, 'request refused');
  // The body is not read: HTTP/1.1 gets `Connection: close` (sendRefusal), and HTTP/2 a
  // RST_STREAM NO_ERROR once the response is sent (Node skips that, and keeps reading the
  // upload, if the request was resumed).
  // RFC 9728 section 5.1: the challenge names the metadata, where a client finds the AS (MCP discovery).
  sendRefusal(res, refusal, [resourceMetadataParam(ctx.metadata, req)]);
}

/** The server's request handler. */
export function createRequestHandler(ctx: HandlerContext): (req: Req, res: AnyResponse) => void {
  return (req, res) => {
    const exchange = account(ctx, res);
    const session = ctx.connections.begin(req, res);
    // Limits. Node applies the HTTP/2 header-list limit only once the client acknowledged our SETTINGS.
    if (resetOversizedHttp2Request(req, ctx.maxHeaderBytes)) {
      exchange.route = 'refused';
      ctx.metrics.fail(ingressError('ERR_INGRESS_HEADER_TOO_LARGE').reason);
      return;
    }
    // Metadata: no token needed.
    if (isMetadataPath((req.url ?? '/').split('?')[0] as string)) {
      exchange.route = 'metadata';
      const refused = serveMetadata(ctx.metadata, req, res);
      if (refused !== undefined) ctx.metrics.fail(refused.reason);
      return;
    }
    // Rotation, and `Connection: close` on HTTP/1.1 while draining.
    ctx.connections.rotate(req, res, session);
    if (ctx.draining() && !('stream' in req)) res.setHeader('connection', 'close');
    // Verify, then proxy.
    verifyNodeRequest(ctx.verifier, req).then(
      (principal) => ctx.proxy(req, res, principal, () => exchange.closed),
      (error: unknown) => {
        exchange.route = 'refused';
        refuse(ctx, req, res, error);
      },
    );
  };
}

/** The code of an HTTP/1.1 parser or timeout error, or undefined for socket errors (no request). */
function clientErrorCode(code: string | undefined): IngressErrorCode | undefined {
  if (code === 'HPE_HEADER_OVERFLOW') return 'ERR_INGRESS_HEADER_TOO_LARGE';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'ERR_INGRESS_REQUEST_TIMEOUT';
  if (code?.startsWith('HPE_') === true) return 'ERR_INGRESS_BAD_REQUEST';
  return undefined;
}

const REASON_PHRASES: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * The server's `clientError` handler (HTTP/1.1 only): what Node does by default (a bare 431, 408
 * or 400 when nothing was sent on the connection yet, then the socket is destroyed), plus the
 * request and failure counts. Socket errors that are no request (a reset) are not counted.
 */
export function createClientErrorHandler(ctx: Pick<HandlerContext, 'metrics' | 'stats' | 'log'>): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    const code = clientErrorCode(error.code);
    if (code !== undefined) {
      const refusal = ingressError(code);
      ctx.stats.requests++;
      ctx.metrics.fail(refusal.reason);
      ctx.metrics.request('refused', refusal.statusCode, 0);
      ctx.log.debug({ code: refusal.code, err: error.code }, 'HTTP/1.1 request refused by the parser');
      if (socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) {
        socket.write(`HTTP/1.1 ${refusal.statusCode} ${REASON_PHRASES[refusal.statusCode] ?? ''}\r\nConnection: close\r\n\r\n`);
      }
    }
    socket.destroy();
  };
}
