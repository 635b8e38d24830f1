import { bindingRequirement } from '../../cnf.js';
import { InvalidTokenError } from '../../errors.js';
import { accessTokenHash } from '../../thumbprint.js';
import type { VerificationContext } from '../context.js';

/** Step b: validate the access token (signature, `exp`, `nbf`, `iss`, `aud`) and classify its `cnf`. */
export async function validateAccessToken(ctx: VerificationContext): Promise<void> {
  ctx.claims = await ctx.options.tokens.validate(ctx.token);
  // The verifier's own bound on exp, whatever tolerance the validator applies: a token is never
  // accepted at or after exp + clockSkew. Replay ids of per-request proofs are kept exactly that
  // long (per-request-claims.ts), so a larger validator tolerance cannot reopen a replay window.
  const { exp } = ctx.claims;
  if (typeof exp === 'number' && ctx.now >= exp + ctx.options.clockSkew) {
    throw new InvalidTokenError({ reason: 'expired', description: 'The access token expired' });
  }
  ctx.binding = bindingRequirement(ctx.claims.cnf);
  if (ctx.binding.kind === 'invalid') {
    throw new InvalidTokenError({ reason: 'cnf', description: 'The access token confirmation claim is not supported', detail: ctx.binding.reason });
  }
  ctx.ath = accessTokenHash(ctx.token);
}
