import { parseAuthorization } from '../../challenge.js';
import { AuthenticationRequiredError, InvalidRequestError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/**
 * Request shape: exactly one `Authorization: Bearer <token>` and at most one Session-Binding-Proof.
 * Duplicates are `invalid_request` (NOTES decision 3); a missing or non-Bearer credential gets a
 * bare challenge (RFC 6750 section 3.1).
 *
 * With DPoP enabled, `Authorization: DPoP <token>` is accepted too (RFC 9449 section 7.1): at most
 * one `DPoP` field (4.3 check 1; duplicates are `invalid_request`), and no Session-Binding-Proof
 * alongside it (two proof-of-possession mechanisms on one request are ambiguous: `invalid_request`).
 * Bearer requests ignore `DPoP` fields.
 */
export function parseCredentials(ctx: VerificationContext): void {
  const { authorization, sessionBindingProof } = ctx.input;
  if (authorization.length > 1) {
    throw new InvalidRequestError({ reason: 'duplicate_authorization', description: 'Multiple Authorization header fields' });
  }
  if (sessionBindingProof.length > 1 || (sessionBindingProof[0] ?? '').includes(',')) {
    throw new InvalidRequestError({ reason: 'duplicate_proof', description: 'Multiple Session-Binding-Proof header fields' });
  }
  const header = authorization[0];
  if (header === undefined || header.trim() === '') {
    throw new AuthenticationRequiredError({ reason: 'no_token', description: 'An access token is required' });
  }
  const credentials = parseAuthorization(header);
  if (credentials === undefined) {
    throw new InvalidRequestError({ reason: 'malformed_authorization', description: 'Malformed Authorization header' });
  }
  if (credentials.scheme === 'dpop' && ctx.options.dpop.enabled) {
    ctx.scheme = 'dpop';
    const dpop = ctx.input.dpop ?? [];
    if (dpop.length > 1 || (dpop[0] ?? '').includes(',')) {
      throw new InvalidRequestError({ reason: 'duplicate_dpop', description: 'Multiple DPoP header fields' });
    }
    if (sessionBindingProof.some((p) => p.trim() !== '')) {
      throw new InvalidRequestError({ reason: 'dpop_with_session_proof', description: 'DPoP and Session-Binding-Proof used together' });
    }
    ctx.token = credentials.token;
    const proof = dpop[0]?.trim();
    ctx.dpopProof = proof === '' ? undefined : proof;
    return;
  }
  if (credentials.scheme !== 'bearer') {
    throw new AuthenticationRequiredError({ reason: 'unsupported_scheme', description: 'Bearer credentials are required' });
  }
  ctx.token = credentials.token;
  const proof = sessionBindingProof[0]?.trim();
  ctx.proof = proof === '' ? undefined : proof;
}
