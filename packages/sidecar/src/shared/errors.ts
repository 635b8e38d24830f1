/**
 * Errors the sidecars answer with. Each sidecar keeps ONE table (fastify style) mapping a stable
 * `code` (`ERR_EGRESS_*`, `ERR_INGRESS_*`) to its HTTP status, the RFC 6749 / 6750 `error` value of
 * the JSON body, the default `error_description` and the failure reason counted in metrics.
 */

/** One row of an error table. */
export interface ErrorDefinition {
  /** HTTP status sent to the client. */
  readonly statusCode: number;
  /** `error` member of the JSON body (RFC 6749 section 5.2 / RFC 6750 section 3.1 style). */
  readonly error: string;
  /** Default `error_description` (never internal details: it goes to the client). */
  readonly description: string;
  /** Failure reason label for metrics and logs (default: `error`). */
  readonly reason?: string;
}

export type ErrorTable = Readonly<Record<string, ErrorDefinition>>;

export interface SidecarErrorOptions {
  /** Replaces the table's description (still client-facing: no internal details). */
  description?: string;
  cause?: unknown;
}

/** A refusal or failure the client is told about, with a stable `code`. */
export class SidecarError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly error: string;
  readonly reason: string;

  constructor(code: string, definition: ErrorDefinition, options: SidecarErrorOptions = {}) {
    super(options.description ?? definition.description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SidecarError';
    this.code = code;
    this.statusCode = definition.statusCode;
    this.error = definition.error;
    this.reason = definition.reason ?? definition.error;
  }

  /** The JSON body sent to the client. */
  toJSON(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

/**
 * A constructor function for the codes of one table:
 * `const egressError = errorFactory(EGRESS_ERRORS); throw egressError('ERR_EGRESS_NO_ROUTE');`
 */
export function errorFactory<T extends ErrorTable>(table: T): (code: keyof T & string, options?: SidecarErrorOptions) => SidecarError {
  return (code, options) => new SidecarError(code, table[code] as ErrorDefinition, options);
}

export function isSidecarError(error: unknown): error is SidecarError {
  return error instanceof SidecarError;
}

/** `error.message` for logs, whatever was thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
