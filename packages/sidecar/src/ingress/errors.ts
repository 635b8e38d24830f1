/**
 * Every answer the ingress gives on its own (rather than the application's or the verifier's
 * RFC 6750 refusals): one table, one stable `code` per failure, the HTTP status, the JSON body's
 * `error` and the failure reason counted in `stats.failures` / `tether_ingress_failures_total{reason}`.
 */
import { errorFactory, type ErrorTable } from '../shared/errors.js';

export const INGRESS_ERRORS = {
  /** The application sent no response headers within `appTimeoutMs`. */
  ERR_INGRESS_UPSTREAM_TIMEOUT: { statusCode: 504, error: 'upstream_timeout', description: 'the application did not answer in time', reason: 'upstream_timeout' },
  /** The application could not be reached, or failed before its response headers. */
  ERR_INGRESS_UPSTREAM_UNAVAILABLE: { statusCode: 502, error: 'upstream_unavailable', description: 'the application is not reachable', reason: 'upstream_error' },
  /** The application's response was cut off after its headers: the client's response is aborted. */
  ERR_INGRESS_UPSTREAM_RESET: { statusCode: 502, error: 'upstream_unavailable', description: 'the application response was cut off', reason: 'upstream_reset' },
  /** The protected-resource metadata answers GET and HEAD only. */
  ERR_INGRESS_METHOD_NOT_ALLOWED: { statusCode: 405, error: 'method_not_allowed', description: 'the metadata is read with GET or HEAD', reason: 'method_not_allowed' },
  /** A header section over the limit: HTTP/1.1 431, HTTP/2 RST_STREAM ENHANCE_YOUR_CALM. */
  ERR_INGRESS_HEADER_TOO_LARGE: { statusCode: 431, error: 'invalid_request', description: 'the request header section is too large', reason: 'header_too_large' },
  /** An HTTP/1.1 request the parser refused. */
  ERR_INGRESS_BAD_REQUEST: { statusCode: 400, error: 'invalid_request', description: 'the request is malformed', reason: 'bad_request' },
  /** An HTTP/1.1 request whose headers or body did not arrive in time. */
  ERR_INGRESS_REQUEST_TIMEOUT: { statusCode: 408, error: 'invalid_request', description: 'the request did not arrive in time', reason: 'request_timeout' },
} as const satisfies ErrorTable;

export type IngressErrorCode = keyof typeof INGRESS_ERRORS;

/** `ingressError('ERR_INGRESS_UPSTREAM_TIMEOUT')`: a {@link SidecarError} from the table. */
export const ingressError = errorFactory(INGRESS_ERRORS);
