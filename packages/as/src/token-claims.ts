/**
 * The tokens this server issues (RFC 9068 JWT access tokens) as the engine sees them: claim
 * types, RFC 8693 token-type URNs, the token response, and small readers of claims.
 */
import type { JWTPayload } from 'jose';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, type Confirmation } from '@tether/core';

export { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT };
/** Token types accepted as subject, actor and requested token types (RFC 8693 section 3). */
export const TOKEN_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT]);

/** Claims of an access token this server issued. */
export interface OwnTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  exp: number;
  iat: number;
  jti: string;
  client_id?: string;
  scope?: string;
  cnf?: Confirmation;
  act?: ActClaim;
  may_act?: { sub?: string; iss?: string };
}

export interface ActClaim {
  sub: string;
  act?: ActClaim;
  [claim: string]: unknown;
}

export interface TokenResponse {
  access_token: string;
  /** `DPoP` for a token bound to a DPoP key (`cnf.jkt`, RFC 9449 section 5), `Bearer` otherwise. */
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope?: string;
  issued_token_type?: string;
}

export function actDepth(act: ActClaim | undefined): number {
  let depth = 0;
  for (let a = act; a !== undefined; a = a.act) depth++;
  return depth;
}

export function isActClaim(value: unknown, depth = 0): value is ActClaim {
  if (depth > 64 || typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return typeof v.sub === 'string' && (v.act === undefined || isActClaim(v.act, depth + 1));
}

export function audiencesOf(claims: JWTPayload): string[] {
  return typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
}
