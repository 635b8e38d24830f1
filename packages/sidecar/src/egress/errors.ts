/**
 * Every answer the egress gives on its own (rather than relaying the upstream's): one table, one
 * stable `code` per failure, the HTTP status, the JSON body's `error` (RFC 6749 / 6750 style) and
 * the failure reason counted in `stats.failures` / `tether_egress_failures_total{reason}`.
 */
import { errorFactory, type ErrorTable } from '../shared/errors.js';

export const EGRESS_ERRORS = {
  ERR_EGRESS_SHUTTING_DOWN: { statusCode: 503, error: 'shutting_down', description: 'the egress is shutting down', reason: 'shutting_down' },
  ERR_EGRESS_NO_ROUTE: {
    statusCode: 403,
    error: 'destination_not_allowed',
    description: 'no route for this destination; only configured routes are reachable',
    reason: 'destination_not_allowed',
  },
  ERR_EGRESS_DOT_SEGMENT: { statusCode: 400, error: 'invalid_request', description: 'paths with . or .. segments are not forwarded', reason: 'dot_segment' },
  ERR_EGRESS_DUPLICATE_AUTHORIZATION: { statusCode: 400, error: 'invalid_request', description: 'more than one Authorization field', reason: 'duplicate_authorization' },
  ERR_EGRESS_MALFORMED_BEARER: { statusCode: 400, error: 'invalid_request', description: 'malformed Bearer credentials', reason: 'malformed_bearer' },
  ERR_EGRESS_OPAQUE_TOKEN: {
    statusCode: 403,
    error: 'token_not_allowed',
    description: 'the token is not a JWT, so its audience cannot be checked against this route',
    reason: 'opaque_token',
  },
  ERR_EGRESS_TOKEN_NOT_ALLOWED: {
    statusCode: 403,
    error: 'token_not_allowed',
    description: "the token's audience does not include this route's audience",
    reason: 'audience_mismatch',
  },
  ERR_EGRESS_TOKEN_UNAVAILABLE: {
    statusCode: 502,
    error: 'token_unavailable',
    description: 'the egress could not obtain an access token for this route',
    reason: 'token_fetch',
  },
  ERR_EGRESS_UPSTREAM_UNAVAILABLE: { statusCode: 502, error: 'upstream_unavailable', description: 'the upstream connection failed', reason: 'upstream_error' },
  ERR_EGRESS_UPSTREAM_TIMEOUT: {
    statusCode: 504,
    error: 'upstream_timeout',
    description: 'the upstream did not answer in time',
    reason: 'upstream_timeout',
  },
  ERR_EGRESS_INTERNAL: { statusCode: 500, error: 'internal_error', description: 'the egress failed', reason: 'internal' },
} as const satisfies ErrorTable;

export type EgressErrorCode = keyof typeof EGRESS_ERRORS;

/** `throw egressError('ERR_EGRESS_NO_ROUTE')`: a {@link SidecarError} from the table. */
export const egressError = errorFactory(EGRESS_ERRORS);
