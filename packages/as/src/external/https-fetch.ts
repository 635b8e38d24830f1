/**
 * GET over node:https with the trust anchors configured for an identity provider (`caFiles`), for
 * jose's `customFetch` and for OIDC discovery. The global fetch cannot take a CA bundle without
 * an undici dispatcher; node:https can, and certificate verification stays on. Redirects are not
 * followed (a JWKS or discovery URL that moves is a configuration matter), bodies are bounded and
 * every request has a deadline.
 */
import { request } from 'node:https';

const MAX_BODY_BYTES = 512 * 1024;

/** The IdP's HTTPS endpoint could not be read (network, TLS, status, size, deadline). */
export class IssuerFetchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IssuerFetchError';
  }
}

export interface FetchInit {
  headers?: Headers | Record<string, string>;
  signal?: AbortSignal | null;
}

export type TrustedFetch = (url: string, init?: FetchInit) => Promise<Response>;

/** A fetch trusting `ca` (PEM; the default CAs when empty), answering a Response only for 200. */
export function trustedFetch(ca: readonly string[], timeoutMs: number): TrustedFetch {
  return (url, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      if (target.protocol !== 'https:') {
        reject(new IssuerFetchError(`refusing to fetch ${target.protocol} URL`));
        return;
      }
      const signals = [AbortSignal.timeout(timeoutMs), ...(init.signal ? [init.signal] : [])];
      const headers = Object.fromEntries(new Headers(init.headers ?? { accept: 'application/json' }).entries());
      // agent: false: a fetch every few minutes needs no pooled socket kept open to the IdP.
      const req = request(target, { method: 'GET', headers, agent: false, signal: AbortSignal.any(signals), ...(ca.length > 0 ? { ca: [...ca] } : {}) }, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          res.resume();
          reject(new IssuerFetchError(`${target.href} answered HTTP ${status}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy(new IssuerFetchError(`${target.href} answered more than ${MAX_BODY_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: 200, headers: { 'content-type': res.headers['content-type'] ?? 'application/json' } })));
        res.on('error', (error) => reject(new IssuerFetchError(`${target.href}: ${error.message}`, { cause: error })));
      });
      req.on('error', (error) => reject(error instanceof IssuerFetchError ? error : new IssuerFetchError(`${target.href}: ${error.message}`, { cause: error })));
      req.end();
    });
}
