import type { Confirmation } from '../cnf.js';
import type { AccessTokenClaims, ActorClaim } from './access-token.js';

/** What the application receives once a request is verified. */
export interface VerifiedPrincipal {
  sub: string | undefined;
  client_id: string | undefined;
  /** Space-separated scopes as issued. */
  scope: string | undefined;
  /** The RFC 8693 actor chain, current actor first. */
  act: ActorClaim | undefined;
  cnf: Confirmation | undefined;
  /** How the token was bound to this request (`dpop`: RFC 9449 `cnf.jkt` with a DPoP proof). */
  binding: 'session' | 'certificate' | 'dpop' | 'none';
  /** All access-token claims. */
  claims: AccessTokenClaims;
}
