import { InvalidProofError } from '../../errors.js';
import type { PerRequestClaims, VerificationContext } from '../context.js';

function fail(reason: string, description: string, cause?: unknown): never {
  throw new InvalidProofError({ reason, description: `Session-Binding Proof verification failed: ${description}`, ...(cause === undefined ? {} : { cause }) });
}

/** The request URI without query and fragment, normalized by WHATWG URL parsing. */
function requestUri(scheme: string, authority: string, path: string): URL | undefined {
  try {
    const url = new URL(path.startsWith('/') ? path : `/${path}`, `${scheme}://${authority}`);
    url.search = '';
    url.hash = '';
    return url;
  } catch {
    return undefined;
  }
}

/**
 * Whether `htu` names the request URI. Accepts the absolute form of RFC 9449 (scheme, host, port
 * and path compared after normalization) and the path-only form shown in the draft's example
 * (`"/api/resource"`), compared with the request path. Query and fragment never take part.
 */
export function htuMatches(htu: string, scheme: string, authority: string, path: string): boolean {
  const actual = requestUri(scheme, authority, path);
  if (actual === undefined) return false;
  if (htu.startsWith('/')) {
    const claimed = requestUri(scheme, authority, htu);
    return claimed !== undefined && claimed.pathname === actual.pathname;
  }
  let claimed: URL;
  try {
    claimed = new URL(htu);
  } catch {
    return false;
  }
  return claimed.protocol === actual.protocol && claimed.host === actual.host && claimed.pathname === actual.pathname;
}

/** Step i: `htm` and `htu` match the request; `jti` was not seen before (fails closed if the store fails). */
export function checkPerRequestClaims(ctx: VerificationContext): void | Promise<void> {
  const claims = ctx.perRequest;
  if (claims === undefined) return;
  const { input } = ctx;
  if (claims.htm !== undefined && claims.htm !== input.method) fail('htm_mismatch', 'htm mismatch');
  if (claims.htu !== undefined && !htuMatches(claims.htu, input.scheme, input.authority, input.path)) fail('htu_mismatch', 'htu mismatch');
  if (claims.jti !== undefined) return checkReplay(ctx, claims);
}

/** The `jti` of a single-use proof was not seen before (the replay store; fails closed if it fails). */
async function checkReplay(ctx: VerificationContext, claims: PerRequestClaims): Promise<void> {
  // Remember the id for as long as the request could otherwise be accepted: through the end of
  // the proof's iat window (iat + maxAge + skew) or of the token (exp + skew, enforced in
  // token.ts whatever the validator's own tolerance), whichever comes first, inclusive.
  const { clockSkew, proofMaxAge } = ctx.options;
  const proofEnd = (claims.iat ?? ctx.now) + proofMaxAge + clockSkew;
  const tokenEnd = typeof ctx.claims.exp === 'number' ? ctx.claims.exp + clockSkew : Infinity;
  const until = Math.min(proofEnd, tokenEnd) + 1;
  let fresh: boolean;
  try {
    fresh = await ctx.options.replayStore.use(`sbp:${claims.jti}`, until);
  } catch (cause) {
    fail('replay_store_unavailable', 'replay check unavailable', cause);
  }
  if (!fresh) fail('jti_replay', 'jti reuse');
}
