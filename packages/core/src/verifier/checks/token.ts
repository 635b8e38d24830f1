import { bindingRequirement, type BindingRequirement } from '../../cnf.js';
import { InvalidTokenError } from '../../errors.js';
import { accessTokenHash } from '../../thumbprint.js';
import type { VerificationContext } from '../context.js';

/** How many tokens' `ath` {@link athOf} remembers. */
const ATH_CACHE_ENTRIES = 1024;
/** Token -> `ath`, oldest first. */
const athCache = new Map<string, string>();

/**
 * `ath` of `token` (base64url SHA-256), remembered for the most recent tokens: a token is presented
 * on many requests. Keyed on the whole token string, so any other token is hashed anew.
 */
function athOf(token: string): string {
  let ath = athCache.get(token);
  if (ath === undefined) {
    ath = accessTokenHash(token);
    if (athCache.size >= ATH_CACHE_ENTRIES) athCache.delete(athCache.keys().next().value as string);
    athCache.set(token, ath);
  }
  return ath;
}

/**
 * The binding requirement of a validated claims set, classified once per claims object: a token
 * validator that caches (jwtAccessTokenValidator does) returns the same object for a token it has
 * seen, so a token presented on many requests is not re-classified (base64url decoding of its
 * thumbprint) on each. A validator that returns fresh objects gets a fresh classification.
 */
const bindings = new WeakMap<object, BindingRequirement>();
function bindingOf(claims: { cnf?: unknown }): BindingRequirement {
  let binding = bindings.get(claims);
  if (binding === undefined) {
    binding = bindingRequirement(claims.cnf);
    bindings.set(claims, binding);
  }
  return binding;
}

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
  ctx.binding = bindingOf(ctx.claims);
  if (ctx.binding.kind === 'invalid') {
    throw new InvalidTokenError({ reason: 'cnf', description: 'The access token confirmation claim is not supported', detail: ctx.binding.reason });
  }
  ctx.ath = athOf(ctx.token);
}
