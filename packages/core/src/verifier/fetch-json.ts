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

/**
 * One HTTP(S) exchange that must answer 200 with JSON, for the verifier's own outbound calls
 * (JWKS, introspection). Rejects on any other status, oversize, non-JSON, or the deadline.
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
      else reject(error);
    };
    // Destroy without an error argument: once the response is parsed the socket has no error
    // listener, and an error emitted on it would be an uncaught exception.
    const abort = (error: Error) => {
      settle(error);
      req.destroy();
    };
    // `timeout` above only fires on an idle socket; the deadline also bounds a body that trickles.
    const deadline = setTimeout(() => abort(new Error(`${what} request timed out`)), timeoutMs);
    req.on('timeout', () => abort(new Error(`${what} request timed out`)));
    req.on('error', settle);
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        settle(new Error(`${what} endpoint answered ${String(res.statusCode)}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) abort(new Error(`${what} response too large`));
        else chunks.push(chunk);
      });
      res.on('error', settle);
      res.on('end', () => {
        try {
          settle(undefined, JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (cause) {
          settle(new Error(`${what} response is not JSON`, { cause }));
        }
      });
    });
    req.end(options.body);
  });
}
