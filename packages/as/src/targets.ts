/**
 * What a new token is for: its audiences (`audience`/`resource`, RFC 8693 section 2.1, RFC 8707)
 * and scopes (RFC 6749 section 3.3), limited by the client's metadata, the subject token and the
 * targets' own scope lists.
 */
import { SCOPE_LIST } from '@tether/core';
import type { ResolvedClient } from './config.js';
import type { AuthorizationEngine } from './engine.js';
import { OAuthError } from './errors.js';
import type { FormParams } from './form.js';

const MAX_AUDIENCES = 20;

export function splitScope(scope: string | undefined): string[] {
  return scope === undefined ? [] : scope.split(' ').filter((s) => s !== '');
}

/**
 * The scopes of a new token: `requested` (when sent) must be well-formed and within `allowed`;
 * without it, `fallback`. `exceeds` is the refusal's description and reason.
 */
export function grantedScopes(requested: string | undefined, allowed: ReadonlySet<string>, fallback: string[], exceeds: { description: string; reason: string }): string[] {
  if (requested === undefined) return fallback;
  if (!SCOPE_LIST.test(requested)) throw new OAuthError('invalid_scope', 'The scope is malformed', { reason: 'scope_syntax' });
  const scopes = [...new Set(splitScope(requested))];
  if (scopes.some((s) => !allowed.has(s))) throw new OAuthError('invalid_scope', exceeds.description, { reason: exceeds.reason });
  return scopes;
}

/** The audiences requested (or the client's default), each known and allowed for the client. */
export function requestedAudiences(engine: AuthorizationEngine, params: FormParams, client: ResolvedClient): string[] {
  let requested = [...new Set([...params.all('audience'), ...params.all('resource')])];
  if (requested.length === 0) {
    const fallback = client.default_audience;
    requested = fallback === undefined ? [] : Array.isArray(fallback) ? fallback : [fallback];
  }
  if (requested.length === 0) throw new OAuthError('invalid_target', 'An audience or resource is required', { reason: 'no_audience' });
  if (requested.length > MAX_AUDIENCES) throw new OAuthError('invalid_target', 'Too many audiences', { reason: 'too_many_audiences' });
  for (const a of requested) {
    const known = engine.resource(a) !== undefined || engine.recipient(a) !== undefined;
    if (!known) throw new OAuthError('invalid_target', 'The requested audience is not known', { reason: 'unknown_target' });
    if (!client.audiences.includes('*') && !client.audiences.includes(a)) {
      throw new OAuthError('invalid_target', 'The client may not request tokens for this audience', { reason: 'target_not_allowed' });
    }
  }
  return requested;
}

/** When every target lists its scopes, keep only scopes some target accepts. */
export function restrictToResources(engine: AuthorizationEngine, scopes: string[], audiences: string[], explicit: boolean): string[] {
  const lists = audiences.map((a) => engine.resource(a)?.scopes);
  if (lists.some((l) => l === undefined)) return scopes;
  const accepted = new Set(lists.flatMap((l) => [...(l as Set<string>)]));
  const kept = scopes.filter((s) => accepted.has(s));
  if (explicit && kept.length !== scopes.length) throw new OAuthError('invalid_scope', 'The requested scope is not accepted by the audience', { reason: 'scope_not_for_target' });
  return kept;
}
