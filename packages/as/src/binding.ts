/**
 * The binding of a new token (draft sections 3.1 and 3.2, NOTES decisions 4 and 5, RFC 9449):
 * how strongly it must be bound, the deferred key binding request `tmb`
 * (draft-richer-oauth-tmb-claim), and the resulting `cnf`.
 */
import { EXPORTER_LABEL, isThumbprint, strongestBinding, type Confirmation } from '@tether/core';
import type { BindingLevel, ResolvedClient } from './config.js';
import type { Peer } from './connection.js';
import type { DpopKey } from './dpop-request.js';
import type { AuthorizationEngine } from './engine.js';
import { OAuthError, invalidGrant, invalidRequest } from './errors.js';

/** The strongest of `levels` (core's one binding order). */
export const maxLevel = (...levels: BindingLevel[]): BindingLevel => strongestBinding(...levels);

/** A parsed `tmb` request parameter (draft-richer-oauth-tmb-claim section 3). */
export interface DeferredBinding {
  thumbprint: string;
  session: boolean;
}

/** Why a token request that carries DPoP is refused: the token would mix two binding types. */
const mixedBinding = (reason: string): OAuthError => invalidRequest('DPoP cannot be combined with certificate/session binding for this client', reason);

/**
 * Binding of a new token: the strongest of the server default, the client's metadata
 * (`tls_session_bound_access_tokens`, `tls_client_certificate_bound_access_tokens`), the
 * requirement of each audience, the depth threshold, and the binding of the subject and actor
 * tokens (a bound input always yields a bound successor, NOTES decision 5).
 */
export function bindingLevel(engine: AuthorizationEngine, client: ResolvedClient, audiences: string[], inherited: BindingLevel, depth: number): BindingLevel {
  const levels: BindingLevel[] = [engine.config.tokens.defaultBinding, inherited];
  if (client.tls_session_bound_access_tokens) levels.push('session');
  if (client.tls_client_certificate_bound_access_tokens) levels.push('certificate');
  for (const a of audiences) {
    const resource = engine.resource(a);
    if (resource !== undefined) levels.push(resource.binding);
    if (engine.recipient(a)?.tls_session_bound_access_tokens === true) levels.push('session');
  }
  const threshold = engine.config.tokenExchange.sessionBindingFromDepth;
  if (threshold !== undefined && depth >= threshold) levels.push('session');
  return maxLevel(...levels);
}

export function parseTmb(value: string | undefined): DeferredBinding | undefined {
  if (value === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw invalidRequest('tmb must be a JSON object', 'tmb_malformed');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalidRequest('tmb must be a JSON object', 'tmb_malformed');
  const members = parsed as Record<string, unknown>;
  for (const k of Object.keys(members)) {
    if (k !== 'x5t#S256' && k !== 'tls_exp') throw invalidRequest('tmb may only carry x5t#S256 and tls_exp', 'tmb_member');
  }
  const thumbprint = members['x5t#S256'];
  if (!isThumbprint(thumbprint)) {
    throw invalidRequest('tmb needs an x5t#S256 certificate thumbprint', 'tmb_thumbprint');
  }
  if (members.tls_exp !== undefined && members.tls_exp !== EXPORTER_LABEL) throw invalidRequest('tmb names an unknown exporter label', 'tmb_tls_exp');
  return { thumbprint, session: members.tls_exp !== undefined };
}

/** Thumbprints `client` may bind tokens to through `tmb`. */
async function tmbAllowed(engine: AuthorizationEngine, client: ResolvedClient, thumbprint: string): Promise<boolean> {
  if (client.tmb.thumbprints.includes(thumbprint)) return true;
  for (const id of client.tmb.clients) {
    const holder = engine.client(id);
    if (holder === undefined) continue;
    if (holder.certificate_thumbprints.includes(thumbprint) || holder.registeredThumbprints.has(thumbprint)) return true;
    if ((await engine.store.observedCertificates(id)).includes(thumbprint)) return true;
  }
  return false;
}

/**
 * The `cnf` of a new token. With a verified DPoP proof it is `{jkt}` (RFC 9449 section 6.1), and
 * only when nothing else asks for a binding: a certificate or session binding from policy, from
 * the subject or actor token, or from `tmb` refuses the request (`invalid_request`) rather than
 * issue a token that mixes `jkt` with `x5t#S256`/`tls_exp` or silently drops either binding.
 */
export async function confirmation(
  engine: AuthorizationEngine,
  level: BindingLevel,
  tmb: DeferredBinding | undefined,
  peer: Peer | undefined,
  client: ResolvedClient,
  dpop: DpopKey | undefined,
): Promise<Confirmation | undefined> {
  if (dpop !== undefined) {
    if (tmb !== undefined) throw mixedBinding('dpop_with_tmb');
    if (level !== 'none') throw mixedBinding(`dpop_with_${level}_binding`);
    return { jkt: dpop.jkt };
  }
  let thumbprint: string | undefined;
  let effective = level;
  if (tmb !== undefined) {
    if (!(await tmbAllowed(engine, client, tmb.thumbprint))) throw invalidGrant('The client may not request tokens bound to this key', 'tmb_not_allowed');
    thumbprint = tmb.thumbprint;
    effective = maxLevel(level, tmb.session ? 'session' : 'certificate');
  } else {
    if (level === 'none') return undefined;
    thumbprint = peer?.thumbprint;
    if (thumbprint === undefined) throw invalidRequest('A bound token needs a client certificate on the connection', 'binding_without_certificate');
  }
  return effective === 'session' ? { 'x5t#S256': thumbprint, tls_exp: EXPORTER_LABEL } : { 'x5t#S256': thumbprint };
}
