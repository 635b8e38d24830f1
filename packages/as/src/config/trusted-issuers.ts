/**
 * Resolution of `trustedIssuers`: the identity providers whose tokens may be exchanged. Checked
 * here, once, so that a request never meets a half-valid entry: https URLs only, one way to find
 * the keys, readable CA files, asymmetric algorithms only, no reserved claim names in the
 * allow-list, and requesting clients that can authenticate with mTLS.
 */
import type { ParsedConfig, ResolvedTrustedIssuer } from './schema.js';
import { EXTERNAL_ALGORITHMS, GRANT_TOKEN_EXCHANGE } from './schema.js';
import { splitPemCertificates, type Problem } from './clients.js';

/**
 * Claims the successor sets itself or whose meaning is tether's (who issued it, for whom, until
 * when, bound to what, on whose behalf) or describes an authentication event tether did not see.
 * Copying one from an IdP token would let the IdP speak for tether.
 */
export const RESERVED_CLAIMS: ReadonlySet<string> = new Set([
  'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'cnf', 'act', 'may_act', 'client_id', 'scope', 'sub_id', 'azp',
  'nonce', 'at_hash', 'c_hash', 's_hash', 'sid', 'auth_time', 'acr', 'amr', 'tmb', 'typ',
]);

const MTLS_METHODS = new Set(['tls_client_auth', 'self_signed_tls_client_auth']);

function httpsUrl(value: string, path: PropertyKey[], problem: Problem): void {
  const u = new URL(value);
  if (u.protocol !== 'https:') problem(path, 'must be an https URL');
  if (u.hash !== '') problem(path, 'must not have a fragment');
}

/** The OIDC discovery document of `issuer` (OpenID Connect Discovery 1.0 section 4). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
}

export function resolveTrustedIssuers(
  c: ParsedConfig,
  problem: Problem,
  file: (path: ReadonlyArray<PropertyKey>, name: string) => string | undefined,
  ownIssuer: string | undefined,
): ResolvedTrustedIssuer[] {
  if (c.trustedIssuers.length > 0 && !c.tokenExchange.enabled) problem(['trustedIssuers'], 'needs tokenExchange.enabled');
  const seen = new Set<string>();
  const configured = new Map(c.clients.map((cl) => [cl.client_id, cl]));
  return c.trustedIssuers.map((t, i) => {
    const at = (...p: PropertyKey[]) => ['trustedIssuers', i, ...p];
    httpsUrl(t.issuer, at('issuer'), problem);
    if (new URL(t.issuer).search !== '') problem(at('issuer'), 'must not have a query');
    if (seen.has(t.issuer)) problem(at('issuer'), `duplicate issuer '${t.issuer}'`);
    seen.add(t.issuer);
    if (ownIssuer !== undefined && t.issuer === ownIssuer) problem(at('issuer'), 'is this server’s own issuer');
    if ((t.jwksUri === undefined) === !t.discovery) problem(at(), 'exactly one of jwksUri and discovery: true is required');
    if (t.jwksUri !== undefined) httpsUrl(t.jwksUri, at('jwksUri'), problem);

    const ca: string[] = [];
    t.caFiles.forEach((name, j) => {
      const pem = file(at('caFiles', j), name);
      if (pem === undefined) return;
      try {
        if (splitPemCertificates(pem).length === 0) problem(at('caFiles', j), 'no PEM certificate found');
        else ca.push(pem);
      } catch (error) {
        problem(at('caFiles', j), `not a PEM certificate: ${(error as Error).message}`);
      }
    });

    t.algorithms.forEach((alg, j) => {
      if (alg.toLowerCase() === 'none' || /^HS/i.test(alg)) problem(at('algorithms', j), `${alg} is never accepted (only asymmetric signatures)`);
      else if (!(EXTERNAL_ALGORITHMS as readonly string[]).includes(alg)) problem(at('algorithms', j), `unsupported algorithm ${alg}; use ${EXTERNAL_ALGORITHMS.join(', ')}`);
    });
    t.claims.forEach((name, j) => {
      if (RESERVED_CLAIMS.has(name)) problem(at('claims', j), `'${name}' is reserved and cannot be carried into tether's tokens`);
    });
    t.clients.forEach((id, j) => {
      // Clients registered at run time are checked when they ask (mTLS is required then too).
      const cl = configured.get(id);
      if (cl !== undefined && !MTLS_METHODS.has(cl.token_endpoint_auth_method)) {
        problem(at('clients', j), `client '${id}' authenticates with ${cl.token_endpoint_auth_method}; exchanging external tokens needs tls_client_auth or self_signed_tls_client_auth`);
      }
      if (cl !== undefined && !cl.grant_types.includes(GRANT_TOKEN_EXCHANGE)) problem(at('clients', j), `client '${id}' does not have the token-exchange grant type`);
    });
    return {
      issuer: t.issuer,
      keys: t.jwksUri !== undefined ? { jwksUri: t.jwksUri } : { discovery: discoveryUrl(t.issuer) },
      ca,
      audiences: [...t.audiences],
      subjectTokenTypes: new Set(t.subjectTokenTypes),
      claims: [...new Set(t.claims)],
      clients: new Set(t.clients),
      algorithms: [...new Set(t.algorithms)],
      fetchTimeoutMs: t.fetchTimeoutMs,
    };
  });
}
