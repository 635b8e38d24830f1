import { checkBindingRequired } from './checks/binding-required.js';
import { checkCertificateBinding } from './checks/certificate-binding.js';
import { parseCredentials } from './checks/credentials.js';
import { checkDpopBinding } from './checks/dpop-binding.js';
import { checkDpopProof } from './checks/dpop-proof.js';
import { checkMutualTls } from './checks/mutual-tls.js';
import { checkPerRequestClaims } from './checks/per-request-claims.js';
import { checkScope } from './checks/scope.js';
import { checkSessionBindingProof } from './checks/session-proof.js';
import { validateAccessToken } from './checks/token.js';
import type { VerificationContext } from './context.js';

export interface VerificationStep {
  /**
   * Step letter in draft section 3.3 (`-` for checks the draft leaves to the deployment; `dpop`
   * for RFC 9449 checks, which run only for the DPoP scheme; steps c to i are no-ops there).
   */
  step: string;
  name: string;
  run(ctx: VerificationContext): void | Promise<void>;
}

/** Draft section 3.3, steps a to i, in order, on every request; the RFC 9449 checks for `Authorization: DPoP`. */
export const VERIFICATION_STEPS: readonly VerificationStep[] = [
  { step: '-', name: 'credentials', run: parseCredentials },
  { step: 'a', name: 'mutual TLS', run: checkMutualTls },
  { step: 'b', name: 'token validation', run: validateAccessToken },
  { step: 'dpop', name: 'DPoP-bound token (RFC 9449 6, 7.1)', run: checkDpopBinding },
  { step: 'dpop', name: 'DPoP proof and key binding (RFC 9449 4.3, 7.1)', run: checkDpopProof },
  { step: 'c', name: 'certificate binding', run: checkCertificateBinding },
  { step: 'd', name: 'TLS binding required', run: checkBindingRequired },
  { step: 'e-h', name: 'proof signature, exporter, token hash, iat', run: checkSessionBindingProof },
  { step: 'i', name: 'per-request claims', run: checkPerRequestClaims },
  { step: '-', name: 'scope', run: checkScope },
];
