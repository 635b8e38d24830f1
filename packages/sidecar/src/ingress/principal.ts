/**
 * The one header the application behind the ingress trusts: `X-Tether-Principal`, base64url JSON
 * of the verified principal (without the raw claims). Client-supplied copies are removed before
 * forwarding (headers.ts).
 */
import type { VerifiedPrincipal } from '@tether/core';

export const PRINCIPAL_HEADER = 'x-tether-principal';

/** What `X-Tether-Principal` carries. */
export type ForwardedPrincipal = Pick<VerifiedPrincipal, 'sub' | 'client_id' | 'scope' | 'act' | 'cnf' | 'binding'>;

/** An encoded principal and the fields it was encoded from. */
interface Encoded extends ForwardedPrincipal {
  value: string;
}

/**
 * Encodings by the claims object they came from: a token validator that caches (the JWT one does)
 * hands out the same claims object for every request with the same token. A hit is used only when
 * every forwarded field is still the very same value.
 */
const encodings = new WeakMap<object, Encoded>();

function sameFields(e: Encoded, p: VerifiedPrincipal): boolean {
  return e.sub === p.sub && e.client_id === p.client_id && e.scope === p.scope && e.act === p.act && e.cnf === p.cnf && e.binding === p.binding;
}

/** The `X-Tether-Principal` value: base64url JSON of the verified principal (without the raw claims). */
export function encodePrincipal(p: VerifiedPrincipal): string {
  const claims: unknown = p.claims;
  const known = typeof claims === 'object' && claims !== null ? encodings.get(claims) : undefined;
  if (known !== undefined && sameFields(known, p)) return known.value;
  const forwarded: ForwardedPrincipal = { sub: p.sub, client_id: p.client_id, scope: p.scope, act: p.act, cnf: p.cnf, binding: p.binding };
  const value = Buffer.from(JSON.stringify(forwarded)).toString('base64url');
  if (typeof claims === 'object' && claims !== null) encodings.set(claims, { ...forwarded, value });
  return value;
}

/** Decode an `X-Tether-Principal` value (for applications behind the ingress). */
export function decodePrincipal(value: string): ForwardedPrincipal {
  return JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as ForwardedPrincipal;
}
