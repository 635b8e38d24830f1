import type { KeyObject } from 'node:crypto';
import { ConfigurationError } from '../errors.js';
import type { JwsSigner } from '../proof/signer.js';

/**
 * A client private key that never enters this process: the TLS handshake signs with it through an
 * OpenSSL engine (`tlsKey`), Session-Binding Proofs through {@link JwsSigner.sign}. `@tether/pkcs11`
 * makes one from a `pkcs11:` URI.
 */
export interface ExternalClientKey extends JwsSigner {
  /** The certificate's public key, checked when the key was opened (a probe signature it verified). */
  readonly publicKey: KeyObject;
  /** `tls.createSecureContext` options that put the key in the handshake (instead of `key`). */
  readonly tlsKey: { readonly privateKeyEngine: string; readonly privateKeyIdentifier: string };
  /** Release the key (token sessions). Idempotent. */
  close(): Promise<void>;
}

/** A client key: PEM (in memory), a `pkcs11:` URI (RFC 7512), or a key already opened. */
export type ClientKeyInput = string | Buffer | ExternalClientKey;

/** Where a `pkcs11:` key is found; see `@tether/pkcs11`. */
export interface Pkcs11KeyOptions {
  /** PKCS#11 module (shared library). Default: the URI's `module-path`, then `PKCS11_MODULE_PATH`. */
  modulePath?: string;
  /** File holding the user PIN, when the URI has neither `pin-source` nor `pin-value`. */
  pinFile?: string;
  /** Deadline of one token signature, ms (default 5000). */
  signTimeoutMs?: number;
}

/** What `@tether/pkcs11` exports for this loader (kept here so core does not depend on it). */
interface Pkcs11Loader {
  openPkcs11Key(options: Pkcs11KeyOptions & { uri: string; certificate: string | Buffer }): Promise<ExternalClientKey>;
}

const PKCS11_PACKAGE = '@tether/pkcs11';

export function isPkcs11Uri(key: unknown): key is string {
  return typeof key === 'string' && /^pkcs11:/i.test(key);
}

export function isExternalClientKey(key: unknown): key is ExternalClientKey {
  return typeof key === 'object' && key !== null && !Buffer.isBuffer(key) && 'tlsKey' in key && typeof (key as ExternalClientKey).sign === 'function';
}

/**
 * Resolve `key` for `cert`: a `pkcs11:` URI is opened through `@tether/pkcs11`, loaded only then
 * (a PEM-only install never pulls the native PKCS#11 binding); anything else is returned as is.
 * `owned` says whether the caller opened the key and so must close it.
 * @throws {ConfigurationError} when the URI is given but `@tether/pkcs11` is not installed.
 */
export async function openClientKey(
  key: ClientKeyInput,
  cert: string | Buffer,
  options: Pkcs11KeyOptions = {},
): Promise<{ key: string | Buffer | ExternalClientKey; owned: boolean }> {
  if (!isPkcs11Uri(key)) return { key, owned: false };
  let loader: Pkcs11Loader;
  try {
    loader = (await import(PKCS11_PACKAGE)) as Pkcs11Loader;
  } catch (cause) {
    throw new ConfigurationError(`a pkcs11: key needs the ${PKCS11_PACKAGE} package (npm install ${PKCS11_PACKAGE})`, { cause });
  }
  return { key: await loader.openPkcs11Key({ ...options, uri: key, certificate: cert }), owned: true };
}

/**
 * `create()` of a client whose key may be a `pkcs11:` URI: open the key, `build` the client with it,
 * and close the opened key again if `build` throws. `ownedKey` is the key the client must close.
 */
export async function buildWithClientKey<T>(
  options: { key: ClientKeyInput; cert: string | Buffer; pkcs11?: Pkcs11KeyOptions | undefined },
  build: (key: string | Buffer | ExternalClientKey) => T,
): Promise<{ built: T; ownedKey: ExternalClientKey | undefined }> {
  const opened = await openClientKey(options.key, options.cert, options.pkcs11);
  const ownedKey = opened.owned ? (opened.key as ExternalClientKey) : undefined;
  try {
    return { built: build(opened.key), ownedKey };
  } catch (error) {
    await ownedKey?.close();
    throw error;
  }
}

/** The PKCS#11 options from the command-line flags `--pkcs11-module` and `--pkcs11-pin-file`. */
export function pkcs11OptionsFromFlags(values: { 'pkcs11-module'?: string | undefined; 'pkcs11-pin-file'?: string | undefined }): Pkcs11KeyOptions {
  return {
    ...(values['pkcs11-module'] === undefined ? {} : { modulePath: values['pkcs11-module'] }),
    ...(values['pkcs11-pin-file'] === undefined ? {} : { pinFile: values['pkcs11-pin-file'] }),
  };
}

/** The TLS options that present `key` in a handshake: `key` (PEM) or the engine key. */
export function tlsKeyOptions(key: string | Buffer | ExternalClientKey): { key: string | Buffer } | ExternalClientKey['tlsKey'] {
  if (isPkcs11Uri(key)) throw new ConfigurationError('a pkcs11: key must be opened first (SessionBoundClient.create, openClientKey)');
  return isExternalClientKey(key) ? { privateKeyEngine: key.tlsKey.privateKeyEngine, privateKeyIdentifier: key.tlsKey.privateKeyIdentifier } : { key };
}
