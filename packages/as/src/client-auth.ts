/**
 * Client authentication at the token, introspection and revocation endpoints:
 *
 * - `tls_client_auth` (RFC 8705 section 2.1): the certificate chains to a configured CA (OpenSSL
 *   verified it and the chain's anchor is in the `tls_client_auth` bundle), is current, and its
 *   subject DN (RFC 4514 comparison, see dn.ts) or the registered SAN (DNS, URI, IP, email) matches.
 * - `self_signed_tls_client_auth` (RFC 8705 section 2.2): the certificate (chain not verified) is
 *   current and its SHA-256 thumbprint equals one registered in the client's JWKS (`x5c[0]` or
 *   `x5t#S256`).
 * - `private_key_jwt` (RFC 7523, RFC 7521): a JWT signed by a key of the client's JWKS, `iss` =
 *   `sub` = client_id, `aud` naming this server (issuer, a token endpoint URL, or the endpoint
 *   being called), `exp` required and near, `jti` required and never seen before (persisted),
 *   `typ` absent, `JWT` or `client-authentication+jwt` (never an access token or a proof type).
 *
 * Every failure is the same 401 `invalid_client`; the reason goes to logs and metrics only.
 */
import { createLocalJWKSet, decodeJwt, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { decodeCompactJws, hasPayloadExtension, jwsTyp } from '@tether/core/proof';
import type { AuthMethod, ResolvedClient, ResolvedConfig } from './config.js';
import { certificateCurrent, type Peer } from './connection.js';
import { subjectMatches } from './dn.js';
import { OAuthError } from './errors.js';
import type { FormParams } from './form.js';
import { sanDnsMatches, sanEmailMatches, sanIpMatches, sanUriMatches } from './san.js';
import type { Store } from './store/contract.js';

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_ASSERTION_LENGTH = 8192;
const ASSERTION_TYPS = new Set(['jwt', 'client-authentication+jwt']);
export interface AuthenticatedClient {
  client: ResolvedClient;
  method: AuthMethod;
  /** True for tls_client_auth and self_signed_tls_client_auth. */
  mtls: boolean;
}

export interface ClientAuthContext {
  config: ResolvedConfig;
  store: Store;
  /** Records the certificate a client authenticated with (store.observeCertificate, skipping repeats). */
  observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void>;
  lookup(clientId: string): ResolvedClient | undefined;
  /** Values `aud` of a client assertion may take. */
  assertionAudiences: readonly string[];
  /** Epoch seconds. */
  now(): number;
  /** Authentication scheme realm for `WWW-Authenticate`. */
  realm: string;
}

export function invalidClient(reason: string, headers?: Record<string, string>): OAuthError {
  return new OAuthError('invalid_client', 'Client authentication failed', { reason, ...(headers === undefined ? {} : { headers }) });
}

const jwksResolvers = new WeakMap<object, JWTVerifyGetKey>();
function resolverFor(client: ResolvedClient): JWTVerifyGetKey {
  const jwks = client.jwks as object;
  let r = jwksResolvers.get(jwks);
  if (r === undefined) {
    r = createLocalJWKSet(client.jwks as never);
    jwksResolvers.set(jwks, r);
  }
  return r;
}

function certificateMatches(client: ResolvedClient, peer: Peer): boolean {
  const cert = peer.certificate;
  const m = client.matcher;
  if (cert === undefined || m === undefined) return false;
  switch (m.field) {
    case 'tls_client_auth_subject_dn':
      return subjectMatches(cert.subject, m.dn);
    case 'tls_client_auth_san_dns':
      return sanDnsMatches(cert, m.value);
    case 'tls_client_auth_san_uri':
      return sanUriMatches(cert, m.value);
    case 'tls_client_auth_san_ip':
      return sanIpMatches(cert, m.value);
    case 'tls_client_auth_san_email':
      return sanEmailMatches(cert, m.value);
  }
}

/**
 * Authenticate the client of a request. `authorization` holds every Authorization header value:
 * tether supports no HTTP authentication scheme at these endpoints, so any is refused with a
 * challenge in that scheme (RFC 6749 section 5.2).
 */
export async function authenticateClient(
  ctx: ClientAuthContext,
  params: FormParams,
  peer: Peer | undefined,
  authorization: readonly string[],
): Promise<AuthenticatedClient> {
  if (authorization.length > 0) {
    const scheme = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)/.exec(authorization[0] ?? '')?.[1] ?? 'Basic';
    throw invalidClient('unsupported_http_authentication', { 'www-authenticate': `${scheme} realm="${ctx.realm.replace(/["\\]/g, '')}"` });
  }
  if (params.has('client_secret')) throw invalidClient('client_secret_not_supported');
  const assertionType = params.get('client_assertion_type');
  const assertion = params.get('client_assertion');
  const clientIdParam = params.get('client_id');
  if (assertionType !== undefined || assertion !== undefined) {
    if (assertionType !== JWT_BEARER_ASSERTION) throw invalidClient('assertion_type');
    if (assertion === undefined) throw invalidClient('assertion_missing');
    return privateKeyJwt(ctx, assertion, clientIdParam);
  }
  if (clientIdParam === undefined) throw invalidClient('client_id_missing');
  const client = ctx.lookup(clientIdParam);
  if (client === undefined) throw invalidClient('unknown_client');
  const method = client.token_endpoint_auth_method;
  const now = ctx.now();
  switch (method) {
    case 'private_key_jwt':
      throw invalidClient('assertion_missing');
    case 'tls_client_auth': {
      if (!ctx.config.clientAuthentication.tls_client_auth.enabled) throw invalidClient('method_disabled');
      if (peer?.certificate === undefined) throw invalidClient('no_certificate');
      if (!peer.authorized) throw invalidClient('certificate_not_trusted');
      const anchor = peer.anchor;
      if (anchor === undefined || !ctx.config.clientCaCerts.some((ca) => ca.raw.equals(anchor))) throw invalidClient('certificate_wrong_anchor');
      if (!certificateCurrent(peer.certificate, now)) throw invalidClient('certificate_expired');
      if (!certificateMatches(client, peer)) throw invalidClient('certificate_mismatch');
      const until = Math.floor(Date.parse(peer.certificate.validTo) / 1000);
      await ctx.observeCertificate(client.client_id, peer.thumbprint as string, until);
      return { client, method, mtls: true };
    }
    case 'self_signed_tls_client_auth': {
      if (!ctx.config.clientAuthentication.self_signed_tls_client_auth.enabled) throw invalidClient('method_disabled');
      if (peer?.certificate === undefined) throw invalidClient('no_certificate');
      if (!client.registeredThumbprints.has(peer.thumbprint as string)) throw invalidClient('certificate_not_registered');
      if (!certificateCurrent(peer.certificate, now)) throw invalidClient('certificate_expired');
      return { client, method, mtls: true };
    }
  }
}

async function privateKeyJwt(ctx: ClientAuthContext, assertion: string, clientIdParam: string | undefined): Promise<AuthenticatedClient> {
  const settings = ctx.config.clientAuthentication.private_key_jwt;
  if (!settings.enabled) throw invalidClient('method_disabled');
  // jose's base64url decoder (atob) ignores whitespace, "=" padding and stray low bits, so without
  // this check `<assertion>==` or a respelled signature would authenticate as well.
  if (assertion.length > MAX_ASSERTION_LENGTH) throw invalidClient('assertion_malformed');
  // core's one compact-JWS decoder: canonical base64url only (jose's atob-based decoder ignores
  // whitespace, "=" padding and stray low bits, so `<assertion>==` would authenticate as well).
  const jws = decodeCompactJws(assertion);
  if (!jws.ok) throw invalidClient('assertion_malformed');
  let unverified: ReturnType<typeof decodeJwt>;
  try {
    unverified = decodeJwt(assertion);
  } catch {
    throw invalidClient('assertion_malformed');
  }
  const { header } = jws;
  // A string only: String(['JWT']) would pass for "JWT".
  if (header.typ !== undefined && !ASSERTION_TYPS.has(jwsTyp(header) ?? '')) throw invalidClient('assertion_typ');
  if (hasPayloadExtension(header)) throw invalidClient('assertion_crit');
  if (typeof header.alg !== 'string' || !(settings.algorithms as readonly string[]).includes(header.alg)) throw invalidClient('assertion_alg');
  const clientId = unverified.iss;
  if (typeof clientId !== 'string' || clientId === '') throw invalidClient('assertion_iss');
  if (clientIdParam !== undefined && clientIdParam !== clientId) throw invalidClient('client_id_mismatch');
  const client = ctx.lookup(clientId);
  if (client === undefined) throw invalidClient('unknown_client');
  if (client.token_endpoint_auth_method !== 'private_key_jwt') throw invalidClient('method_not_registered');
  if (client.jwks === undefined) throw invalidClient('no_jwks');
  const now = ctx.now();
  const skew = ctx.config.tokens.clockSkew;
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
  try {
    ({ payload } = await jwtVerify(assertion, resolverFor(client), {
      algorithms: [...settings.algorithms],
      issuer: clientId,
      subject: clientId,
      audience: [...ctx.assertionAudiences],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
      clockTolerance: skew,
      currentDate: new Date(now * 1000),
    }));
  } catch {
    throw invalidClient('assertion_invalid');
  }
  const exp = payload.exp as number;
  if (exp - now > settings.maxAssertionLifetime + skew) throw invalidClient('assertion_lifetime');
  if (payload.iat !== undefined && payload.iat > now + skew) throw invalidClient('assertion_iat_future');
  const jti = payload.jti;
  if (typeof jti !== 'string' || jti === '' || jti.length > 256) throw invalidClient('assertion_jti');
  if (!(await ctx.store.rememberOnce('client_assertion', `${clientId} ${jti}`, exp + skew))) throw invalidClient('assertion_replayed');
  return { client, method: 'private_key_jwt', mtls: false };
}
