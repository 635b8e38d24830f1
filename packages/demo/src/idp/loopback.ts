/**
 * The redirect listener of a native app (RFC 8252 section 7.3): HTTP on 127.0.0.1, any free port,
 * one path; it takes the first authorization response and closes with the app.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AuthorizationResponse {
  /** The query parameters of the redirect (code, state, iss, or error). */
  params: URLSearchParams;
}

export interface LoopbackRedirect {
  /** `http://127.0.0.1:PORT/PATH`, to send as redirect_uri. */
  redirectUri: string;
  /** The first request to the path; rejects after the deadline. */
  response: Promise<AuthorizationResponse>;
  close(): Promise<void>;
}

/** Listens on `redirectUri`'s host and path (default `http://127.0.0.1/callback`) on a free port. */
export async function startLoopbackRedirect(options: { redirectUri?: string; timeoutMs: number }): Promise<LoopbackRedirect> {
  const base = new URL(options.redirectUri ?? 'http://127.0.0.1/callback');
  if (base.protocol !== 'http:' || base.hostname !== '127.0.0.1') throw new TypeError('a loopback redirect URI is http://127.0.0.1[:port]/path');
  let settle: { resolve(r: AuthorizationResponse): void; reject(e: Error): void } | undefined;
  const response = new Promise<AuthorizationResponse>((resolve, reject) => (settle = { resolve, reject }));
  response.catch(() => {});
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== base.pathname) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const body = url.searchParams.has('code') ? 'Signed in; you may close this window.\n' : 'Sign-in did not complete.\n';
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end(body);
    settle?.resolve({ params: url.searchParams });
  });
  server.requestTimeout = options.timeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(base.port || 0), '127.0.0.1', () => resolve());
  });
  const timer = setTimeout(() => settle?.reject(new Error('no authorization response at the redirect URI before the deadline')), options.timeoutMs);
  const { port } = server.address() as AddressInfo;
  return {
    redirectUri: `http://127.0.0.1:${port}${base.pathname}`,
    response,
    close: () =>
      new Promise<void>((resolve) => {
        clearTimeout(timer);
        settle?.reject(new Error('the redirect listener was closed'));
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
