/**
 * Checks a certificate / private key / CA triple before it is used: every certificate parses
 * (node:crypto X509Certificate; no ASN.1 by hand), the key parses and is the certificate's key, the
 * certificate is valid now, and it chains to the CA when one is given. Failures carry a stable
 * `reason` and the file they concern, never key material.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isExternalClientKey, type ExternalClientKey } from '@tether/core';
import { SidecarConfigError } from '../config.js';

/** Why a certificate / key pair was refused (stable values, used in logs and results). */
export type CredentialsRefusalReason =
  | 'read_failed'
  | 'cert_invalid'
  | 'key_invalid'
  | 'key_mismatch'
  | 'cert_not_yet_valid'
  | 'cert_expired'
  | 'ca_invalid'
  | 'chain_invalid';

/** A refused load: the reason, the file concerned and a short text without key material. */
export interface CredentialsRefusal {
  reason: CredentialsRefusalReason;
  path: string;
  message: string;
}

/**
 * A refused load at start-up (a configuration error: the commands exit with status 2). Its message
 * names the file and the reason, never key material.
 */
export class CredentialsError extends SidecarConfigError {
  readonly reason: CredentialsRefusalReason;
  readonly path: string;
  constructor(refusal: CredentialsRefusal) {
    super(`${refusal.path}: ${refusal.message} (${refusal.reason})`);
    this.name = 'CredentialsError';
    this.reason = refusal.reason;
    this.path = refusal.path;
  }
}

/** The raw file contents; the key may instead be held in a token (`--key pkcs11:...`). */
export interface CredentialsMaterial {
  cert: Buffer;
  key: Buffer | ExternalClientKey;
  ca?: Buffer;
}

/** Where each part came from (file paths, or labels for in-memory PEM). */
export interface CredentialsPaths {
  cert: string;
  key: string;
  ca?: string;
}

export interface ValidationOptions {
  /** Require the certificate to chain to the CA (when a CA is given). Default true. */
  requireChain?: boolean;
  /** A certificate whose notBefore is at most this far in the future is accepted (clock skew). Default 60 000. */
  notBeforeToleranceMs?: number;
}

/** A validated pair, before it is given a generation. */
export interface ValidatedCredentials {
  /** PEM certificate file as read (leaf first, then any intermediates). */
  cert: Buffer;
  /** PEM private key file as read (for `tls.createSecureContext`), or the token-held key. */
  key: Buffer | ExternalClientKey;
  /** PEM CA file as read. */
  ca?: Buffer;
  /** The parsed private key (e.g. for signing proofs), or the token-held key. */
  privateKey: KeyObject | ExternalClientKey;
  /** The parsed leaf certificate. */
  certificate: X509Certificate;
  /** Intermediates that followed the leaf in the certificate file. */
  intermediates: readonly X509Certificate[];
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 fingerprint of the leaf certificate, colon-separated hex (`X509Certificate.fingerprint256`). */
  fingerprint: string;
}

export type ValidationResult = { ok: true; value: ValidatedCredentials } | { ok: false; refusal: CredentialsRefusal };

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const CERT_BEGIN = /-----BEGIN CERTIFICATE-----/g;
const MAX_CHAIN = 8;

class Refused extends Error {
  constructor(readonly refusal: CredentialsRefusal) {
    super(refusal.message);
  }
}

const refuse = (reason: CredentialsRefusalReason, path: string, message: string): never => {
  throw new Refused({ reason, path, message });
};

/**
 * Every PEM certificate in `pem`. A block without its END line (a file cut short while it was
 * written) refuses the whole file rather than dropping the incomplete certificate.
 */
function parseCertificates(pem: Buffer, path: string, reason: 'cert_invalid' | 'ca_invalid'): X509Certificate[] {
  const text = pem.toString('latin1');
  const blocks = text.match(CERT_BLOCK) ?? [];
  const begins = text.match(CERT_BEGIN)?.length ?? 0;
  if (blocks.length === 0) return refuse(reason, path, 'no PEM certificate found');
  if (blocks.length !== begins) return refuse(reason, path, 'incomplete PEM certificate (file truncated?)');
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch {
      return refuse(reason, path, 'a certificate does not parse');
    }
  });
}

function parsePrivateKey(pem: Buffer, path: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    // The parser's message is not passed on: it is not needed and must never echo key bytes.
    return refuse('key_invalid', path, 'the private key does not parse (an unencrypted PEM key is expected)');
  }
}

const dateOf = (text: string, path: string): Date => {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? refuse('cert_invalid', path, 'unreadable validity dates') : date;
};

function checkValidity(cert: X509Certificate, path: string, now: number, toleranceMs: number): { notBefore: Date; notAfter: Date } {
  const notBefore = dateOf(cert.validFrom, path);
  const notAfter = dateOf(cert.validTo, path);
  if (notBefore.getTime() - toleranceMs > now) refuse('cert_not_yet_valid', path, `certificate not valid before ${notBefore.toISOString()}`);
  if (notAfter.getTime() < now) refuse('cert_expired', path, `certificate expired at ${notAfter.toISOString()}`);
  return { notBefore, notAfter };
}

const issuedBy = (subject: X509Certificate, issuer: X509Certificate): boolean => {
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
};

/**
 * The leaf reaches one of `anchors`, directly or through `intermediates` (each a CA, each
 * verified with its issuer's public key). A sanity check before use; the TLS stack still does the
 * full path validation at every handshake.
 */
function checkChain(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Certificate[], path: string, now: number): void {
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (anchors.some((anchor) => issuedBy(current, anchor))) return;
    const next = intermediates.find((candidate) => candidate !== current && candidate.ca && issuedBy(current, candidate));
    if (next === undefined) break;
    checkValidity(next, path, now, 0);
    current = next;
  }
  refuse('chain_invalid', path, 'the certificate does not chain to the CA');
}

function validateOrThrow(material: CredentialsMaterial, paths: CredentialsPaths, options: ValidationOptions): ValidatedCredentials {
  const now = Date.now();
  const [certificate, ...intermediates] = parseCertificates(material.cert, paths.cert, 'cert_invalid');
  if (certificate === undefined) return refuse('cert_invalid', paths.cert, 'no PEM certificate found');
  const { key } = material;
  const privateKey = isExternalClientKey(key) ? key : parsePrivateKey(key, paths.key);
  let matches: boolean;
  try {
    // A token-held key was checked against the certificate when it was opened: a new certificate must carry that public key.
    matches = isExternalClientKey(privateKey) ? privateKey.publicKey.equals(certificate.publicKey) : certificate.checkPrivateKey(privateKey);
  } catch {
    matches = false;
  }
  if (!matches) refuse('key_mismatch', paths.key, 'the private key does not belong to the certificate');
  const { notBefore, notAfter } = checkValidity(certificate, paths.cert, now, options.notBeforeToleranceMs ?? 60_000);
  if (material.ca !== undefined) {
    const caPath = paths.ca ?? '(ca)';
    const anchors = parseCertificates(material.ca, caPath, 'ca_invalid');
    if (options.requireChain !== false) checkChain(certificate, intermediates, anchors, paths.cert, now);
  }
  return {
    cert: material.cert,
    key: material.key,
    ...(material.ca === undefined ? {} : { ca: material.ca }),
    privateKey,
    certificate,
    intermediates,
    notBefore,
    notAfter,
    fingerprint: certificate.fingerprint256,
  };
}

/** Validate a certificate / key / CA triple; never throws. */
export function validateCredentials(material: CredentialsMaterial, paths: CredentialsPaths, options: ValidationOptions = {}): ValidationResult {
  try {
    return { ok: true, value: validateOrThrow(material, paths, options) };
  } catch (error) {
    if (error instanceof Refused) return { ok: false, refusal: error.refusal };
    return { ok: false, refusal: { reason: 'cert_invalid', path: paths.cert, message: 'the certificate could not be checked' } };
  }
}
