/** What a grant type is (one file per grant, in the way node-oidc-provider keeps them). */
import type { AuthenticatedClient } from '../client-auth.js';
import type { DpopKey } from '../dpop-request.js';
import type { AuthorizationEngine } from '../engine.js';
import type { RequestInfo } from '../request.js';
import type { TokenResponse } from '../token-claims.js';

export interface TokenRequest {
  req: RequestInfo;
  /** The authenticated client. */
  auth: AuthenticatedClient;
  /** The key of the request's verified DPoP proof, if one was sent. */
  dpop: DpopKey | undefined;
}

export interface Grant {
  /** Request parameters this grant reads (besides client authentication and `grant_type`). */
  readonly parameters: readonly string[];
  /** Whether the configuration enables it. */
  enabled(engine: AuthorizationEngine): boolean;
  handle(engine: AuthorizationEngine, request: TokenRequest): Promise<TokenResponse>;
}
