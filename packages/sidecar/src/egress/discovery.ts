/**
 * `GET /.well-known/tether-egress`: what an agent needs for deferred key binding (`tmb`), answered
 * by the egress itself unless the Host names a route.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Confirmation } from '@tether/core';
import { sendJson, type AnyResponse } from '../shared/respond.js';
import { isLocalPath, type RouteTable } from './routing.js';

/** Local document for deferred key binding (`tmb`); answered by the egress itself. */
export const DISCOVERY_PATH = '/.well-known/tether-egress';

export interface DiscoveryRoute {
  name: string;
  /** `https://host[:port]` of the upstream. */
  origin: URL;
  basePath: string;
  audiences: readonly string[];
  egressToken: boolean;
}

/**
 * The document: the `cnf` of the egress certificate, the `tmb` parameter value and the routes.
 * Each route names its upstream (`https://host[:port][/base]`) and its local path (`/NAME`), so an
 * agent can turn an upstream URL it was given (RFC 9728 `resource_metadata`, an AS's endpoints)
 * into the URL to ask the egress for (`@tether/sidecar` `EgressDirectory`).
 */
export function discoveryDocument(cnf: Confirmation, routes: Iterable<DiscoveryRoute>): unknown {
  return {
    cnf,
    tmb: JSON.stringify(cnf),
    routes: [...routes].map((r) => ({ name: r.name, path: `/${r.name}`, upstream: r.origin.origin + r.basePath, audience: r.audiences, egress_token: r.egressToken })),
  };
}

export function isDiscovery(routes: RouteTable<DiscoveryRoute>, url: string | undefined, headers: IncomingHttpHeaders): boolean {
  return isLocalPath(routes, url, headers, DISCOVERY_PATH);
}

export function sendDiscovery(res: AnyResponse, document: unknown): void {
  sendJson(res, 200, document, { headers: { 'cache-control': 'no-store' } });
}
