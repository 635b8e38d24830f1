import { InsufficientScopeError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/** Every scope in `requiredScopes` must appear in the token's `scope`. */
export function checkScope(ctx: VerificationContext): void {
  const required = ctx.options.requiredScopes;
  if (required.length === 0) return;
  const granted = new Set(typeof ctx.claims.scope === 'string' ? ctx.claims.scope.split(' ') : []);
  if (!required.every((s) => granted.has(s))) {
    throw new InsufficientScopeError({ reason: 'insufficient_scope', description: 'The access token lacks a required scope', scope: required.join(' ') });
  }
}
