import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2Constants, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { isTetherError, InvalidTokenError, type TetherError } from '../errors.js';
import { PROOF_HEADER } from '../proof/constants.js';
import { resolveMaxHeaderBytes } from '../tls-options.js';
import { tlsConnectionContext, type ConnectionContext } from '../verifier/connection.js';
import type { SessionBoundVerifier } from '../verifier/create-verifier.js';
import type { VerifiedPrincipal } from '../verifier/principal.js';
import type { RequestInput } from '../verifier/request.js';

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

const PROOF_HEADER_LOWER = PROOF_HEADER.toLowerCase();
const AUTHORIZATION_LENGTH = 'authorization'.length;
const DPOP_LENGTH = 'dpop'.length;

/** The connection a node request arrived on: the TLS socket (HTTP/1.1) or the HTTP/2 session. */
export function connectionOf(req: NodeRequest, verifier: SessionBoundVerifier): ConnectionContext {
  const versions = verifier.options.tlsVersions;
  const session = 'stream' in req ? req.stream?.session : undefined;
  if (session !== undefined) return tlsConnectionContext(session.socket as TLSSocket, session, versions);
  const socket = req.socket as TLSSocket;
  return tlsConnectionContext(socket, socket, versions);
}

/** Translate a node `http`/`https`/`http2` request into the verifier's input. Reads headers only. */
export function requestInputOf(req: NodeRequest, verifier: SessionBoundVerifier): RequestInput {
  const authorization: string[] = [];
  const sessionBindingProof: string[] = [];
  const dpop: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const field = raw[i] as string;
    // Only names of these lengths can match: most fields are not lower-cased at all.
    if (field.length !== AUTHORIZATION_LENGTH && field.length !== PROOF_HEADER_LOWER.length && field.length !== DPOP_LENGTH) continue;
    const name = field.toLowerCase();
    if (name === 'authorization') authorization.push(raw[i + 1] as string);
    else if (name === PROOF_HEADER_LOWER) sessionBindingProof.push(raw[i + 1] as string);
    else if (name === 'dpop') dpop.push(raw[i + 1] as string);
  }
  const headers = req.headers;
  const authority = (headers[':authority'] as string | undefined) ?? headers.host ?? '';
  return {
    method: req.method ?? 'GET',
    scheme: 'https',
    authority,
    path: req.url ?? '/',
    authorization,
    sessionBindingProof,
    dpop,
    connection: connectionOf(req, verifier),
  };
}

/**
 * Verify a node request. Rejects with a `TetherError` only. `overrides.path` replaces `req.url`
 * for frameworks that rewrite it while routing (Express strips a mount path; pass `originalUrl`).
 */
export async function verifyNodeRequest(
  verifier: SessionBoundVerifier,
  req: NodeRequest,
  overrides: { path?: string } = {},
): Promise<VerifiedPrincipal> {
  let input: RequestInput;
  try {
    input = requestInputOf(req, verifier);
    if (overrides.path !== undefined) input.path = overrides.path;
  } catch (cause) {
    throw new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified', cause });
  }
  return verifier.verify(input);
}

/**
 * HTTP/1.1 only: whether `req` announced a body that has not fully arrived. An HTTP/1.1 connection
 * cannot carry the next request until that body is read, so a refusal closes the connection
 * (`Connection: close`) instead of waiting for, and draining, an unauthenticated upload. HTTP/2
 * needs nothing: ending the response resets the stream, and the connection carries on.
 */
export function hasUnreadBody(req: NodeRequest): boolean {
  if (req.httpVersionMajor !== 1 || req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The size of a request's header section as HTTP/2 counts it against `maxHeaderListSize`: name
 * plus value plus 32 octets per field line, pseudo-header fields included (RFC 9113 section 6.5.2).
 */
export function headerListSize(req: NodeRequest): number {
  const raw = req.rawHeaders;
  let size = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) size += (raw[i] as string).length + (raw[i + 1] as string).length + 32;
  return size;
}

/**
 * HTTP/2 only: reset the stream of a request whose header section is over `maxHeaderBytes` with
 * `ENHANCE_YOUR_CALM`, as Node itself does once the client has acknowledged the server's SETTINGS.
 * Before that acknowledgement Node applies no `maxHeaderListSize` at all: the first requests of a
 * connection, or every request of a client that never acknowledges, can carry header sections of
 * 100 KiB and more. Call it first thing in the request handler; it returns true when it reset the
 * stream (nothing else must run for the request then). HTTP/1.1 requests are never affected:
 * Node's parser enforces `maxHeaderSize` before a request exists.
 */
export function resetOversizedHttp2Request(req: NodeRequest, maxHeaderBytes: number): boolean {
  if (!('stream' in req) || headerListSize(req) <= maxHeaderBytes) return false;
  if (!req.stream.destroyed) req.stream.close(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
  return true;
}

/**
 * Write a refusal: status, `WWW-Authenticate`, `Cache-Control: no-store`, RFC 6750 JSON body, and
 * any further header the error carries (`DPoP-Nonce` on `use_dpop_nonce`, RFC 9449 section 9).
 * Over HTTP/1.1, a request whose body has not arrived gets `Connection: close` ({@link hasUnreadBody}).
 */
export function sendRefusal(res: NodeResponse, error: TetherError, challengeParams: ReadonlyArray<readonly [string, string]> = []): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body = JSON.stringify(error.toJSON());
  const headers: Record<string, string> = {
    ...error.headersWith(challengeParams),
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(body)),
  };
  if (hasUnreadBody(res.req)) headers.connection = 'close';
  (res as ServerResponse).writeHead(error.statusCode, headers);
  res.end(body);
}

export type SessionBoundRequestHandler<Req extends NodeRequest, Res extends NodeResponse> = (
  req: Req,
  res: Res,
  principal: VerifiedPrincipal,
) => void | Promise<void>;

export interface SessionBoundHandlerOptions {
  /**
   * HTTP/2: a request whose header section is larger than this is reset (`ENHANCE_YOUR_CALM`)
   * before anything else runs, from the first request of a connection (Node enforces the
   * `maxHeaderListSize` setting only after the client acknowledged it). Give the value passed to
   * `sessionBoundTlsOptions` (default 16384 there and here).
   */
  maxHeaderBytes?: number;
}

/**
 * Wrap a node request handler so it runs only for verified requests. Works with `https.createServer`
 * and `http2.createSecureServer` (compatibility API). Refusals are answered directly; an error
 * thrown by `handler` becomes a bare 500 without detail.
 */
export function sessionBoundHandler<Req extends NodeRequest = NodeRequest, Res extends NodeResponse = NodeResponse>(
  verifier: SessionBoundVerifier,
  handler: SessionBoundRequestHandler<Req, Res>,
  options: SessionBoundHandlerOptions = {},
): (req: Req, res: Res) => void {
  const maxHeaderBytes = resolveMaxHeaderBytes(options.maxHeaderBytes);
  return (req, res) => {
    if (resetOversizedHttp2Request(req, maxHeaderBytes)) return;
    verifyNodeRequest(verifier, req).then(
      (principal) =>
        Promise.resolve()
          .then(() => handler(req, res, principal))
          .catch(() => {
            if (!res.headersSent) (res as ServerResponse).writeHead(500);
            res.end();
          }),
      (error: unknown) => {
        sendRefusal(res, isTetherError(error) ? error : new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified' }));
      },
    );
  };
}

export { DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_HEADER_BYTES, sessionBoundTlsOptions, type SessionBoundTlsOptions, type SessionBoundServerOptions } from '../tls-options.js';
export { guardHttp2Session, HTTP2_GUARD_DEFAULTS, type Http2GuardOptions } from './http2-guard.js';
export { startOpsServer, type OpsServer, type OpsServerOptions, type Readiness } from './ops-server.js';
export { parseProxyHeaderV2, proxyProtocolListener, type ProxiedAddress, type ProxyHeader, type ProxyProtocolOptions } from './proxy-protocol.js';
