import { InvalidTokenError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

const RANK = { none: 0, certificate: 1, session: 2 } as const;

/**
 * Step c: a certificate- or session-bound token must be presented with the certificate named by
 * `cnf.x5t#S256`, verified by the TLS stack. Also enforces `minimumBinding`.
 */
export function checkCertificateBinding(ctx: VerificationContext): void {
  // The DPoP scheme has its own binding checks (dpop-binding.ts, dpop-proof.ts).
  if (ctx.scheme === 'dpop') return;
  const { binding } = ctx;
  if (binding.kind === 'dpop' || binding.kind === 'invalid') {
    throw new InvalidTokenError({ reason: 'binding_unsupported', description: 'The access token binding is not supported with the Bearer scheme' });
  }
  if (RANK[binding.kind] < RANK[ctx.options.minimumBinding]) {
    throw new InvalidTokenError({
      reason: 'binding_required',
      description: ctx.options.minimumBinding === 'session' ? 'A TLS-session-bound access token is required' : 'A certificate-bound access token is required',
    });
  }
  if (binding.kind === 'none') return;
  const { connection } = ctx.input;
  if (connection.certificate === undefined) {
    throw new InvalidTokenError({ reason: 'no_client_certificate', description: 'The access token requires a client certificate' });
  }
  if (ctx.options.requireTrustedCertificate && !connection.authorized) {
    throw new InvalidTokenError({ reason: 'untrusted_client_certificate', description: 'The client certificate is not trusted' });
  }
  if (connection.thumbprint !== binding.thumbprint) {
    throw new InvalidTokenError({ reason: 'certificate_mismatch', description: 'The access token is bound to another certificate' });
  }
}
