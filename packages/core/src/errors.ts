/**
 * Typed errors. Every error the verifier raises maps to one RFC 6750 challenge: it carries the HTTP
 * `statusCode`, the `headers` to send (with `WWW-Authenticate`), a stable machine `code`, a public
 * `description` safe to put in `error_description`, and a `reason` for logs and metrics. Private
 * detail (`cause`, `detail`) never reaches the challenge.
 *
 * `instanceof` works across duplicate copies of this package: it checks a registered symbol brand
 * and the `code`, not the prototype chain (the undici approach).
 */

const BRAND = Symbol.for('tether.error');

/** The RFC 6750 / draft `error` values a resource server can answer with. */
export type ChallengeErrorCode =
  | 'invalid_request'
  | 'invalid_token'
  | 'use_session_binding'
  | 'invalid_proof'
  | 'insufficient_scope'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce';

export interface TetherErrorOptions {
  /** Stable machine-readable reason, e.g. `ekm_mismatch`. Safe for logs and metric labels. */
  reason: string;
  /** Public, human-readable text for `error_description`. Must not contain request data. */
  description: string;
  /** Private detail for logs only; never sent to the peer. */
  detail?: string;
  cause?: unknown;
  /** Authentication scheme for the challenge (default `Bearer`). */
  scheme?: string;
  /** Optional `realm` parameter of the challenge. */
  realm?: string;
  /** Further auth-params appended to the challenge (e.g. RFC 9449 `algs`). Default none. */
  authParams?: ReadonlyArray<readonly [string, string]>;
  /** Further response headers sent with the refusal (e.g. `DPoP-Nonce`), lower-case names. Default none. */
  responseHeaders?: Readonly<Record<string, string>>;
}

/** Quote a value as an RFC 9110 quoted-string; drops control characters rather than risk header injection. */
function quote(value: string): string {
  // eslint-disable-next-line no-control-regex
  return `"${value.replace(/[\u0000-\u001f\u007f]/g, '').replace(/["\\]/g, '\\$&')}"`;
}

/** Base class of every error the protocol core raises toward a peer. */
export abstract class TetherError extends Error {
  /** Stable identifier of the error class, e.g. `ERR_INVALID_PROOF`. */
  abstract readonly code: string;
  /** RFC 6750 `error` value, or `undefined` for a bare challenge (no credentials were sent). */
  abstract readonly error: ChallengeErrorCode | undefined;
  abstract readonly statusCode: number;
  readonly reason: string;
  readonly description: string;
  readonly detail: string | undefined;
  readonly scheme: string;
  readonly realm: string | undefined;
  /** Auth-params appended after the class's own parameters (e.g. `algs` on DPoP challenges). */
  readonly authParams: ReadonlyArray<readonly [string, string]>;
  /** Response headers besides `WWW-Authenticate` (e.g. `dpop-nonce`). */
  readonly responseHeaders: Readonly<Record<string, string>>;
  /** `instanceof TetherError` recognises errors from any copy of this package, like the subclasses do. */
  static override [Symbol.hasInstance] = (instance: unknown): boolean => isTetherError(instance);

  constructor(options: TetherErrorOptions) {
    super(options.description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.reason = options.reason;
    this.description = options.description;
    this.detail = options.detail;
    this.scheme = options.scheme ?? 'Bearer';
    this.realm = options.realm;
    this.authParams = options.authParams ?? [];
    this.responseHeaders = options.responseHeaders ?? {};
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** Extra challenge parameters (e.g. `scope` for `insufficient_scope`). */
  protected challengeParams(): Array<[string, string]> {
    return [];
  }

  /** The `WWW-Authenticate` value for this error. */
  get challenge(): string {
    return this.challengeWith([]);
  }

  /**
   * The `WWW-Authenticate` value with `extra` auth-params last: parameters only the server knows,
   * such as RFC 9728 `resource_metadata` (the URL of its protected-resource metadata).
   */
  challengeWith(extra: ReadonlyArray<readonly [string, string]>): string {
    const params: Array<readonly [string, string]> = [];
    if (this.realm !== undefined) params.push(['realm', this.realm]);
    if (this.error !== undefined) {
      params.push(['error', this.error]);
      params.push(['error_description', this.description]);
    }
    params.push(...this.challengeParams());
    for (const [k, v] of this.authParams) params.push([k, v]);
    params.push(...extra);
    if (params.length === 0) return this.scheme;
    return `${this.scheme} ${params.map(([k, v]) => `${k}=${quote(v)}`).join(', ')}`;
  }

  /**
   * Headers to send with the error response (fastify and express honour `err.headers`). Every
   * refusal, the 400 `invalid_request` included, carries its challenge (RFC 6750 section 3.1).
   */
  get headers(): Record<string, string> {
    return this.headersWith([]);
  }

  /** {@link headers} with `extra` auth-params in the challenge (see {@link challengeWith}). */
  headersWith(extra: ReadonlyArray<readonly [string, string]>): Record<string, string> {
    return { ...this.responseHeaders, 'www-authenticate': this.challengeWith(extra) };
  }

  /** RFC 6750-style JSON body: public fields only. */
  toJSON(): { error: string; error_description: string } {
    return { error: this.error ?? 'unauthorized', error_description: this.description };
  }
}

/** True when `value` is a TetherError from any copy of this package. */
export function isTetherError(value: unknown): value is TetherError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

function brandCheck(code: string) {
  return (instance: unknown): boolean => isTetherError(instance) && instance.code === code;
}

/** 401 with a bare challenge: the request carried no access token (RFC 6750 section 3.1). */
export class AuthenticationRequiredError extends TetherError {
  static readonly code = 'ERR_AUTHENTICATION_REQUIRED';
  readonly code = AuthenticationRequiredError.code;
  readonly error = undefined;
  readonly statusCode = 401;
  static override [Symbol.hasInstance] = brandCheck(AuthenticationRequiredError.code);
}

/** 400 `invalid_request`: malformed request, e.g. two Authorization or two proof headers. */
export class InvalidRequestError extends TetherError {
  static readonly code = 'ERR_INVALID_REQUEST';
  readonly code = InvalidRequestError.code;
  readonly error = 'invalid_request' as const;
  readonly statusCode = 400;
  static override [Symbol.hasInstance] = brandCheck(InvalidRequestError.code);
}

/** 401 `invalid_token`: token invalid, expired, or bound to another certificate. */
export class InvalidTokenError extends TetherError {
  static readonly code = 'ERR_INVALID_TOKEN';
  readonly code = InvalidTokenError.code;
  readonly error = 'invalid_token' as const;
  readonly statusCode = 401;
  static override [Symbol.hasInstance] = brandCheck(InvalidTokenError.code);
}

/** 401 `use_session_binding`: the token carries `cnf.tls_exp` but no Session-Binding-Proof was sent. */
export class UseSessionBindingError extends TetherError {
  static readonly code = 'ERR_USE_SESSION_BINDING';
  readonly code = UseSessionBindingError.code;
  readonly error = 'use_session_binding' as const;
  readonly statusCode = 401;
  static override [Symbol.hasInstance] = brandCheck(UseSessionBindingError.code);
}

/** 401 `invalid_proof`: the Session-Binding Proof is malformed or failed verification. */
export class InvalidProofError extends TetherError {
  static readonly code = 'ERR_INVALID_PROOF';
  readonly code = InvalidProofError.code;
  readonly error = 'invalid_proof' as const;
  readonly statusCode = 401;
  static override [Symbol.hasInstance] = brandCheck(InvalidProofError.code);
}

/** 403 `insufficient_scope`: the token lacks a scope the resource requires. */
export class InsufficientScopeError extends TetherError {
  static readonly code = 'ERR_INSUFFICIENT_SCOPE';
  readonly code = InsufficientScopeError.code;
  readonly error = 'insufficient_scope' as const;
  readonly statusCode = 403;
  readonly scope: string;
  static override [Symbol.hasInstance] = brandCheck(InsufficientScopeError.code);

  constructor(options: TetherErrorOptions & { scope: string }) {
    super(options);
    this.scope = options.scope;
  }

  protected override challengeParams(): Array<[string, string]> {
    return [['scope', this.scope]];
  }
}

/** Options of the DPoP refusals: the scheme defaults to `DPoP`; `algs` becomes the RFC 9449 7.1 parameter. */
export type DpopErrorOptions = TetherErrorOptions & { algs?: readonly string[] };

function dpopOptions(options: DpopErrorOptions, headers: Record<string, string> = {}): TetherErrorOptions {
  const { algs, ...rest } = options;
  return {
    ...rest,
    scheme: options.scheme ?? 'DPoP',
    authParams: [...(options.authParams ?? []), ...(algs === undefined || algs.length === 0 ? [] : [['algs', algs.join(' ')] as const])],
    responseHeaders: { ...options.responseHeaders, ...headers },
  };
}

/** 401 `invalid_dpop_proof` (RFC 9449 section 7.1): the DPoP proof is missing, malformed or failed a check of section 4.3. */
export class InvalidDpopProofError extends TetherError {
  static readonly code = 'ERR_INVALID_DPOP_PROOF';
  readonly code = InvalidDpopProofError.code;
  readonly error = 'invalid_dpop_proof' as const;
  readonly statusCode = 401;
  static override [Symbol.hasInstance] = brandCheck(InvalidDpopProofError.code);

  constructor(options: DpopErrorOptions) {
    super(dpopOptions(options));
  }
}

/**
 * 401 `use_dpop_nonce` (RFC 9449 section 9): the proof lacks the server-provided nonce or carries a
 * stale one. `headers` include `dpop-nonce` with the nonce to use.
 */
export class UseDpopNonceError extends TetherError {
  static readonly code = 'ERR_USE_DPOP_NONCE';
  readonly code = UseDpopNonceError.code;
  readonly error = 'use_dpop_nonce' as const;
  readonly statusCode = 401;
  /** The nonce the client must put in its next proof. */
  readonly nonce: string;
  static override [Symbol.hasInstance] = brandCheck(UseDpopNonceError.code);

  constructor(options: DpopErrorOptions & { nonce: string }) {
    const { nonce, ...rest } = options;
    super(dpopOptions(rest, { 'dpop-nonce': nonce }));
    this.nonce = nonce;
  }
}

/**
 * Raised when the TLS exporter cannot be derived: the socket is not a TLS socket, the handshake has
 * not completed, or the negotiated version is not allowed. Local error; the verifier turns it into
 * `invalid_proof`.
 */
export class TlsExporterError extends Error {
  static readonly code = 'ERR_TLS_EXPORTER_UNAVAILABLE';
  readonly code = TlsExporterError.code;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TlsExporterError';
  }
}

/** Raised for invalid configuration passed to a factory; thrown at construction, never per request. */
export class ConfigurationError extends Error {
  static readonly code = 'ERR_TETHER_CONFIGURATION';
  readonly code = ConfigurationError.code;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigurationError';
  }
}
