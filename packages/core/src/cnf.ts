import { decodeBase64url } from './encoding.js';
import { EXPORTER_LABEL } from './exporter.js';
import { certificateThumbprint, type CertificateInput } from './thumbprint.js';

/** The `cnf` members tether understands (RFC 7800, RFC 8705, RFC 9449, draft section 2.4). */
export interface Confirmation {
  'x5t#S256'?: string;
  tls_exp?: string;
  jkt?: string;
  [member: string]: unknown;
}

/** `cnf` for a TLS-session-bound token: certificate thumbprint plus the exporter label. */
export function sessionBoundConfirmation(certificate: CertificateInput): Confirmation {
  return { 'x5t#S256': certificateThumbprint(certificate), tls_exp: EXPORTER_LABEL };
}

/** `cnf` for an RFC 8705 certificate-bound token. */
export function certificateBoundConfirmation(certificate: CertificateInput): Confirmation {
  return { 'x5t#S256': certificateThumbprint(certificate) };
}

/** What a verifier must enforce for a token, derived from its `cnf`. */
export type BindingRequirement =
  | { kind: 'none' }
  | { kind: 'certificate'; thumbprint: string }
  | { kind: 'session'; thumbprint: string }
  | { kind: 'dpop'; jkt: string }
  | { kind: 'invalid'; reason: string };

/** A SHA-256 thumbprint (`x5t#S256`, `jkt`): canonical base64url of 32 bytes. The one syntax rule for thumbprints. */
export function isThumbprint(value: unknown): value is string {
  return typeof value === 'string' && decodeBase64url(value)?.length === 32;
}

/**
 * Classify a token's `cnf` claim. Fails closed: a `cnf` that is present but not understood, a
 * `tls_exp` naming another exporter label, `tls_exp` without `x5t#S256`, or a mix of binding
 * methods whose combination is undefined (`jkt` with `x5t#S256`/`tls_exp`) yields `invalid`.
 */
export function bindingRequirement(cnf: unknown): BindingRequirement {
  if (cnf === undefined) return { kind: 'none' };
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return { kind: 'invalid', reason: 'cnf is not an object' };
  const c = cnf as Confirmation;
  const hasX5t = 'x5t#S256' in c;
  const hasTlsExp = 'tls_exp' in c;
  const hasJkt = 'jkt' in c;
  if (hasJkt && (hasX5t || hasTlsExp)) return { kind: 'invalid', reason: 'cnf mixes jkt with certificate binding' };
  if (hasJkt) return isThumbprint(c.jkt) ? { kind: 'dpop', jkt: c.jkt } : { kind: 'invalid', reason: 'cnf.jkt malformed' };
  if (hasTlsExp) {
    if (c.tls_exp !== EXPORTER_LABEL) return { kind: 'invalid', reason: 'cnf.tls_exp names an unknown exporter label' };
    if (!isThumbprint(c['x5t#S256'])) return { kind: 'invalid', reason: 'cnf.tls_exp without a valid x5t#S256' };
    return { kind: 'session', thumbprint: c['x5t#S256'] };
  }
  if (hasX5t) {
    return isThumbprint(c['x5t#S256'])
      ? { kind: 'certificate', thumbprint: c['x5t#S256'] }
      : { kind: 'invalid', reason: 'cnf.x5t#S256 malformed' };
  }
  return { kind: 'invalid', reason: 'cnf carries no confirmation method tether understands' };
}
