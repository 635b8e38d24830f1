import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isPkcs11Uri, pkcs11OptionsFromFlags } from '@tether/core';
import { readOptionFile } from './args.js';
import { usageError } from './errors.js';

export interface LoadedCertificate {
  pem: Buffer;
  x509: X509Certificate;
}

export interface LoadedKey {
  pem: Buffer;
  key: KeyObject;
}

/** A PEM certificate file; unreadable or unparsable files are usage errors (exit 2). */
export function loadCertificate(path: string, option: string): LoadedCertificate {
  const pem = readOptionFile(path, option);
  try {
    return { pem, x509: new X509Certificate(pem) };
  } catch {
    throw usageError(`${option} ${path} is not a PEM certificate`);
  }
}

/** A PEM private key file (unencrypted). */
export function loadPrivateKey(path: string, option: string): LoadedKey {
  const pem = readOptionFile(path, option);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw usageError(`${option} ${path} is not an unencrypted PEM private key`);
  }
  return { pem, key };
}

/** A certificate and its key; a key that does not belong to the certificate is a usage error. */
export function loadKeyPair(certPath: string, keyPath: string, certOption = '--cert', keyOption = '--key'): { cert: LoadedCertificate; key: LoadedKey } {
  const cert = loadCertificate(certPath, certOption);
  const key = loadPrivateKey(keyPath, keyOption);
  if (!cert.x509.checkPrivateKey(key.key)) throw usageError(`${keyOption} ${keyPath} is not the private key of ${certOption} ${certPath}`);
  return { cert, key };
}

/**
 * `--cert FILE --key FILE|pkcs11:URI`: a PEM pair (checked as by {@link loadKeyPair}), or a
 * certificate and the URI of its token-held key (opened, and checked, by the client).
 */
export function loadClientCredentials(certPath: string, keyArg: string): { cert: LoadedCertificate; key: Buffer | string } {
  if (isPkcs11Uri(keyArg)) return { cert: loadCertificate(certPath, '--cert'), key: keyArg };
  const { cert, key } = loadKeyPair(certPath, keyArg);
  return { cert, key: key.pem };
}

/** Help text for the PKCS#11 options (`tether fetch`, `tether egress`). */
export const PKCS11_HELP = `  --pkcs11-module PATH  PKCS#11 module for a --key pkcs11:... URI (default: the URI's
                        module-path, then the PKCS11_MODULE_PATH environment variable)
  --pkcs11-pin-file FILE
                        file holding the token's user PIN, when the URI has no pin-source
`;

/** `--pkcs11-module` and `--pkcs11-pin-file`. */
export const pkcs11Options = pkcs11OptionsFromFlags;

/** A PEM file of one or more CA certificates. */
export function loadCaBundle(path: string, option = '--ca'): Buffer {
  const pem = readOptionFile(path, option);
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw usageError(`${option} ${path} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      throw usageError(`${option} ${path} holds a certificate that cannot be parsed`);
    }
  }
  return pem;
}

/** The URI subject alternative names of a certificate (e.g. its SPIFFE ID). */
export function uriSans(certificate: X509Certificate): string[] {
  const san = certificate.subjectAltName;
  if (san === undefined) return [];
  return san
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
}
