/**
 * The token exchange grant (RFC 8693): a successor of a subject token this server issued, for the
 * requester, never outliving the subject token, never broader in scope, never less bound (NOTES
 * decision 5), with the actor chain in `act`. Who may exchange is T6 (t6.ts); the actor token,
 * when sent, must represent the requester and be held by it (no splicing).
 */
import { decodeJwt } from 'jose';
import { bindingRequirement } from '@tether/core';
import { bindingLevel, confirmation, maxLevel, parseTmb } from '../binding.js';
import type { BindingLevel, ResolvedClient } from '../config.js';
import type { Peer } from '../connection.js';
import type { DpopKey } from '../dpop-request.js';
import type { AuthorizationEngine } from '../engine.js';
import { invalidGrant, invalidRequest } from '../errors.js';
import { carriedClaims, exchangeExternalSubject } from '../external/exchange.js';
import type { TrustedIssuer } from '../external/issuers.js';
import { verifyHolderProof } from '../holder-proof.js';
import { issueToken } from '../issuance.js';
import { decideExchange } from '../t6.js';
import { grantedScopes, requestedAudiences, restrictToResources, splitScope } from '../targets.js';
import { TOKEN_TYPES, TOKEN_TYPE_ACCESS_TOKEN, actDepth, audiencesOf, type ActClaim, type OwnTokenClaims } from '../token-claims.js';
import type { Grant } from './grant.js';

/** The client is named in the token's `aud`, in its `may_act`, or trusted by policy for its client. */
function isIntendedRecipient(engine: AuthorizationEngine, subject: OwnTokenClaims, client: ResolvedClient): boolean {
  if (audiencesOf(subject).some((a) => client.recipientIds.has(a))) return true;
  const mayAct = subject.may_act;
  if (typeof mayAct === 'object' && mayAct !== null && typeof mayAct.sub === 'string' && client.recipientIds.has(mayAct.sub)) {
    if (mayAct.iss === undefined || mayAct.iss === engine.urls.issuer) return true;
  }
  const allowed = client.token_exchange.subject_clients;
  return typeof subject.client_id === 'string' && (allowed.includes('*') ? subject.client_id !== client.client_id : allowed.includes(subject.client_id));
}

function tokenType(value: string | undefined, name: string): void {
  if (value !== undefined && !TOKEN_TYPES.has(value)) throw invalidRequest(`${name} is not supported`, name);
}

/**
 * The actor token, when sent: issued here, current, representing the requester (`sub` is one of
 * its identifiers) and held by it. Resolves the binding level it passes on.
 */
async function checkActor(engine: AuthorizationEngine, token: string, client: ResolvedClient, peer: Peer | undefined, dpop: DpopKey | undefined): Promise<BindingLevel> {
  const result = await engine.validateOwnToken(token);
  if (!result.ok) throw invalidGrant('The actor_token is not valid', `actor_${result.reason}`);
  const actor = result.claims;
  const binding = bindingRequirement(actor.cnf);
  if (binding.kind === 'invalid') throw invalidGrant('The actor_token is not valid', 'actor_cnf');
  if (!client.recipientIds.has(actor.sub)) throw invalidGrant('The actor_token does not represent the client', 'actor_not_requester');
  const held =
    binding.kind === 'dpop'
      ? dpop !== undefined && dpop.jkt === binding.jkt
      : binding.kind === 'session' || binding.kind === 'certificate'
        ? peer?.thumbprint !== undefined && peer.thumbprint === binding.thumbprint
        : actor.client_id === client.client_id;
  if (!held) throw invalidGrant('The actor_token is not held by the client', 'actor_not_held');
  return binding.kind === 'dpop' ? 'none' : binding.kind;
}

/**
 * The actor chain: the requester becomes the current actor, the subject token's chain (or its
 * client, when it had none) the prior one. A holder exchanging its own token adds nobody.
 */
function actorChain(subject: OwnTokenClaims, client: ResolvedClient): ActClaim | undefined {
  if (subject.client_id === client.client_id) return subject.act;
  const prior = subject.act ?? (typeof subject.client_id === 'string' ? { sub: subject.client_id } : undefined);
  return prior === undefined ? { sub: client.client_id } : { sub: client.client_id, act: prior };
}

/**
 * The trusted external issuer a subject token names, by its unverified `iss` (verification is by
 * that issuer's keys). Undefined for this server's own tokens, for tokens without a readable
 * `iss` (the own-token checks refuse those), and when no external issuer is configured; an `iss`
 * that is neither this server nor a trusted issuer is refused here.
 */
function externalIssuer(engine: AuthorizationEngine, token: string): TrustedIssuer | undefined {
  if (engine.trustedIssuers.size === 0) return undefined;
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    throw invalidGrant('The subject_token is not valid', 'subject_malformed');
  }
  if (typeof iss !== 'string') throw invalidGrant('The subject_token is not valid', 'subject_malformed');
  if (iss === engine.urls.issuer) return undefined;
  const trusted = engine.trustedIssuers.get(iss);
  if (trusted === undefined) throw invalidGrant('The subject_token is not valid', 'subject_issuer_untrusted');
  return trusted;
}

export const tokenExchange: Grant = {
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'scope', 'audience', 'resource', 'tmb'],
  enabled: (engine) => engine.config.tokenExchange.enabled,
  async handle(engine, { req, auth, dpop }) {
    const p = req.params;
    const client = auth.client;
    const subjectToken = p.require('subject_token');
    const subjectType = p.require('subject_token_type');
    const requestedType = p.get('requested_token_type') ?? TOKEN_TYPE_ACCESS_TOKEN;
    tokenType(requestedType, 'requested_token_type');
    const trusted = externalIssuer(engine, subjectToken);
    if (trusted !== undefined) return exchangeExternalSubject(engine, { req, auth, dpop }, { trusted, subjectToken, subjectTokenType: subjectType, requestedTokenType: requestedType });
    tokenType(subjectType, 'subject_token_type');
    const actorToken = p.get('actor_token');
    const actorType = p.get('actor_token_type');
    if ((actorToken === undefined) !== (actorType === undefined)) throw invalidRequest('actor_token and actor_token_type go together', 'actor_token_type');
    tokenType(actorType, 'actor_token_type');
    const tmb = parseTmb(p.get('tmb'));

    // The subject token: issued here, current, not revoked, with a binding tether understands.
    const subjectResult = await engine.validateOwnToken(subjectToken);
    if (!subjectResult.ok) throw invalidGrant('The subject_token is not valid', `subject_${subjectResult.reason}`);
    const subject = subjectResult.claims;
    const subjectBinding = bindingRequirement(subject.cnf);
    if (subjectBinding.kind === 'invalid') throw invalidGrant('The subject_token is not valid', 'subject_cnf');
    const peer = req.listener === 'mtls' ? req.peer : undefined;

    const decision = decideExchange(subjectBinding, {
      connectionThumbprint: peer?.thumbprint,
      dpopJkt: dpop?.jkt,
      mtls: auth.mtls,
      intendedRecipient: isIntendedRecipient(engine, subject, client),
      ownsToken: subject.client_id === client.client_id,
    });
    if (!decision.allowed) throw invalidGrant(decision.description, decision.reason);
    if (decision.role === 'holder' && decision.mustProveSession) await verifyHolderProof(engine, req, peer as Peer, subjectToken, subject.exp);

    let inherited: BindingLevel = subjectBinding.kind === 'dpop' ? 'none' : subjectBinding.kind;
    if (actorToken !== undefined) inherited = maxLevel(inherited, await checkActor(engine, actorToken, client, peer, dpop));
    const act = actorChain(subject, client);
    const depth = actDepth(act);
    if (depth > engine.config.tokenExchange.maxDelegationDepth) throw invalidGrant('The delegation chain is too long', 'delegation_depth');

    const audiences = requestedAudiences(engine, p, client);
    const subjectScopes = new Set(splitScope(subject.scope));
    const requested = p.get('scope');
    let scopes = grantedScopes(requested, subjectScopes, [...subjectScopes], { description: 'The requested scope exceeds the subject_token scope', reason: 'scope_exceeds_subject' });
    scopes = restrictToResources(engine, scopes, audiences, requested !== undefined);
    const cnf = await confirmation(engine, bindingLevel(engine, client, audiences, inherited, depth), tmb, peer, client, dpop);
    return issueToken(engine, {
      grant: 'token_exchange',
      client,
      sub: subject.sub,
      audiences,
      scopes,
      cnf,
      deferred: tmb !== undefined,
      act,
      lifetimeCap: subject.exp,
      issuedTokenType: requestedType,
      parentJti: subject.jti,
      // A person from an IdP stays named as such along the chain.
      claims: carriedClaims(engine, subject),
    });
  },
};
