import { InvalidProofError } from '../../errors.js';
import type { PerRequestClaims, VerificationContext } from '../context.js';
import type { ReplayStore } from '../replay-store.js';

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

/** The request a proof's per-request claims are checked against. */
export interface ProofRequest {
  method: string;
  /** `https` for TLS connections. */
  scheme: string;
  /** Host and optional port the request was sent to. */
  authority: string;
  /** Path and optional query. */
  path: string;
}

/** How long a proof stays acceptable, which bounds how long its `jti` is remembered. */
export interface ProofWindow {
  /** Epoch seconds now (used when the proof has no `iat`). */
  now: number;
  proofMaxAge: number;
  clockSkew: number;
  /** `exp` of the access token the proof was made for, when it has one. */
  tokenExp: number | undefined;
}

/**
 * Draft step i, the one rule for per-request claims wherever a Session-Binding-Proof is checked
 * (the resource-server verifier's step i and the authorization server's holder proof at token
 * exchange): `htm` equals the request method, `htu` names the request URI (htuMatches), and a
 * `jti` is used once. It is remembered for as long as the request could otherwise be accepted:
 * through the end of the proof's iat window (iat + maxAge + skew) or of the token (exp + skew),
 * whichever comes first, inclusive. A replay store that fails refuses the proof (fails closed).
 * Synchronous unless there is a `jti` to record.
 */
export function verifyPerRequestClaims(claims: PerRequestClaims | undefined, request: ProofRequest, window: ProofWindow, replayStore: ReplayStore): void | Promise<void> {
  if (claims === undefined) return;
  if (claims.htm !== undefined && claims.htm !== request.method) fail('htm_mismatch', 'htm mismatch');
  if (claims.htu !== undefined && !htuMatches(claims.htu, request.scheme, request.authority, request.path)) fail('htu_mismatch', 'htu mismatch');
  if (claims.jti !== undefined) return checkReplay(claims.jti, claims.iat, window, replayStore);
}

/** Step i of the verifier: {@link verifyPerRequestClaims} for the request being verified. */
export function checkPerRequestClaims(ctx: VerificationContext): void | Promise<void> {
  const claims = ctx.perRequest;
  if (claims === undefined) return;
  const { clockSkew, proofMaxAge, replayStore } = ctx.options;
  const tokenExp = typeof ctx.claims.exp === 'number' ? ctx.claims.exp : undefined;
  return verifyPerRequestClaims(claims, ctx.input, { now: ctx.now, proofMaxAge, clockSkew, tokenExp }, replayStore);
}

/** The `jti` of a single-use proof was not seen before (the replay store; fails closed if it fails). */
async function checkReplay(jti: string, iat: number | undefined, window: ProofWindow, replayStore: ReplayStore): Promise<void> {
  const proofEnd = (iat ?? window.now) + window.proofMaxAge + window.clockSkew;
  const tokenEnd = window.tokenExp === undefined ? Infinity : window.tokenExp + window.clockSkew;
  const until = Math.min(proofEnd, tokenEnd) + 1;
  let fresh: boolean;
  try {
    fresh = await replayStore.use(`sbp:${jti}`, until);
  } catch (cause) {
    fail('replay_store_unavailable', 'replay check unavailable', cause);
  }
  if (!fresh) fail('jti_replay', 'jti reuse');
}
