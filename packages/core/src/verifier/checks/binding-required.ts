import { UseSessionBindingError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/** Step d: a token with `cnf.tls_exp` needs a Session-Binding-Proof. */
export function checkBindingRequired(ctx: VerificationContext): void {
  if (ctx.binding.kind === 'session' && ctx.proof === undefined) {
    throw new UseSessionBindingError({ reason: 'proof_missing', description: 'This token requires a Session-Binding Proof' });
  }
}
