import { bindingRequirement } from '../../cnf.js';
import { InvalidTokenError } from '../../errors.js';
import { accessTokenHash } from '../../thumbprint.js';
import type { VerificationContext } from '../context.js';

/** Step b: validate the access token (signature, `exp`, `nbf`, `iss`, `aud`) and classify its `cnf`. */
export async function validateAccessToken(ctx: VerificationContext): Promise<void> {
  ctx.claims = await ctx.options.tokens.validate(ctx.token);
  ctx.binding = bindingRequirement(ctx.claims.cnf);
  if (ctx.binding.kind === 'invalid') {
    throw new InvalidTokenError({ reason: 'cnf', description: 'The access token confirmation claim is not supported', detail: ctx.binding.reason });
  }
  ctx.ath = accessTokenHash(ctx.token);
}
