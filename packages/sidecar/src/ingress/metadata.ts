/**
 * RFC 9728 protected-resource metadata at `/.well-known/oauth-protected-resource` (and paths
 * below it), served without a token: the resource, `bearer_methods_supported`, the certificate-
 * and session-bound flags of the draft, and the authorization servers. GET and HEAD only.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { describeEndpoint, type Endpoint } from '../config.js';
import type { SidecarError } from '../shared/errors.js';
import { sendError, sendJson, type AnyResponse } from '../shared/respond.js';
import { ingressError } from './errors.js';

export const METADATA_PATH = '/.well-known/oauth-protected-resource';

/** Whether `path` (without the query) is the metadata document or below it. */
export function isMetadataPath(path: string): boolean {
  return path === METADATA_PATH || path.startsWith(`${METADATA_PATH}/`);
}

export interface MetadataOptions {
  /** `resource` (default: `https://` + the authority the client used). */
  resource: string | undefined;
  authorizationServers: readonly string[];
  /** The listener, for `resource` when the request names no authority. */
  listen: Endpoint;
}

/** The metadata document for a request that reached the ingress at `authority`. */
export function metadataDocument(options: MetadataOptions, authority: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    resource: options.resource ?? `https://${authority}`,
    bearer_methods_supported: ['header'],
    tls_client_certificate_bound_access_tokens: true,
    tls_session_bound_access_tokens_required: true,
  };
  if (options.authorizationServers.length > 0) body.authorization_servers = [...options.authorizationServers];
  return body;
}

/** The authority the client addressed (`:authority` or `Host`), else the listener's. */
function requestAuthority(options: MetadataOptions, req: IncomingMessage | Http2ServerRequest): string {
  return (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? describeEndpoint(options.listen);
}

/**
 * The RFC 9728 section 5.1 `resource_metadata` challenge parameter for a refusal: where this
 * ingress serves its metadata, at the authority the client used (the client reached it there).
 */
export function resourceMetadataParam(options: MetadataOptions, req: IncomingMessage | Http2ServerRequest): [string, string] {
  return ['resource_metadata', `https://${requestAuthority(options, req)}${METADATA_PATH}`];
}

/**
 * Answer a metadata request: 200 with the document (cacheable for 5 minutes), or 405 for methods
 * other than GET and HEAD. A request body is never read: HTTP/1.1 closes the connection instead.
 * Returns the error answered, if any (for the failure count).
 */
export function serveMetadata(options: MetadataOptions, req: IncomingMessage | Http2ServerRequest, res: AnyResponse): SidecarError | undefined {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const error = ingressError('ERR_INGRESS_METHOD_NOT_ALLOWED');
    sendError(res, error, { headers: { allow: 'GET, HEAD' }, closeUnreadBody: true });
    return error;
  }
  sendJson(res, 200, metadataDocument(options, requestAuthority(options, req)), { headers: { 'cache-control': 'max-age=300' }, closeUnreadBody: true });
  return undefined;
}
