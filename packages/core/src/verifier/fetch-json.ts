import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';

export interface FetchJsonOptions {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  /** TLS options for an https URL (CA bundle, client certificate). */
  tls?: Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'servername'>;
  /** Deadline for the whole exchange, ms: it also bounds a body that trickles in. */
  timeoutMs: number;
  maxBytes: number;
  /** Names the peer in error messages ("JWKS", "introspection"). */
  what: string;
}

/** Why an outbound call failed: `network` (connect, TLS, reset), `timeout`, `http_status` (not 200), `too_large`, `not_json`. */
export type FetchJsonFailure = 'network' | 'timeout' | 'http_status' | 'too_large' | 'not_json';

/** A failed {@link fetchJson} exchange; `code` is stable, the message is for logs only. */
export class FetchJsonError extends Error {
  readonly code: FetchJsonFailure;
  /** The HTTP status, for `http_status`. */
  readonly status: number | undefined;
  /** The RFC 6749 section 5.2 `error` code of a non-200 JSON answer (e.g. `invalid_client`), when it has one. */
  readonly oauthError: string | undefined;
  constructor(code: FetchJsonFailure, message: string, details: { status?: number; oauthError?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'FetchJsonError';
    this.code = code;
    this.status = details.status;
    this.oauthError = details.oauthError;
  }
}

/** Bytes of a non-200 body read to find its `error` code. */
const ERROR_BODY_BYTES = 4096;

/** The `error` member of an RFC 6749 error body, if it is a plain error code (never echoed otherwise). */
function oauthErrorOf(body: Buffer): string | undefined {
  try {
    const error = (JSON.parse(body.toString('utf8')) as { error?: unknown } | null)?.error;
    return typeof error === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(error) ? error : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One HTTP(S) exchange that must answer 200 with JSON, for the verifier's own outbound calls
 * (JWKS, introspection). Rejects with a {@link FetchJsonError} on any other status, oversize,
 * non-JSON, a network failure or the deadline.
 */
export function fetchJson(url: URL, options: FetchJsonOptions): Promise<unknown> {
  const { what, timeoutMs, maxBytes } = options;
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, {
      method: options.method,
      headers: options.body === undefined ? options.headers : { ...options.headers, 'content-length': String(Buffer.byteLength(options.body)) },
      timeout: timeoutMs,
      ...(url.protocol === 'https:' ? (options.tls ?? {}) : {}),
    });
    const settle = (error: Error | undefined, value?: unknown) => {
      clearTimeout(deadline);
      if (error === undefined) resolve(value);
      else reject(error instanceof FetchJsonError ? error : new FetchJsonError('network', `${what} request failed: ${error.message}`, { cause: error }));
    };
    // Destroy without an error argument: once the response is parsed the socket has no error
    // listener, and an error emitted on it would be an uncaught exception.
    const abort = (error: Error) => {
      settle(error);
      req.destroy();
    };
    const timedOut = () => abort(new FetchJsonError('timeout', `${what} request timed out`));
    // `timeout` above only fires on an idle socket; the deadline also bounds a body that trickles.
    const deadline = setTimeout(timedOut, timeoutMs);
    req.on('timeout', timedOut);
    req.on('error', settle);
    req.on('response', (res) => {
      const ok = res.statusCode === 200;
      const limit = ok ? maxBytes : ERROR_BODY_BYTES;
      const chunks: Buffer[] = [];
      let size = 0;
      const failStatus = () => {
        const oauthError = oauthErrorOf(Buffer.concat(chunks));
        const status = res.statusCode ?? 0;
        settle(new FetchJsonError('http_status', `${what} endpoint answered ${String(status)}${oauthError === undefined ? '' : ` ${oauthError}`}`, { status, ...(oauthError === undefined ? {} : { oauthError }) }));
      };
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= limit) chunks.push(chunk);
        else if (ok) abort(new FetchJsonError('too_large', `${what} response too large`));
        else {
          // Enough of an error body: the status decides, the rest is not read.
          failStatus();
          req.destroy();
        }
      });
      res.on('error', settle);
      res.on('end', () => {
        if (!ok) {
          failStatus();
          return;
        }
        try {
          settle(undefined, JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (cause) {
          settle(new FetchJsonError('not_json', `${what} response is not JSON`, { cause }));
        }
      });
    });
    req.end(options.body);
  });
}
