/**
 * OAuth syntax and constants every package shares, defined once: token-type URNs (RFC 8693
 * section 3), the token exchange grant type, scope syntax (RFC 6749 section 3.3), and the strength
 * order of certificate and session binding (draft section 3).
 */

export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** One scope token: `1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 section 3.3). */
export const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
/** A `scope` value: scope tokens separated by single spaces. */
export const SCOPE_LIST = /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/;

/** How strongly a token is bound to its presenter's TLS connection. */
export type BindingStrength = 'none' | 'certificate' | 'session';

/** The order of binding strengths: session > certificate > none. */
export const BINDING_RANK: Readonly<Record<BindingStrength, number>> = { none: 0, certificate: 1, session: 2 };

/** The strongest of `levels` (`none` for none). */
export function strongestBinding<T extends BindingStrength>(...levels: T[]): T | 'none' {
  return levels.reduce<T | 'none'>((a, b) => (BINDING_RANK[b] > BINDING_RANK[a] ? b : a), 'none');
}
