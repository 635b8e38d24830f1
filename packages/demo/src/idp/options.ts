/** What the demo identity provider is configured with (see startIdentityProvider). */

export interface IdentityProviderUser {
  /** The subject (`sub`) and the login name typed on the login page. */
  sub: string;
  password: string;
  email?: string;
}

export interface IdentityProviderClient {
  client_id: string;
  /**
   * Loopback redirect URIs of a native app (RFC 8252 section 7.3), e.g. `http://127.0.0.1/callback`:
   * the port is not compared, so the app may listen on any port.
   */
  redirect_uris: string[];
}

export interface IdentityProviderOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** The HTTPS server certificate and key (PEM), e.g. the dev PKI's `server` (valid for 127.0.0.1). */
  tls: { cert: string | Buffer; key: string | Buffer };
  users: readonly IdentityProviderUser[];
  /** Public clients (no secret): authorization code with PKCE S256 only. */
  clients: readonly IdentityProviderClient[];
  /**
   * The one resource (RFC 8707) access tokens are issued for, as RFC 9068 JWTs with this `aud`:
   * the tether AS's identifier. A request for any other resource is refused (`invalid_target`).
   */
  resource: string;
  /** The scopes a client may ask for at that resource (default `['tether']`). */
  resourceScopes?: readonly string[];
  /**
   * The user's claims copied into every access token, for the AS to map (default `['email']`; the
   * claims are `email` and `email_verified` when the user has an email). `sub` is always there.
   */
  accessTokenClaims?: readonly string[];
  /** Access token lifetime in seconds (default 300). */
  accessTokenTtl?: number;
  /** ID token lifetime in seconds (default 300). */
  idTokenTtl?: number;
}

export const DEFAULT_RESOURCE_SCOPES: readonly string[] = ['tether'];
export const DEFAULT_ACCESS_TOKEN_CLAIMS: readonly string[] = ['email'];

/** The deadline of one request to the identity provider (reading a form body included). */
export const IDP_REQUEST_TIMEOUT_MS = 10_000;
