import { readFileSync } from 'node:fs';
import { createLocalJWKSet, errors as joseErrors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { ConfigurationError } from '../errors.js';
import { fetchJson } from './fetch-json.js';

function assertJwks(value: unknown, where: string): JSONWebKeySet {
  if (typeof value !== 'object' || value === null || !Array.isArray((value as { keys?: unknown }).keys)) {
    throw new ConfigurationError(`${where} is not a JWK Set (an object with a "keys" array)`);
  }
  const keys = (value as { keys: unknown[] }).keys;
  for (const k of keys) {
    if (typeof k !== 'object' || k === null) throw new ConfigurationError(`${where} contains a key that is not an object`);
    if ('d' in k || 'k' in k) throw new ConfigurationError(`${where} contains private or symmetric key material`);
  }
  return value as JSONWebKeySet;
}

/** Key resolver over a fixed JWK Set. Rejects sets holding private or symmetric keys. */
export function localJwks(jwks: unknown): JWTVerifyGetKey {
  return createLocalJWKSet(assertJwks(jwks, 'the JWKS'));
}

/** Key resolver over a JWK Set read once from a file. Throws `ConfigurationError` on a bad file. */
export function jwksFromFile(path: string): JWTVerifyGetKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigurationError(`cannot read JWKS file ${path}`, { cause });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new ConfigurationError(`JWKS file ${path} is not JSON`, { cause });
  }
  return localJwks(parsed);
}

export interface RemoteJwksOptions {
  /** Extra CA certificates (PEM) trusted for an https JWKS URL. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Request timeout in ms (default 5000). */
  timeoutMs?: number;
  /** Least time between two fetches in ms, which bounds fetches caused by unknown `kid`s (default 30000). */
  cooldownMs?: number;
  /** Refetch known keys after this many ms (default 600000). Failures keep the last good set. */
  maxAgeMs?: number;
  /** Largest JWKS document accepted, bytes (default 512 KiB). */
  maxBytes?: number;
  /** Clock in ms (default `Date.now`). */
  now?: () => number;
}

export interface RemoteJwksStats {
  fetches: number;
  failures: number;
  keys: number;
  lastError: string | undefined;
}

export type RemoteJwksResolver = JWTVerifyGetKey & {
  /** Fetch now (single-flight). Resolves false when the fetch failed and the last good set was kept. */
  reload(): Promise<boolean>;
  readonly stats: RemoteJwksStats;
};

/**
 * Key resolver over a JWKS URL. Keys are cached; an unknown `kid` triggers one refetch, shared by
 * concurrent callers (single-flight) and at most once per cooldown, so a flood of random `kid`s
 * costs one fetch per cooldown. When the endpoint fails, is slow or returns garbage, the last good
 * keys stay in use; before any good fetch, verification fails closed.
 */
export function remoteJwks(url: string | URL, options: RemoteJwksOptions = {}): RemoteJwksResolver {
  const target = new URL(url);
  if (target.protocol !== 'https:' && target.protocol !== 'http:') {
    throw new ConfigurationError('JWKS URL must be http(s)');
  }
  const now = options.now ?? Date.now;
  const cooldownMs = options.cooldownMs ?? 30_000;
  const maxAgeMs = options.maxAgeMs ?? 600_000;
  let local: JWTVerifyGetKey | undefined;
  let fetchedAt = -Infinity;
  let lastAttempt = -Infinity;
  let pending: Promise<boolean> | undefined;
  const stats: RemoteJwksStats = { fetches: 0, failures: 0, keys: 0, lastError: undefined };

  function reload(): Promise<boolean> {
    pending ??= (async () => {
      lastAttempt = now();
      stats.fetches++;
      try {
        const document = await fetchJson(target, {
          method: 'GET',
          headers: { accept: 'application/jwk-set+json, application/json' },
          ...(options.ca === undefined ? {} : { tls: { ca: options.ca } }),
          timeoutMs: options.timeoutMs ?? 5000,
          maxBytes: options.maxBytes ?? 512 * 1024,
          what: 'JWKS',
        });
        const jwks = assertJwks(document, 'the JWKS response');
        local = createLocalJWKSet(jwks);
        stats.keys = jwks.keys.length;
        fetchedAt = now();
        stats.lastError = undefined;
        return true;
      } catch (error) {
        stats.failures++;
        stats.lastError = error instanceof Error ? error.message : String(error);
        return false;
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  }

  const coolingDown = (): boolean => now() - lastAttempt < cooldownMs;

  const resolver = (async (header, token) => {
    // With keys in hand, a refetch in flight is not waited for: the last good keys answer meanwhile.
    if (pending !== undefined && local === undefined) await pending;
    else if ((local === undefined || now() - fetchedAt > maxAgeMs) && !coolingDown()) await reload();
    const first = local;
    if (first === undefined) throw new joseErrors.JWKSNoMatchingKey();
    try {
      return await first(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      if (pending !== undefined) await pending;
      else if (coolingDown()) throw error;
      else await reload();
      const current = local;
      if (current === undefined || current === first) throw error;
      return current(header, token);
    }
  }) as RemoteJwksResolver;
  Object.defineProperty(resolver, 'reload', { value: reload });
  Object.defineProperty(resolver, 'stats', { get: () => ({ ...stats }) });
  return resolver;
}
