/**
 * Issuing an access token (RFC 9068): lifetime (never beyond the subject token), the signing key's
 * recorded lifetime raised first, exchange lineage recorded before the token exists (so a
 * revocation of its subject reaches it), signature, metrics and the audit log line.
 */
import { randomUUID } from 'node:crypto';
import type { Confirmation } from '@tether/core';
import type { ResolvedClient } from './config.js';
import type { AuthorizationEngine } from './engine.js';
import { invalidGrant } from './errors.js';
import { signAccessToken } from './jwt.js';
import { actDepth, type ActClaim, type TokenResponse } from './token-claims.js';

export interface IssueSpec {
  grant: 'client_credentials' | 'token_exchange';
  client: ResolvedClient;
  sub: string;
  audiences: string[];
  scopes: string[];
  cnf: Confirmation | undefined;
  deferred: boolean;
  act: ActClaim | undefined;
  /** The new token never outlives this (epoch seconds). */
  lifetimeCap: number | undefined;
  issuedTokenType: string | undefined;
  /** The subject token of an exchange: revoking it revokes this one. */
  parentJti?: string;
  /** Further claims (an external subject's `sub_id` and allow-listed claims); never override the ones set here. */
  claims?: Record<string, unknown>;
}

export async function issueToken(engine: AuthorizationEngine, spec: IssueSpec): Promise<TokenResponse> {
  const now = engine.now();
  let lifetime = spec.client.access_token_lifetime ?? engine.config.tokens.lifetime;
  if (spec.lifetimeCap !== undefined) lifetime = Math.min(lifetime, spec.lifetimeCap - now);
  if (lifetime <= 0) throw invalidGrant('The subject_token is about to expire', 'subject_expiring');
  await engine.keys.coverLifetime(lifetime);
  const key = engine.keys.active;
  const jti = randomUUID();
  if (spec.parentJti !== undefined) await engine.store.recordExchange(spec.parentJti, jti, now + lifetime + engine.config.tokens.clockSkew);
  const scope = spec.scopes.length > 0 ? { scope: spec.scopes.join(' ') } : {};
  const token = signAccessToken(key.alg, key.kid, key.key, {
    ...spec.claims,
    iss: engine.urls.issuer,
    sub: spec.sub,
    aud: spec.audiences.length === 1 ? spec.audiences[0] : spec.audiences,
    iat: now,
    exp: now + lifetime,
    jti,
    client_id: spec.client.client_id,
    ...scope,
    ...(spec.cnf === undefined ? {} : { cnf: spec.cnf }),
    ...(spec.act === undefined ? {} : { act: spec.act }),
    ...(spec.client.may_act === undefined ? {} : { may_act: { sub: spec.client.may_act } }),
  });
  const binding = spec.cnf === undefined ? 'none' : spec.cnf.jkt !== undefined ? 'dpop' : spec.cnf.tls_exp !== undefined ? 'session' : 'certificate';
  engine.metrics.tokensIssued.inc({ grant: spec.grant, binding, deferred: String(spec.deferred) });
  engine.log.info(
    { event: 'token_issued', grant: spec.grant, client_id: spec.client.client_id, sub: spec.sub, aud: spec.audiences, binding, deferred: spec.deferred, jti, depth: actDepth(spec.act), kid: key.kid },
    'access token issued',
  );
  return {
    access_token: token,
    token_type: binding === 'dpop' ? 'DPoP' : 'Bearer',
    expires_in: lifetime,
    ...scope,
    ...(spec.issuedTokenType === undefined ? {} : { issued_token_type: spec.issuedTokenType }),
  };
}
