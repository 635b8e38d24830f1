/** The grants table: `grant_type` -> its handler (one file per grant). */
import { GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE } from '../config.js';
import { clientCredentials } from './client-credentials.js';
import type { Grant } from './grant.js';
import { tokenExchange } from './token-exchange.js';

export type { Grant, TokenRequest } from './grant.js';

export const GRANTS: ReadonlyMap<string, Grant> = new Map([
  [GRANT_CLIENT_CREDENTIALS, clientCredentials],
  [GRANT_TOKEN_EXCHANGE, tokenExchange],
]);
