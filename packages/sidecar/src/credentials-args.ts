/**
 * `--cert`, `--key` and `--ca` of `tether egress` / `tether ingress`: checked with the other
 * arguments (a bad pair is a configuration error, exit status 2, one line on stderr), then, when
 * the sidecar starts, followed as {@link ReloadableCredentials} (reloaded when the files are
 * replaced and on SIGHUP).
 *
 * The CA is the *peers'* CA (upstream servers for the egress, clients for the ingress), which need
 * not have issued our own certificate, so the chain to it is not required.
 */
import { readConfigFile, SidecarConfigError } from './config.js';
import { CredentialsError, onSighup, ReloadableCredentials, validateCredentials, type CredentialsLog } from './credentials/index.js';

export interface CredentialsArgs {
  cert?: string | undefined;
  key?: string | undefined;
  ca?: string | undefined;
}

/** The files, checked once. */
export interface CredentialFiles {
  certPath: string;
  keyPath: string;
  caPath: string | undefined;
  /** Their contents when they were checked. */
  pem: { cert: string; key: string; ca?: string };
}

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
export function checkCredentialFiles(values: CredentialsArgs, options: { caRequired: boolean }): CredentialFiles {
  const certPath = required(values.cert, '--cert');
  const keyPath = required(values.key, '--key');
  const caPath = options.caRequired ? required(values.ca, '--ca') : values.ca;
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

/** Follow the checked files from now on (they are read again: they may have changed since). */
export function followCredentialFiles(files: CredentialFiles, log: CredentialsLog): ReloadableCredentials {
  try {
    return ReloadableCredentials.fromFiles({ certPath: files.certPath, keyPath: files.keyPath, ...(files.caPath === undefined ? {} : { caPath: files.caPath }), requireChain: false, log });
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
