/**
 * Token introspection (RFC 7662). A client sees only tokens meant for it (named in `aud`) or
 * issued to it, unless its metadata says `introspection: "any"` (section 4: for others the token
 * is simply not active). A revoked token, or a successor of one, is not active.
 */
import type { AuthorizationEngine } from './engine.js';
import type { RequestInfo } from './request.js';
import { audiencesOf } from './token-claims.js';

const MEMBERS = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope', 'cnf', 'act', 'may_act'] as const;

export async function introspect(engine: AuthorizationEngine, req: RequestInfo): Promise<Record<string, unknown>> {
  const auth = await engine.authenticate(req);
  req.params.assertNoDuplicates();
  const token = req.params.require('token');
  const result = await engine.validateOwnToken(token);
  const client = auth.client;
  const visible =
    result.ok && (client.introspection === 'any' || result.claims.client_id === client.client_id || audiencesOf(result.claims).some((a) => client.recipientIds.has(a)));
  engine.metrics.introspections.inc({ active: String(visible) });
  if (!result.ok || !visible) return { active: false };
  const c = result.claims;
  // RFC 9449 section 6.2: a DPoP-bound token is introspected with token_type DPoP and its cnf.jkt.
  const out: Record<string, unknown> = { active: true, token_type: typeof c.cnf?.jkt === 'string' ? 'DPoP' : 'Bearer' };
  for (const name of MEMBERS) if (c[name] !== undefined) out[name] = c[name];
  return out;
}
