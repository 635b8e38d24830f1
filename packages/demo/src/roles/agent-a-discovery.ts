/**
 * How agent A finds where to get a token for B, as the MCP authorization specification describes:
 * a first request without a token; the 401's `resource_metadata` (RFC 9728 section 5.1); the
 * protected-resource metadata (its `resource` and `authorization_servers`); the authorization
 * server's metadata (RFC 8414) and its token endpoint. A has no key, so every upstream URL is
 * reached through its egress (`EgressDirectory`); the SDK's discovery functions do the rest.
 */
import type { UpstreamFetch } from '@tether/sidecar';
import type { AgentDiscovery } from '../protocol.js';

const STEP_TIMEOUT_MS = 10_000;

export interface DiscoveredTarget extends AgentDiscovery {
  /** A fetch for upstream URLs (through the egress), with a deadline per request. */
  fetch: typeof fetch;
}

/**
 * RFC 8414 metadata, at the SDK's discovery URLs in its order. Read here rather than with the
 * SDK's `discoverAuthorizationServerMetadata`, whose schema requires `authorization_endpoint`:
 * tether's AS has none (it issues tokens by client credentials and token exchange only), and RFC
 * 8414 section 2 makes the field optional then.
 */
async function authorizationServerMetadata(issuer: string, urls: ReadonlyArray<{ url: URL }>, upstream: UpstreamFetch): Promise<{ issuer: string; token_endpoint: string }> {
  for (const { url } of urls) {
    const res = await upstream(url);
    if (res.status !== 200) {
      await res.arrayBuffer();
      continue;
    }
    const metadata = (await res.json()) as { issuer?: unknown; token_endpoint?: unknown };
    // The metadata must come from the server it names (RFC 8414 section 3.3).
    if (metadata.issuer !== issuer) throw new Error(`the AS metadata at ${url.href} names issuer ${String(metadata.issuer)}, not ${issuer}`);
    if (typeof metadata.token_endpoint !== 'string') throw new Error(`the AS metadata at ${url.href} has no token_endpoint`);
    return { issuer, token_endpoint: metadata.token_endpoint };
  }
  throw new Error(`no RFC 8414 metadata for ${issuer}`);
}

/** Discover the token endpoint and resource for `mcpUrl` (the egress URL of B's MCP endpoint). */
export async function discoverTokenEndpoint(mcpUrl: URL, egress: { mcp: string; token: string }): Promise<DiscoveredTarget> {
  const { EgressDirectory } = await import('@tether/sidecar');
  const auth = await import('@modelcontextprotocol/sdk/client/auth.js');
  const directory = await EgressDirectory.load([egress.mcp, egress.token], { timeoutMs: STEP_TIMEOUT_MS });
  const upstream: UpstreamFetch = (url, init) => directory.fetch(url, { ...init, signal: init?.signal ?? AbortSignal.timeout(STEP_TIMEOUT_MS) });

  const first = await fetch(mcpUrl, { method: 'GET', headers: { accept: 'text/event-stream' }, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  await first.arrayBuffer();
  if (first.status !== 401) throw new Error(`expected a 401 from B without a token, got ${first.status}`);
  const resourceMetadata = auth.extractWWWAuthenticateParams(first).resourceMetadataUrl;
  if (resourceMetadata === undefined) throw new Error("B's 401 names no resource_metadata (RFC 9728 section 5.1)");

  const metadata = await auth.discoverOAuthProtectedResourceMetadata(resourceMetadata, { resourceMetadataUrl: resourceMetadata }, upstream);
  const authorizationServer = metadata.authorization_servers?.[0];
  if (authorizationServer === undefined) throw new Error("B's metadata names no authorization server");
  const asMetadata = await authorizationServerMetadata(authorizationServer, auth.buildDiscoveryUrls(authorizationServer), upstream);
  return {
    resourceMetadata: resourceMetadata.href,
    resource: metadata.resource,
    authorizationServer,
    tokenEndpoint: asMetadata.token_endpoint,
    fetch: upstream as typeof fetch,
  };
}
