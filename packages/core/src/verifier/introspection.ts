import type { RequestOptions } from 'node:https';
import { sha256Base64url } from '../encoding.js';
import { ConfigurationError, InvalidTokenError } from '../errors.js';
import type { AccessTokenClaims, AccessTokenValidator } from './access-token.js';
import { FetchJsonError, fetchJson, type FetchJsonFailure } from './fetch-json.js';
import { prepareClientAuth, type IntrospectionClientAuth, type PreparedClientAuth } from './introspection-auth.js';

export type { IntrospectionClientAuth, IntrospectionAuthMethod } from './introspection-auth.js';

/**
 * Why an introspection call failed, as reported to `onError`: the {@link FetchJsonFailure} codes
 * (`network`, `timeout`, `http_status`, `too_large`, `not_json`), `malformed` (JSON but not an
 * object) or `client_auth` (the client credentials could not be produced, e.g. signing failed).
 */
export type IntrospectionFailureReason = FetchJsonFailure | 'malformed' | 'client_auth';

/** A failed introspection call, for logs. Never carries the token or the client's credentials. */
export interface IntrospectionFailure {
  reason: IntrospectionFailureReason;
  /** Human-readable detail (e.g. `introspection endpoint answered 401 invalid_client`). */
  message: string;
  /** The HTTP status, for `http_status`. */
  status?: number;
  /** The endpoint's RFC 6749 `error` code (e.g. `invalid_client` when client authentication failed). */
  error?: string;
  /** The introspection endpoint URL. */
  endpoint: string;
}

export interface IntrospectionValidatorOptions {
  /** RFC 7662 introspection endpoint. */
  endpoint: string | URL;
  /**
   * How the validator authenticates to the endpoint: `tls_client_auth` (mutual TLS with `cert` and
   * `key`), `private_key_jwt` (RFC 7523 assertion signed with `key`) or `client_secret_basic`.
   * Default: no client authentication.
   */
  clientAuth?: IntrospectionClientAuth;
  /** Shorthand for `clientAuth: {method: 'client_secret_basic', clientId, secret}` (not with `clientAuth`). */
  clientId?: string;
  clientSecret?: string;
  /** TLS options for an https endpoint: CA bundle (and `servername`). */
  tls?: Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'servername'>;
  /** Required `iss` in the response, when the server returns one; also the default `aud` of a private_key_jwt assertion. */
  issuer?: string;
  /** Accepted `aud` values; when set, the response must name one. */
  audience?: string | string[];
  /** Longest time a positive result is cached, seconds (default 60). Never past the token's `exp`. */
  cacheTtl?: number;
  /** Most cached results (default 10000). */
  cacheMaxEntries?: number;
  /** Request timeout, ms (default 5000). */
  timeoutMs?: number;
  /** Clock in epoch seconds. */
  now?: () => number;
  /**
   * Called once for every failed introspection call (the token is refused either way, fail
   * closed), e.g. to log it at warn: a rejected client authentication shows as `http_status` 401
   * with `error: 'invalid_client'`. Exceptions thrown by the hook are ignored.
   */
  onError?: (failure: IntrospectionFailure) => void;
}

function resolveClientAuth(options: IntrospectionValidatorOptions, endpoint: URL): PreparedClientAuth | undefined {
  const basic = options.clientId !== undefined || options.clientSecret !== undefined;
  if (basic && options.clientAuth !== undefined) throw new ConfigurationError('give clientAuth or clientId/clientSecret, not both');
  if (basic && (options.clientId === undefined || options.clientSecret === undefined)) throw new ConfigurationError('clientId and clientSecret go together');
  const auth: IntrospectionClientAuth | undefined = basic
    ? { method: 'client_secret_basic', clientId: options.clientId as string, secret: options.clientSecret as string }
    : options.clientAuth;
  return auth === undefined ? undefined : prepareClientAuth(auth, endpoint, options.issuer);
}

function describeFailure(error: unknown): Omit<IntrospectionFailure, 'endpoint'> {
  if (error instanceof FetchJsonError) {
    return {
      reason: error.code,
      message: error.message,
      ...(error.status === undefined ? {} : { status: error.status }),
      ...(error.oauthError === undefined ? {} : { error: error.oauthError }),
    };
  }
  return { reason: 'network', message: error instanceof Error ? error.message : String(error) };
}

/**
 * RFC 7662 token introspection as an {@link AccessTokenValidator}. An inactive token, a response
 * that is not a JSON object, a failed call, or a mismatched `iss`/`aud` all yield `invalid_token`
 * (fail closed); failed calls are also reported to `onError`. Positive results are cached by
 * token hash for at most `cacheTtl` and never past `exp`; negative results are not cached, so a
 * revoked token is refused as soon as the cache entry expires.
 */
export function introspectionValidator(options: IntrospectionValidatorOptions): AccessTokenValidator {
  const endpoint = new URL(options.endpoint);
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') throw new ConfigurationError('introspection endpoint must be http(s)');
  const clientAuth = resolveClientAuth(options, endpoint);
  const tls = { ...options.tls, ...clientAuth?.tls };
  const audience = options.audience === undefined ? undefined : [options.audience].flat();
  const now = options.now ?? (() => Date.now() / 1000);
  const ttl = options.cacheTtl ?? 60;
  const maxEntries = options.cacheMaxEntries ?? 10_000;
  const cache = new Map<string, { claims: AccessTokenClaims; until: number }>();
  const inactive = (reason: string, cause?: unknown) =>
    new InvalidTokenError({ reason, description: 'The access token is invalid', ...(cause === undefined ? {} : { cause }) });
  const report = (failure: Omit<IntrospectionFailure, 'endpoint'>) => {
    try {
      options.onError?.({ ...failure, endpoint: endpoint.href });
    } catch {
      // A logging hook never changes the outcome.
    }
  };

  const introspect = async (token: string): Promise<unknown> => {
    let credentials = { headers: {}, params: {} } as Awaited<ReturnType<PreparedClientAuth['credentials']>>;
    try {
      if (clientAuth !== undefined) credentials = await clientAuth.credentials(now());
    } catch (cause) {
      report({ reason: 'client_auth', message: `introspection client credentials failed: ${cause instanceof Error ? cause.message : String(cause)}` });
      throw inactive('introspection_failed', cause);
    }
    try {
      return await fetchJson(endpoint, {
        method: 'POST',
        headers: { ...credentials.headers, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token', ...credentials.params }).toString(),
        ...(Object.keys(tls).length === 0 ? {} : { tls }),
        timeoutMs: options.timeoutMs ?? 5000,
        maxBytes: 256 * 1024,
        what: 'introspection',
      });
    } catch (cause) {
      report(describeFailure(cause));
      throw inactive('introspection_failed', cause);
    }
  };

  return {
    async validate(token: string): Promise<AccessTokenClaims> {
      const key = sha256Base64url(token);
      const t = now();
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (hit.until > t) return hit.claims;
        cache.delete(key);
      }
      const response = await introspect(token);
      if (typeof response !== 'object' || response === null || Array.isArray(response)) {
        report({ reason: 'malformed', message: 'introspection response is not a JSON object' });
        throw inactive('introspection_malformed');
      }
      const claims = response as AccessTokenClaims & { active?: unknown };
      if (claims.active !== true) throw inactive('inactive');
      if (claims.exp !== undefined && (typeof claims.exp !== 'number' || claims.exp <= t)) throw inactive('expired');
      if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > t + 30)) throw inactive('not_yet_valid');
      if (options.issuer !== undefined && claims.iss !== undefined && claims.iss !== options.issuer) throw inactive('issuer');
      if (audience !== undefined) {
        const aud = [claims.aud ?? []].flat();
        if (!aud.some((a) => audience.includes(a))) throw inactive('audience');
      }
      const until = Math.min(t + ttl, typeof claims.exp === 'number' ? claims.exp : Infinity);
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string);
      cache.set(key, { claims, until });
      return claims;
    },
  };
}
