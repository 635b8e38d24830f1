import type { Confirmation } from '../cnf.js';

/** Claims of a validated access token, from a JWT (RFC 9068) or an introspection response (RFC 7662). */
export interface AccessTokenClaims {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  jti?: string;
  client_id?: string;
  scope?: string;
  act?: ActorClaim;
  cnf?: Confirmation;
  [claim: string]: unknown;
}

/** RFC 8693 `act` claim: the current actor, with prior actors nested. */
export interface ActorClaim {
  sub?: string;
  iss?: string;
  client_id?: string;
  act?: ActorClaim;
  [claim: string]: unknown;
}

/**
 * Validates an access token and returns its claims, or throws `InvalidTokenError`. Implementations:
 * {@link jwtAccessTokenValidator} (RFC 9068) and {@link introspectionValidator} (RFC 7662).
 */
export interface AccessTokenValidator {
  validate(token: string): Promise<AccessTokenClaims>;
}
