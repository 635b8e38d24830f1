/**
 * Pure request policy of the egress (no sockets): which route a request goes to and with which
 * path, which bearer token it carries, and whether that token may go there. Each refusal is a
 * {@link SidecarError} from the egress error table.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { rawValues } from '../headers.js';
import { egressError } from './errors.js';

/** What routing needs of a route. */
export interface Routable {
  name: string;
  basePath: string;
}

/** Routes by lower-case name. */
export type RouteTable<R extends Routable> = ReadonlyMap<string, R>;

/** Build a {@link RouteTable} (names are matched case-insensitively). */
export function routeTable<R extends Routable>(routes: Iterable<R>): Map<string, R> {
  const table = new Map<string, R>();
  for (const r of routes) table.set(r.name.toLowerCase(), r);
  return table;
}

/** The host name the agent addressed (`:authority` or `Host`), lower case, without port or IPv6 brackets. */
export function requestHostname(headers: IncomingHttpHeaders): string {
  const authority = ((headers[':authority'] as string | undefined) ?? headers.host ?? '').toLowerCase();
  if (!authority.includes(':') && !authority.includes('[') && !authority.includes(']')) return authority; // nothing to strip
  return authority.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
}

/** `.` / `..` segments (also percent-encoded) could climb out of a route's base path at the upstream. */
export function hasDotSegment(url: string): boolean {
  if (!url.includes('.') && !url.includes('%')) return false;
  const path = url.split('?')[0] as string;
  return /(^|\/)(\.|%2e){1,2}(\/|$)/i.test(path);
}

/**
 * The route and upstream path of a request: by host name (`Host: NAME`, path sent as is), else by
 * first path segment (`/NAME/rest` -> `/rest`); the route's base path is prepended. Throws
 * ERR_EGRESS_DOT_SEGMENT or ERR_EGRESS_NO_ROUTE.
 */
export function resolveRoute<R extends Routable>(routes: RouteTable<R>, rawUrl: string | undefined, headers: IncomingHttpHeaders): { route: R; path: string } {
  const url = rawUrl ?? '/';
  if (hasDotSegment(url)) throw egressError('ERR_EGRESS_DOT_SEGMENT');
  const byHost = routes.get(requestHostname(headers));
  if (byHost !== undefined) return { route: byHost, path: byHost.basePath + (url.startsWith('/') ? url : `/${url}`) };
  const m = /^\/([^/?#]+)(.*)$/.exec(url);
  const byPath = m === null ? undefined : routes.get((m[1] as string).toLowerCase());
  if (byPath === undefined) throw egressError('ERR_EGRESS_NO_ROUTE');
  let rest = m?.[2] ?? '';
  if (rest === '' || rest.startsWith('?')) rest = `/${rest}`;
  return { route: byPath, path: byPath.basePath + rest };
}

/** A request for the egress's own document `path`: the path matches and no route claims the host name. */
export function isLocalPath(routes: RouteTable<Routable>, rawUrl: string | undefined, headers: IncomingHttpHeaders, path: string): boolean {
  const url = rawUrl ?? '';
  if (!url.startsWith(path)) return false;
  return url.split('?')[0] === path && !routes.has(requestHostname(headers));
}

export interface Credentials {
  /** The bearer token, when `Authorization` is `Bearer <token>`. */
  token: string | undefined;
  /** The `Authorization` value as received (forwarded unchanged; non-Bearer schemes get no proof). */
  authorization: string | undefined;
}

/** The agent's credentials. Throws ERR_EGRESS_DUPLICATE_AUTHORIZATION or ERR_EGRESS_MALFORMED_BEARER. */
export function bearerToken(rawHeaders: readonly string[]): Credentials {
  const values = rawValues(rawHeaders, 'authorization');
  if (values.length > 1) throw egressError('ERR_EGRESS_DUPLICATE_AUTHORIZATION');
  const authorization = values[0];
  if (authorization === undefined) return { token: undefined, authorization: undefined };
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
  if (m === null) {
    if (/^Bearer\b/i.test(authorization)) throw egressError('ERR_EGRESS_MALFORMED_BEARER');
    return { token: undefined, authorization };
  }
  return { token: m[1] as string, authorization };
}

/** The `aud` of a JWT, decoded WITHOUT verification (routing policy only); undefined when not a JWT. */
export function unverifiedAudience(token: string): string[] | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as { aud?: unknown };
    if (typeof payload.aud === 'string') return [payload.aud];
    if (Array.isArray(payload.aud) && payload.aud.every((a) => typeof a === 'string')) return payload.aud as string[];
    return [];
  } catch {
    return undefined;
  }
}

/** How many tokens' audiences {@link cachedAudience} remembers. */
const AUDIENCE_CACHE_ENTRIES = 256;
/** Token -> its unverified `aud` (null: not a JWT), oldest first. */
const audienceCache = new Map<string, readonly string[] | null>();

/**
 * {@link unverifiedAudience}, remembered for the last {@link AUDIENCE_CACHE_ENTRIES} tokens (an
 * agent sends the same token many times). The key is the whole token, so a token that differs in
 * any character is decoded anew.
 */
function cachedAudience(token: string): readonly string[] | undefined {
  const hit = audienceCache.get(token);
  if (hit !== undefined) return hit ?? undefined;
  const aud = unverifiedAudience(token);
  if (audienceCache.size >= AUDIENCE_CACHE_ENTRIES) audienceCache.delete(audienceCache.keys().next().value as string);
  audienceCache.set(token, aud === undefined ? null : Object.freeze(aud));
  return aud;
}

/**
 * The audience policy: under `audience` a token goes only to a route one of whose audiences its
 * `aud` names. Throws ERR_EGRESS_OPAQUE_TOKEN or ERR_EGRESS_TOKEN_NOT_ALLOWED.
 */
export function checkAudience(policy: 'audience' | 'none', audiences: readonly string[], token: string | undefined): void {
  if (token === undefined || policy === 'none') return;
  const aud = cachedAudience(token);
  if (aud === undefined) throw egressError('ERR_EGRESS_OPAQUE_TOKEN');
  if (!aud.some((a) => audiences.includes(a))) throw egressError('ERR_EGRESS_TOKEN_NOT_ALLOWED');
}
