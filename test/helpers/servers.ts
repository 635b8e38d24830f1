import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import {
  createSessionBoundVerifier,
  jwtAccessTokenValidator,
  localJwks,
  type AccessTokenValidator,
  type SessionBoundVerifier,
  type SessionBoundVerifierOptions,
} from '@tether/core';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import type { DevPki } from '@tether/pki';
import { AUDIENCE, ISSUER, type TestIssuer } from './issuer.js';

export interface RunningServer {
  url: string;
  port: number;
  verifier: SessionBoundVerifier;
  close(): Promise<void>;
}

/** Validates the test issuer's JWT access tokens (RFC 9068) against its JWKS. */
export function testTokenValidator(issuer: TestIssuer): AccessTokenValidator {
  return jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE });
}

export function testVerifier(issuer: TestIssuer, options: Partial<SessionBoundVerifierOptions> = {}): SessionBoundVerifier {
  return createSessionBoundVerifier({ tokens: testTokenValidator(issuer), ...options });
}

/** Close a server and every connection it still holds. */
export async function closeServer(server: HttpsServer | Http2SecureServer): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  if ('closeAllConnections' in server) server.closeAllConnections();
  await closed;
}

/**
 * A protected echo resource on 127.0.0.1:0 built with the node adapter: HTTP/2 (with HTTP/1.1
 * fallback) or HTTP/1.1 only. Answers 200 with the verified principal as JSON.
 */
export async function startEchoServer(
  pki: DevPki,
  verifier: SessionBoundVerifier,
  options: { protocol?: 'h2' | 'http/1.1'; allowTls12?: boolean; host?: string; rejectUnauthorized?: boolean } = {},
): Promise<RunningServer> {
  const tlsOptions = sessionBoundTlsOptions({
    cert: pki.server.cert,
    key: pki.server.key,
    ca: pki.ca.cert,
    allowTls12: options.allowTls12 === true,
    ...(options.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: options.rejectUnauthorized }),
  });
  const handler = sessionBoundHandler(verifier, (req, res, principal) => {
    const body = JSON.stringify({ principal, method: req.method, path: req.url });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  const host = options.host ?? '127.0.0.1';
  const sessions = new Set<import('node:http2').ServerHttp2Session>();
  let server: HttpsServer | Http2SecureServer;
  if ((options.protocol ?? 'h2') === 'h2') {
    const h2 = createSecureServer({ ...tlsOptions, allowHTTP1: true }, handler);
    h2.on('session', (s) => {
      sessions.add(s);
      s.on('close', () => sessions.delete(s));
    });
    server = h2;
  } else {
    server = createHttpsServer(tlsOptions, handler);
  }
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    url: `https://${hostPart}:${port}`,
    port,
    verifier,
    async close() {
      for (const s of sessions) s.destroy();
      await closeServer(server);
    },
  };
}
