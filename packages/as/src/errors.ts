/**
 * OAuth 2.0 error responses (RFC 6749 section 5.2, RFC 7009, RFC 7662, RFC 8693 section 2.2.2).
 * An `OAuthError` carries the HTTP status, the `error` code, a public description, and a private
 * `reason` for logs and metrics. Only `error` and `error_description` reach the peer.
 */

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'unsupported_token_type'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'server_error'
  | 'not_found'
  | 'temporarily_unavailable';

const STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  unsupported_token_type: 400,
  invalid_dpop_proof: 400,
  use_dpop_nonce: 400,
  server_error: 500,
  not_found: 404,
  temporarily_unavailable: 503,
};

export interface OAuthErrorOptions {
  /** Stable machine reason for logs and metric labels, e.g. `dn_mismatch`. Never sent. */
  reason: string;
  /** Override the HTTP status (e.g. 413 for an oversized body). */
  statusCode?: number;
  /** Extra response headers (e.g. `WWW-Authenticate` for `invalid_client`). */
  headers?: Record<string, string>;
  /** Private detail for logs only. */
  detail?: string;
  cause?: unknown;
}

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly description: string;
  readonly reason: string;
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly detail: string | undefined;

  constructor(error: OAuthErrorCode, description: string, options: OAuthErrorOptions) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OAuthError';
    this.error = error;
    this.description = description;
    this.reason = options.reason;
    this.statusCode = options.statusCode ?? STATUS[error];
    this.headers = options.headers ?? {};
    this.detail = options.detail;
  }

  /** RFC 6749 section 5.2 JSON body. */
  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}

export function isOAuthError(value: unknown): value is OAuthError {
  return value instanceof OAuthError;
}

export const invalidRequest = (description: string, reason = 'invalid_request', detail?: string): OAuthError =>
  new OAuthError('invalid_request', description, { reason, ...(detail === undefined ? {} : { detail }) });

export const invalidGrant = (description: string, reason: string, detail?: string): OAuthError =>
  new OAuthError('invalid_grant', description, { reason, ...(detail === undefined ? {} : { detail }) });

/** RFC 9449 section 5: a DPoP proof at the token endpoint that is missing something or fails a check. */
export const invalidDpopProof = (reason: string, detail?: string): OAuthError =>
  new OAuthError('invalid_dpop_proof', 'The DPoP proof is not valid', { reason, ...(detail === undefined ? {} : { detail }) });

/** RFC 9449 section 8: the DPoP proof lacks a current server nonce; `DPoP-Nonce` carries one. */
export const useDpopNonce = (reason: string, nonce: string): OAuthError =>
  new OAuthError('use_dpop_nonce', 'Authorization server requires nonce in DPoP proof', { reason, headers: { 'DPoP-Nonce': nonce } });

/** Configuration problems found at start-up; `issues` lists each with its path. */
export class ConfigError extends Error {
  readonly issues: readonly string[];
  constructor(issues: readonly string[]) {
    super(`invalid configuration:\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}
