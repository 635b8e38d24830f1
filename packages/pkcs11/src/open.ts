/**
 * `openPkcs11Key`: from a `pkcs11:` URI and the client certificate to a key that signs proofs
 * (`C_Sign`) and TLS handshakes (OpenSSL engine), checked before it is handed out: module loaded,
 * token found, PIN accepted, exactly one private key, a probe signature that the certificate's
 * public key verifies, and a TLS secure context the engine can build with the key.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { Pkcs11KeyOptions } from '@tether/core';
import { bindEngineModule, engineKeyUri, resolveEngine } from './engine.js';
import { Pkcs11KeyError } from './errors.js';
import { Pkcs11Key } from './key.js';
import { acquireModule, releaseModule, resolveModulePath } from './module.js';
import { resolvePin } from './pin.js';
import { closeQuietly, findPrivateKey, findSlot, openSession } from './token.js';
import { parsePkcs11Uri } from './uri.js';

export interface OpenPkcs11KeyOptions extends Pkcs11KeyOptions {
  /** `pkcs11:token=...;object=...` (RFC 7512). */
  uri: string;
  /** The client certificate (PEM) whose key the URI names. */
  certificate: string | Buffer;
  /** OpenSSL's pkcs11 engine (default: `TETHER_PKCS11_ENGINE`, then the distribution's path). */
  enginePath?: string;
}

const DEFAULT_SIGN_TIMEOUT_MS = 5000;

function certificateOf(pem: string | Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (cause) {
    throw new Pkcs11KeyError('ERR_PKCS11_KEY_MISMATCH', 'the client certificate does not parse', { cause });
  }
}

/** Check that OpenSSL's engine can load the key for a handshake now, not at the first connection. */
function checkEngine(cert: string | Buffer, tlsKey: Pkcs11Key['tlsKey']): void {
  try {
    createSecureContext({ cert, ...tlsKey });
  } catch (cause) {
    // OpenSSL's text is kept as the cause only; the message names neither the identifier nor the PIN.
    throw new Pkcs11KeyError('ERR_PKCS11_ENGINE', `OpenSSL's pkcs11 engine cannot use the key for TLS (${(cause as Error).message.split(':').slice(-1)[0]?.trim() ?? 'error'})`);
  }
}

/** Open the key a `pkcs11:` URI names, for the certificate `certificate`. @throws {Pkcs11KeyError} */
export async function openPkcs11Key(options: OpenPkcs11KeyOptions): Promise<Pkcs11Key> {
  const uri = parsePkcs11Uri(options.uri);
  const certificate = certificateOf(options.certificate);
  const modulePath = resolveModulePath(options.modulePath, uri.modulePath);
  const pin = resolvePin(uri, options.pinFile);
  const privateKeyEngine = resolveEngine(options.enginePath);
  const module = acquireModule(modulePath);
  let session: Buffer | undefined;
  let key: Pkcs11Key | undefined;
  try {
    const slot = findSlot(module.api, uri);
    session = openSession(module, slot, pin);
    const { handle, keyType } = findPrivateKey(module.api, session, uri);
    const tlsKey = { privateKeyEngine, privateKeyIdentifier: engineKeyUri(uri) };
    key = new Pkcs11Key({ module, slot, pin, session, handle, keyType }, certificate, tlsKey, options.signTimeoutMs ?? DEFAULT_SIGN_TIMEOUT_MS);
    await key.probe();
    bindEngineModule(modulePath);
    checkEngine(options.certificate, tlsKey);
    return key;
  } catch (error) {
    if (key !== undefined) await key.close();
    else {
      if (session !== undefined) closeQuietly(module.api, session);
      releaseModule(module);
    }
    throw error;
  }
}
