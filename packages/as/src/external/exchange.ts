/**
 * Token exchange of a subject token from a trusted external issuer (RFC 8693 with an IdP's
 * access or ID token for a person): T6 for external subjects first (t6.ts: a listed client, over
 * mTLS), then the token verified (verify-subject.ts), then a successor for the requester: `sub`
 * the person, `act` the requester, `sub_id` (RFC 9493 `iss_sub`) naming the IdP and the person
 * there, the allow-listed claims, scope within both the client's and the token's, never outliving
 * the token, and bound to the requester's certificate (at least `certificate`; `session` when the
 * client or policy asks).
 */
import { bindingLevel, confirmation } from '../binding.js';
import type { Peer } from '../connection.js';
import { invalidGrant, invalidRequest } from '../errors.js';
import type { TokenRequest } from '../grants/grant.js';
import type { AuthorizationEngine } from '../engine.js';
import { issueToken } from '../issuance.js';
import { decideExternalExchange } from '../t6.js';
import { grantedScopes, requestedAudiences, restrictToResources, splitScope } from '../targets.js';
import type { ActClaim, OwnTokenClaims, TokenResponse } from '../token-claims.js';
import type { TrustedIssuer } from './issuers.js';
import { verifyExternalSubject, type ExternalSubject } from './verify-subject.js';

export interface ExternalExchange {
  trusted: TrustedIssuer;
  subjectToken: string;
  subjectTokenType: string;
  requestedTokenType: string;
}

/** The scopes: within the client's (its default when none is asked) and the token's `scope` when it has one. */
function externalScopes(request: TokenRequest, subject: ExternalSubject): string[] {
  const client = request.auth.client;
  const fromToken = subject.scopes === undefined ? undefined : new Set(subject.scopes);
  const within = (s: string) => fromToken === undefined || fromToken.has(s);
  const allowed = new Set([...client.scopes].filter(within));
  const defaults = client.default_scope === undefined ? [...client.scopes] : splitScope(client.default_scope);
  return grantedScopes(request.req.params.get('scope'), allowed, defaults.filter((s) => allowed.has(s)), {
    description: 'The requested scope exceeds what the client may request or the subject_token grants',
    reason: 'scope_exceeds_external',
  });
}

export async function exchangeExternalSubject(engine: AuthorizationEngine, request: TokenRequest, x: ExternalExchange): Promise<TokenResponse> {
  const { req, auth, dpop } = request;
  const client = auth.client;
  const p = req.params;
  const peer = req.listener === 'mtls' ? req.peer : undefined;
  const decision = decideExternalExchange({ listed: x.trusted.config.clients.has(client.client_id), mtls: auth.mtls, connectionThumbprint: peer?.thumbprint });
  if (!decision.allowed) throw invalidGrant(decision.description, decision.reason);
  // The requester is the only actor; a second one (actor_token) or a binding to another key
  // (tmb) would leave the person's token usable by someone the IdP's entry does not name.
  if (p.get('actor_token') !== undefined) throw invalidRequest('actor_token is not accepted with an external subject_token', 'external_actor_token');
  if (p.get('tmb') !== undefined) throw invalidRequest('tmb is not accepted with an external subject_token', 'external_tmb');

  const subject = await verifyExternalSubject(engine, x.trusted, x.subjectToken, x.subjectTokenType);
  // A person whose IdP `sub` is a client's name here would read, to a resource checking `sub`, as
  // that workload; `sub_id` tells them apart, but not every resource reads it.
  if (engine.client(subject.sub) !== undefined || engine.recipient(subject.sub) !== undefined) {
    throw invalidGrant('The subject_token names a client of this server as its subject', 'external_sub_is_client');
  }
  const act: ActClaim = { sub: client.client_id };
  if (engine.config.tokenExchange.maxDelegationDepth < 1) throw invalidGrant('The delegation chain is too long', 'delegation_depth');

  const audiences = requestedAudiences(engine, p, client);
  const scopes = restrictToResources(engine, externalScopes(request, subject), audiences, p.get('scope') !== undefined);
  // Never a bearer successor (inherited level `certificate`): the person's token was carried by a browser.
  const level = bindingLevel(engine, client, audiences, 'certificate', 1);
  const cnf = await confirmation(engine, level, undefined, peer as Peer, client, dpop);
  return issueToken(engine, {
    grant: 'token_exchange',
    client,
    sub: subject.sub,
    audiences,
    scopes,
    cnf,
    deferred: false,
    act,
    lifetimeCap: subject.exp,
    issuedTokenType: x.requestedTokenType,
    claims: { ...subject.claims, sub_id: { format: 'iss_sub', iss: subject.iss, sub: subject.sub } },
  });
}

/**
 * What a later exchange of a successor carries on (the own-token path): its `sub_id` naming the
 * person at the IdP, and the claims the IdP's entry still allows. Undefined for tokens that did
 * not come from an external subject.
 */
export function carriedClaims(engine: AuthorizationEngine, subject: OwnTokenClaims): Record<string, unknown> | undefined {
  const subId = subject.sub_id as Record<string, unknown> | undefined;
  if (typeof subId !== 'object' || subId === null || subId.format !== 'iss_sub' || typeof subId.iss !== 'string') return undefined;
  const claims: Record<string, unknown> = { sub_id: subId };
  for (const name of engine.trustedIssuers.get(subId.iss)?.config.claims ?? []) if (subject[name] !== undefined) claims[name] = subject[name];
  return claims;
}
