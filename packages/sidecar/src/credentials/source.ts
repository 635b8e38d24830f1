/**
 * Where a sidecar takes its certificate from: a {@link ReloadableCredentials} (files, followed and
 * reloaded) or fixed PEM given to `startEgress` / `startIngress` (parsed once, never reloaded).
 * Either way the sidecar asks `current()` when it opens or accepts a connection and hears about
 * accepted reloads through `subscribe`.
 */
import { X509Certificate } from 'node:crypto';
import type { ExternalClientKey } from '@tether/core';
import { SidecarConfigError } from '../config.js';
import type { ReloadableCredentials } from './reloadable.js';

type Pem = string | Buffer;

/** The certificate material in use (a {@link CredentialsSnapshot} is one). */
export interface ActiveCredentials {
  /** 1 at start, +1 for each accepted reload. */
  readonly generation: number;
  readonly cert: Pem;
  /** PEM, or a key held in a token (`--key pkcs11:...`). */
  readonly key: Pem | ExternalClientKey;
  readonly ca?: Pem | Pem[] | undefined;
  /** The leaf certificate. */
  readonly certificate: X509Certificate;
  /** SHA-256 fingerprint of the leaf (`X509Certificate.fingerprint256`). */
  readonly fingerprint: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** What a sidecar reports about its certificate in use (no key material). */
export interface CertificateInUse {
  /** 1 at start, +1 for each accepted reload. */
  generation: number;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

export function certificateInUse(credentials: ActiveCredentials): CertificateInUse {
  return { generation: credentials.generation, fingerprint: credentials.fingerprint, notBefore: credentials.notBefore, notAfter: credentials.notAfter };
}

export interface CredentialsSource {
  /** True when the material can change (it comes from files). */
  readonly reloadable: boolean;
  current(): ActiveCredentials;
  /** Run `listener` after each accepted reload; returns the function that removes it (idempotent). */
  subscribe(listener: (credentials: ActiveCredentials, trigger: string) => void): () => void;
}

/** A source that follows `credentials` (the caller keeps owning it: closing it is the caller's job). */
export function reloadableSource(credentials: ReloadableCredentials): CredentialsSource {
  return {
    reloadable: credentials.reloadable,
    current: () => credentials.current(),
    subscribe(listener) {
      credentials.on('change', listener);
      return () => credentials.off('change', listener);
    },
  };
}

/**
 * Fixed PEM as given (generation 1 for ever). Only the certificate is parsed here (for its dates
 * and fingerprint); the key is checked where it is used. Throws {@link SidecarConfigError} naming
 * `certOption` when the certificate is missing or does not parse.
 */
export function fixedSource(pem: { cert: unknown; key: Pem; ca?: Pem | Pem[] | undefined }, certOption: string): CredentialsSource {
  const cert = pem.cert;
  if (typeof cert !== 'string' && !Buffer.isBuffer(cert)) throw new SidecarConfigError(`${certOption} is required (PEM)`);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (cause) {
    throw new SidecarConfigError(`${certOption} is not a PEM certificate`, { cause });
  }
  const current: ActiveCredentials = Object.freeze({
    generation: 1,
    cert,
    key: pem.key,
    ca: pem.ca,
    certificate,
    fingerprint: certificate.fingerprint256,
    notBefore: new Date(certificate.validFrom),
    notAfter: new Date(certificate.validTo),
  });
  return { reloadable: false, current: () => current, subscribe: () => () => undefined };
}

/** Readiness of a certificate now: `undefined` when within its validity, else the reason. */
export function certificateUnusable(credentials: ActiveCredentials, now = Date.now()): 'certificate_not_yet_valid' | 'certificate_expired' | undefined {
  if (now < credentials.notBefore.getTime()) return 'certificate_not_yet_valid';
  if (now >= credentials.notAfter.getTime()) return 'certificate_expired';
  return undefined;
}
