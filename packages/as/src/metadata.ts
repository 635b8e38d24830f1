/** Authorization server metadata (RFC 8414; RFC 8705 sections 3.3 and 5; draft section 3.2; RFC 9449 section 5.1). */
import { DPOP_ALGORITHMS } from '@tether/core/dpop';
import { GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE } from './config.js';
import type { AuthorizationEngine } from './engine.js';
import { PATHS } from './request.js';

export function metadata(engine: AuthorizationEngine): Record<string, unknown> {
  const { urls, config } = engine;
  const base = urls.plainBase ?? urls.mtlsBase;
  const ca = config.clientAuthentication;
  const methods: string[] = [];
  if (ca.tls_client_auth.enabled && config.clientCaCerts.length > 0) methods.push('tls_client_auth');
  if (ca.self_signed_tls_client_auth.enabled) methods.push('self_signed_tls_client_auth');
  if (ca.private_key_jwt.enabled) methods.push('private_key_jwt');
  const signing = (endpoint: string) => (ca.private_key_jwt.enabled ? { [`${endpoint}_endpoint_auth_signing_alg_values_supported`]: [...ca.private_key_jwt.algorithms] } : {});
  const grants = [GRANT_CLIENT_CREDENTIALS, ...(config.tokenExchange.enabled ? [GRANT_TOKEN_EXCHANGE] : [])];
  const scopes = [...new Set(engine.clients.flatMap((c) => [...c.scopes]))].sort();
  const doc: Record<string, unknown> = {
    issuer: urls.issuer,
    token_endpoint: `${base}${PATHS.token}`,
    jwks_uri: `${base}${PATHS.jwks}`,
    introspection_endpoint: `${base}${PATHS.introspection}`,
    revocation_endpoint: `${base}${PATHS.revocation}`,
    response_types_supported: [],
    grant_types_supported: grants,
    token_endpoint_auth_methods_supported: methods,
    ...signing('token'),
    introspection_endpoint_auth_methods_supported: methods,
    ...signing('introspection'),
    revocation_endpoint_auth_methods_supported: methods,
    ...signing('revocation'),
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    tls_client_certificate_bound_access_tokens: true,
    tls_session_bound_access_tokens_supported: true,
    dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
  };
  if (urls.plainBase !== undefined) {
    doc.mtls_endpoint_aliases = {
      token_endpoint: `${urls.mtlsBase}${PATHS.token}`,
      introspection_endpoint: `${urls.mtlsBase}${PATHS.introspection}`,
      revocation_endpoint: `${urls.mtlsBase}${PATHS.revocation}`,
    };
  }
  return doc;
}
