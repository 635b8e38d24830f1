import type { RequestOptions } from 'node:https';
import { sha256 } from '../encoding.js';
import { ConfigurationError, InvalidTokenError } from '../errors.js';
import type { AccessTokenClaims, AccessTokenValidator } from './access-token.js';
import { fetchJson } from './fetch-json.js';

export interface IntrospectionValidatorOptions {
  /** RFC 7662 introspection endpoint. */
  endpoint: string | URL;
  /** HTTP Basic client authentication (client_secret_basic). */
  clientId?: string;
  clientSecret?: string;
  /** TLS options for an https endpoint: CA bundle and, for mTLS client authentication, cert and key. */
  tls?: Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'servername'>;
  /** Required `iss` in the response, when the server returns one. */
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
}

/**
 * RFC 7662 token introspection as an {@link AccessTokenValidator}. An inactive token, a response
 * that is not a JSON object, a failed call, or a mismatched `iss`/`aud` all yield `invalid_token`
 * (fail closed). Positive results are cached by token hash for at most `cacheTtl` and never past
 * `exp`; negative results are not cached, so a revoked token is refused as soon as the cache entry
 * expires.
 */
export function introspectionValidator(options: IntrospectionValidatorOptions): AccessTokenValidator {
  const endpoint = new URL(options.endpoint);
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') throw new ConfigurationError('introspection endpoint must be http(s)');
  if ((options.clientId === undefined) !== (options.clientSecret === undefined)) {
    throw new ConfigurationError('clientId and clientSecret go together');
  }
  const audience = options.audience === undefined ? undefined : [options.audience].flat();
  const now = options.now ?? (() => Date.now() / 1000);
  const ttl = options.cacheTtl ?? 60;
  const maxEntries = options.cacheMaxEntries ?? 10_000;
  const cache = new Map<string, { claims: AccessTokenClaims; until: number }>();
  const headers: Record<string, string> = {};
  if (options.clientId !== undefined && options.clientSecret !== undefined) {
    // RFC 6749 section 2.3.1 and Appendix B: application/x-www-form-urlencoded (space is "+").
    const enc = (s: string) => new URLSearchParams([['', s]]).toString().slice(1);
    headers.authorization = `Basic ${Buffer.from(`${enc(options.clientId)}:${enc(options.clientSecret)}`).toString('base64')}`;
  }
  const inactive = (reason: string, cause?: unknown) =>
    new InvalidTokenError({ reason, description: 'The access token is invalid', ...(cause === undefined ? {} : { cause }) });

  return {
    async validate(token: string): Promise<AccessTokenClaims> {
      const key = sha256(token).toString('base64url');
      const t = now();
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (hit.until > t) return hit.claims;
        cache.delete(key);
      }
      let response: unknown;
      try {
        response = await fetchJson(endpoint, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
          ...(options.tls === undefined ? {} : { tls: options.tls }),
          timeoutMs: options.timeoutMs ?? 5000,
          maxBytes: 256 * 1024,
          what: 'introspection',
        });
      } catch (cause) {
        throw inactive('introspection_failed', cause);
      }
      if (typeof response !== 'object' || response === null || Array.isArray(response)) throw inactive('introspection_malformed');
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
