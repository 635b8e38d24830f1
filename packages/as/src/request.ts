/** A request as the engine sees it (the HTTP layer, server.ts, builds it), and the server's URLs. */
import type { Peer } from './connection.js';
import type { FormParams } from './form.js';

export interface EngineUrls {
  issuer: string;
  /** Base URL of the mutual-TLS listener. */
  mtlsBase: string;
  /** Base URL of the plain-TLS listener, when configured. */
  plainBase: string | undefined;
}

export const PATHS = {
  token: '/token',
  introspection: '/introspect',
  revocation: '/revoke',
  jwks: '/jwks',
  metadata: '/.well-known/oauth-authorization-server',
  health: '/health',
} as const;

export type Endpoint = 'token' | 'introspection' | 'revocation';

export interface RequestInfo {
  listener: 'mtls' | 'plain';
  peer: Peer | undefined;
  params: FormParams;
  /** Every Authorization header value. */
  authorization: readonly string[];
  /** Every Session-Binding-Proof header value. */
  proofs: readonly string[];
  /** Every DPoP header value (RFC 9449); absent means none was sent. */
  dpop?: readonly string[];
  /** Full URL of the endpoint called (for client assertion `aud` and proof `htu`). */
  endpointUrl: string;
}
