import { parseAuthorization } from '../../challenge.js';
import { AuthenticationRequiredError, InvalidRequestError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/**
 * Request shape: exactly one `Authorization: Bearer <token>` and at most one Session-Binding-Proof.
 * Duplicates are `invalid_request` (NOTES decision 3); a missing or non-Bearer credential gets a
 * bare challenge (RFC 6750 section 3.1).
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
  if (credentials.scheme !== 'bearer') {
    throw new AuthenticationRequiredError({ reason: 'unsupported_scheme', description: 'Bearer credentials are required' });
  }
  ctx.token = credentials.token;
  const proof = sessionBindingProof[0]?.trim();
  ctx.proof = proof === '' ? undefined : proof;
}
