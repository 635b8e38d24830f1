import { InvalidTokenError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/**
 * RFC 9449 sections 6 and 7.1, for the DPoP scheme: the token must be DPoP-bound (`cnf.jkt`), and
 * the verifier's policy must accept DPoP-bound tokens. DPoP counts as `certificate` strength for
 * `minimumBinding`; under `session` it is accepted only with `dpop.meetsSessionMinimum`.
 */
export function checkDpopBinding(ctx: VerificationContext): void {
  if (ctx.scheme !== 'dpop') return;
  if (ctx.binding.kind !== 'dpop') {
    throw new InvalidTokenError({ reason: 'dpop_not_bound', description: 'The access token is not DPoP-bound' });
  }
  if (ctx.options.minimumBinding === 'session' && !ctx.options.dpop.meetsSessionMinimum) {
    throw new InvalidTokenError({ reason: 'binding_required', description: 'A TLS-session-bound access token is required' });
  }
}
