/**
 * HTTP error answers of the authorization server: anything thrown while handling a request, and
 * what Node's HTTP/1.1 parser refuses before a request exists, as RFC 6749 JSON error bodies.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply } from 'fastify';
import { OAuthError, isOAuthError } from './errors.js';
import type { AsMetrics } from './metrics.js';

/** Map anything thrown while handling a request to an OAuth error response. */
export function toOAuthError(error: unknown): OAuthError {
  if (isOAuthError(error)) return error;
  const e = error as { code?: unknown; statusCode?: unknown; message?: unknown };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OAuthError('invalid_request', 'The request body is too large', { reason: 'body_too_large', statusCode: 413 });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new OAuthError('invalid_request', 'The request body must be application/x-www-form-urlencoded', { reason: 'content_type' });
    default:
      break;
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new OAuthError('invalid_request', 'The request is malformed', { reason: typeof e.code === 'string' ? e.code.toLowerCase() : 'malformed', statusCode: e.statusCode === 413 ? 413 : 400 });
  }
  return new OAuthError('server_error', 'The server could not handle the request', { reason: 'internal', cause: error });
}

/**
 * Fastify `clientErrorHandler`: HTTP/1.1 requests Node's parser refuses before a request exists (a
 * header section over the limit: 431; a request timeout: 408; anything malformed: 400) get the
 * same RFC 6749 JSON error body as every other refusal, instead of Fastify's own, and the
 * connection is closed.
 */
export function clientErrorHandler(metrics: AsMetrics) {
  return (error: NodeJS.ErrnoException, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, reason, description] =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'header_too_large', 'The request header section is too large']
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'timeout', 'The request took too long']
          : [400, 'malformed', 'The request is malformed'];
    metrics.failures.inc({ endpoint: 'other', error: 'invalid_request', reason });
    const body = JSON.stringify(new OAuthError('invalid_request', description, { reason }).toJSON());
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncache-control: no-store\r\npragma: no-cache\r\n` +
          `connection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroySoon();
  };
}

export function sendError(reply: FastifyReply, error: OAuthError): FastifyReply {
  return reply
    .code(error.statusCode)
    .headers({ ...error.headers, 'cache-control': 'no-store', pragma: 'no-cache' })
    .type('application/json')
    .send(JSON.stringify(error.toJSON()));
}
