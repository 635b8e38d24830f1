/**
 * `--cert`, `--key` and `--ca` of `tether egress` / `tether ingress`: checked with the other
 * arguments (a bad pair is a configuration error, exit status 2, one line on stderr), then, when
 * the sidecar starts, followed as {@link ReloadableCredentials} (reloaded when the files are
 * replaced and on SIGHUP).
 *
 * The CA is the *peers'* CA (upstream servers for the egress, clients for the ingress), which need
 * not have issued our own certificate, so the chain to it is not required.
 */
import { X509Certificate } from 'node:crypto';
import { isPkcs11Uri, openClientKey, pkcs11OptionsFromFlags, type ExternalClientKey, type Pkcs11KeyOptions } from '@tether/core';
import { readConfigFile, SidecarConfigError } from './config.js';
import { CredentialsError, onSighup, ReloadableCredentials, validateCredentials, type CredentialsLog } from './credentials/index.js';

export interface CredentialsArgs {
  cert?: string | undefined;
  key?: string | undefined;
  ca?: string | undefined;
  'pkcs11-module'?: string | undefined;
  'pkcs11-pin-file'?: string | undefined;
}

/** The files, checked once. */
export interface CredentialFiles {
  certPath: string;
  /** The key file, or `(pkcs11 key)` for a token-held key (never the URI: it may hold a PIN). */
  keyPath: string;
  caPath: string | undefined;
  /** Their contents when they were checked (`key` is empty for a token-held key). */
  pem: { cert: string; key: string; ca?: string };
  /** `--key pkcs11:...`: opened by {@link openCredentialKey} when the sidecar starts. */
  pkcs11?: { uri: string; options: Pkcs11KeyOptions };
}

const PKCS11_KEY_LABEL = '(pkcs11 key)';

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new SidecarConfigError(`${flag} is required`);
  return value;
}

/** A refusal as a configuration error naming the flag of the file concerned. */
function flagged(files: Pick<CredentialFiles, 'certPath' | 'keyPath' | 'caPath'>, error: CredentialsError): SidecarConfigError {
  const flag = error.path === files.keyPath ? '--key' : error.path === files.caPath ? '--ca' : '--cert';
  return new SidecarConfigError(`${flag} ${error.message}`, { cause: error });
}

/**
 * Read and check the files the flags name (parse, key belongs to the certificate, valid now) without
 * following them yet. `caRequired`: the ingress verifies clients with `--ca`.
 */
export function checkCredentialFiles(values: CredentialsArgs, options: { caRequired: boolean; pkcs11?: boolean }): CredentialFiles {
  const certPath = required(values.cert, '--cert');
  const keyPath = required(values.key, '--key');
  const caPath = options.caRequired ? required(values.ca, '--ca') : values.ca;
  if (isPkcs11Uri(keyPath)) {
    if (options.pkcs11 !== true) throw new SidecarConfigError('--key pkcs11:... is supported by tether egress only');
    return checkPkcs11Credentials(values, certPath, keyPath, caPath);
  }
  if (values['pkcs11-module'] !== undefined || values['pkcs11-pin-file'] !== undefined) throw new SidecarConfigError('--pkcs11-module and --pkcs11-pin-file need --key pkcs11:...');
  const pem = {
    cert: readConfigFile(certPath, '--cert'),
    key: readConfigFile(keyPath, '--key'),
    ...(caPath === undefined ? {} : { ca: readConfigFile(caPath, '--ca') }),
  };
  const material = { cert: Buffer.from(pem.cert), key: Buffer.from(pem.key), ...(pem.ca === undefined ? {} : { ca: Buffer.from(pem.ca) }) };
  const result = validateCredentials(material, { cert: certPath, key: keyPath, ...(caPath === undefined ? {} : { ca: caPath }) }, { requireChain: false });
  if (!result.ok) throw flagged({ certPath, keyPath, caPath }, new CredentialsError(result.refusal));
  return { certPath, keyPath, caPath, pem };
}

/** A certificate (parsed now) and the URI of its token-held key (opened when the sidecar starts). */
function checkPkcs11Credentials(values: CredentialsArgs, certPath: string, uri: string, caPath: string | undefined): CredentialFiles {
  const cert = readConfigFile(certPath, '--cert');
  try {
    new X509Certificate(cert);
  } catch {
    throw new SidecarConfigError(`--cert ${certPath}: no PEM certificate found (cert_invalid)`);
  }
  const pem = { cert, key: '', ...(caPath === undefined ? {} : { ca: readConfigFile(caPath, '--ca') }) };
  return { certPath, keyPath: PKCS11_KEY_LABEL, caPath, pem, pkcs11: { uri, options: pkcs11OptionsFromFlags(values) } };
}

/**
 * Open the token-held key of `--key pkcs11:...` (undefined for a key file), checked against the
 * certificate. Its failures (URI, module, PIN, key) are configuration errors naming `--key`.
 */
export async function openCredentialKey(files: CredentialFiles): Promise<ExternalClientKey | undefined> {
  if (files.pkcs11 === undefined) return undefined;
  try {
    return (await openClientKey(files.pkcs11.uri, files.pem.cert, files.pkcs11.options)).key as ExternalClientKey;
  } catch (cause) {
    throw new SidecarConfigError(`--key ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** Follow the checked files from now on (they are read again: they may have changed since). */
export function followCredentialFiles(files: CredentialFiles, log: CredentialsLog, externalKey?: ExternalClientKey): ReloadableCredentials {
  try {
    return ReloadableCredentials.fromFiles({
      certPath: files.certPath,
      keyPath: files.keyPath,
      ...(files.caPath === undefined ? {} : { caPath: files.caPath }),
      ...(externalKey === undefined ? {} : { externalKey }),
      requireChain: false,
      log,
    });
  } catch (error) {
    throw error instanceof CredentialsError ? flagged(files, error) : error;
  }
}

/**
 * Reload `credentials` on every SIGHUP until the returned function is called (SIGHUP then no
 * longer terminates the process). The reload logs its own outcome and never throws.
 */
export function reloadOnSighup(credentials: ReloadableCredentials): () => void {
  return onSighup(() => void credentials.reload('SIGHUP'));
}
