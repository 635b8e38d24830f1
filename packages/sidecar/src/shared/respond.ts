/** Writing JSON answers and cutting off responses, the same way on HTTP/1.1 and HTTP/2 (compat API). */
import type { ServerResponse } from 'node:http';
import { constants as h2, type Http2ServerResponse } from 'node:http2';
import { hasUnreadBody } from '@tether/core/node';
import type { SidecarError } from './errors.js';

export type AnyResponse = ServerResponse | Http2ServerResponse;

export interface JsonOptions {
  /** Extra response fields. */
  headers?: Record<string, string>;
  /**
   * An HTTP/1.1 request body nobody will read (a refusal, metadata): answer with
   * `Connection: close` rather than drain the upload. Default false.
   */
  closeUnreadBody?: boolean;
}

/** Send `body` as a complete JSON response (Content-Length set). */
export function sendJson(res: AnyResponse, status: number, body: unknown, options: JsonOptions = {}): void {
  const text = JSON.stringify(body);
  const close: Record<string, string> = options.closeUnreadBody === true && hasUnreadBody(res.req as Parameters<typeof hasUnreadBody>[0]) ? { connection: 'close' } : {};
  (res as ServerResponse).writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...options.headers,
    ...close,
  });
  res.end(text);
}

/**
 * Answer with `{"error", "error_description"}` and the error's status (`Cache-Control: no-store`).
 * When the response has already started, it is aborted instead (see {@link abortResponse}).
 */
export function sendError(res: AnyResponse, error: Pick<SidecarError, 'statusCode' | 'error' | 'message'>, options: JsonOptions = {}): void {
  if (res.headersSent) {
    abortResponse(res);
    return;
  }
  sendJson(res, error.statusCode, { error: error.error, error_description: error.message }, { ...options, headers: { 'cache-control': 'no-store', ...options.headers } });
}

/**
 * Abort a response that has already started, so the client sees it cut off and never complete: an
 * HTTP/2 stream is reset with INTERNAL_ERROR (`destroy()` without an error would send RST_STREAM
 * NO_ERROR, which reads as a clean end of the body), an HTTP/1.1 connection is closed.
 */
export function abortResponse(res: AnyResponse): void {
  if ('stream' in res) {
    if (!res.stream.destroyed) res.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
  } else res.destroy();
}
