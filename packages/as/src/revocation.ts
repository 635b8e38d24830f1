/**
 * Token revocation (RFC 7009). Only the client a token was issued to (or its subject) may revoke
 * it; an invalid token is not an error (section 2.2). The revocation is durable in the store
 * before the response, and reaches every token exchanged from this one (store/sql-store.ts).
 */
import type { AuthorizationEngine } from './engine.js';
import { OAuthError } from './errors.js';
import type { RequestInfo } from './request.js';

export async function revoke(engine: AuthorizationEngine, req: RequestInfo): Promise<void> {
  const auth = await engine.authenticate(req);
  req.params.assertNoDuplicates();
  const token = req.params.require('token');
  const result = await engine.validateOwnToken(token, { allowExpired: true });
  if (!result.ok) {
    engine.metrics.revocations.inc({ result: `ignored_${result.reason}` });
    return;
  }
  const c = result.claims;
  const id = auth.client.client_id;
  if (c.client_id !== id && c.sub !== id) {
    engine.metrics.revocations.inc({ result: 'refused' });
    throw new OAuthError('unauthorized_client', 'The token was not issued to this client', { reason: 'revoke_foreign_token' });
  }
  const skew = engine.config.tokens.clockSkew;
  if (c.exp + skew >= engine.now()) await engine.store.revoke(c.jti, c.exp + skew);
  engine.metrics.revocations.inc({ result: 'revoked' });
  engine.log.info({ event: 'token_revoked', client_id: id, jti: c.jti }, 'access token revoked');
}
