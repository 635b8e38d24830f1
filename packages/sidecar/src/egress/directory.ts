/**
 * The agent's side of the egress discovery document (`/.well-known/tether-egress`): which upstream
 * each route leads to. An agent behind an egress is given upstream URLs it cannot dial itself (it
 * has no key): RFC 9728 `resource_metadata` in a challenge, an authorization server's issuer and
 * endpoints. The directory turns each into the egress URL that reaches it, and refuses the rest.
 */
import { DISCOVERY_PATH } from './discovery.js';

interface RouteEntry {
  /** Local base URL of the route at the egress (`http://127.0.0.1:PORT/NAME`). */
  local: string;
  origin: string;
  basePath: string;
}

export interface EgressDirectoryOptions {
  /** Deadline of each discovery request, ms (default 5000). */
  timeoutMs?: number;
}

/** What an agent's fetch takes (the MCP SDK's `FetchLike`). */
export type UpstreamFetch = (url: string | URL, init?: RequestInit) => Promise<Response>;

function parseRoutes(egressUrl: string, document: unknown): RouteEntry[] {
  const routes = (document as { routes?: unknown } | null)?.routes;
  if (!Array.isArray(routes)) throw new Error(`${egressUrl}${DISCOVERY_PATH}: no routes`);
  const base = egressUrl.replace(/\/+$/, '');
  return routes.flatMap((r: { path?: unknown; upstream?: unknown }) => {
    if (typeof r?.path !== 'string' || typeof r.upstream !== 'string' || !URL.canParse(r.upstream)) return [];
    const upstream = new URL(r.upstream);
    return [{ local: base + r.path, origin: upstream.origin, basePath: upstream.pathname.replace(/\/+$/, '') }];
  });
}

/** Whether `path` is `base` or below it (segment-wise). */
function isBelow(path: string, base: string): boolean {
  return base === '' || path === base || path.startsWith(`${base}/`);
}

export class EgressDirectory {
  readonly #routes: RouteEntry[];

  private constructor(routes: RouteEntry[]) {
    // Longest base path first: the most specific route wins.
    this.#routes = routes.sort((a, b) => b.basePath.length - a.basePath.length);
  }

  /** Read the discovery document of each egress listener (`http://127.0.0.1:PORT`). */
  static async load(egressUrls: readonly string[], options: EgressDirectoryOptions = {}): Promise<EgressDirectory> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const routes = await Promise.all(
      egressUrls.map(async (url) => {
        const res = await fetch(new URL(DISCOVERY_PATH, url), { signal: AbortSignal.timeout(timeoutMs) });
        if (res.status !== 200) throw new Error(`${url}${DISCOVERY_PATH}: HTTP ${res.status}`);
        return parseRoutes(url, await res.json());
      }),
    );
    return new EgressDirectory(routes.flat());
  }

  /** The egress URL that reaches `upstreamUrl`, or `undefined` when no route leads there. */
  resolve(upstreamUrl: string | URL): URL | undefined {
    if (!URL.canParse(String(upstreamUrl))) return undefined;
    const target = new URL(upstreamUrl);
    const route = this.#routes.find((r) => r.origin === target.origin && isBelow(target.pathname, r.basePath));
    if (route === undefined) return undefined;
    return new URL(route.local + target.pathname.slice(route.basePath.length) + target.search);
  }

  /**
   * A fetch for upstream URLs, sent through the egress. A URL no route leads to is refused (the
   * agent has no other way out, and must not be talked into one by a document it fetched).
   */
  readonly fetch: UpstreamFetch = (url, init) => {
    const local = this.resolve(url);
    if (local === undefined) return Promise.reject(new TypeError(`no egress route leads to ${String(url)}`));
    return fetch(local, init);
  };
}
