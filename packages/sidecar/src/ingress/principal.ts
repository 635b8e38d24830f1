/**
 * The one header the application behind the ingress trusts: `X-Tether-Principal`, base64url JSON
 * of the verified principal (without the raw claims). Client-supplied copies are removed before
 * forwarding (headers.ts).
 */
import type { VerifiedPrincipal } from '@tether/core';

export const PRINCIPAL_HEADER = 'x-tether-principal';

/** What `X-Tether-Principal` carries. */
export type ForwardedPrincipal = Pick<VerifiedPrincipal, 'sub' | 'client_id' | 'scope' | 'act' | 'cnf' | 'binding'>;

/** The `X-Tether-Principal` value: base64url JSON of the verified principal (without the raw claims). */
export function encodePrincipal(p: VerifiedPrincipal): string {
  const forwarded: ForwardedPrincipal = { sub: p.sub, client_id: p.client_id, scope: p.scope, act: p.act, cnf: p.cnf, binding: p.binding };
  return Buffer.from(JSON.stringify(forwarded)).toString('base64url');
}

/** Decode an `X-Tether-Principal` value (for applications behind the ingress). */
export function decodePrincipal(value: string): ForwardedPrincipal {
  return JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as ForwardedPrincipal;
}
