/**
 * The TLS side: OpenSSL's pkcs11 engine (libp11, Debian `libengine-pkcs11-openssl`) loads the key
 * for `tls.createSecureContext({ privateKeyEngine, privateKeyIdentifier })`.
 *
 * - Engine: `enginePath` option, else `TETHER_PKCS11_ENGINE`, else the usual Debian/Ubuntu/Fedora
 *   paths. Node's bundled OpenSSL does not know the system's engine directory; given a path it
 *   first tries it as an engine id, and libp11 prints "bad engine id" to stderr before the fallback
 *   loads it. Setting `OPENSSL_ENGINES` to the engine's directory (only when unset) and naming the
 *   engine `pkcs11` avoids that noise.
 * - Module: libp11 reads `PKCS11_MODULE_PATH` when it loads; it is set to our module (only when
 *   unset; a different value is refused, since the engine would use another module than C_Sign).
 * - PIN: none in the identifier. PKCS#11 login state belongs to the process, and the key's own
 *   session (key.ts) logs in before the engine loads the key, so the engine finds the token logged
 *   in. Passing the PIN on would be worse both ways: libp11 prints the whole identifier to stderr
 *   when a key is not found (a `pin-value` would end up in logs), and it reads a `pin-source` file
 *   with its trailing newline as part of the PIN (measured: "PIN incorrect").
 */
import { existsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Pkcs11KeyError } from './errors.js';
import { encodeUriValue, type Pkcs11Uri } from './uri.js';

const ENGINE_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so',
  '/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so',
  '/usr/lib64/engines-3/pkcs11.so',
  '/usr/lib/engines-3/pkcs11.so',
];

export function resolveEngine(option: string | undefined): string {
  const configured = option ?? process.env.TETHER_PKCS11_ENGINE;
  const path = configured ?? ENGINE_CANDIDATES.find((candidate) => existsSync(candidate));
  if (path === undefined || !existsSync(path)) {
    throw new Pkcs11KeyError(
      'ERR_PKCS11_ENGINE',
      `OpenSSL's pkcs11 engine was not found${path === undefined ? '' : ` at ${path}`} (Debian: apt-get install libengine-pkcs11-openssl; or set TETHER_PKCS11_ENGINE)`,
    );
  }
  const dir = dirname(path);
  if (basename(path) === 'pkcs11.so') {
    process.env.OPENSSL_ENGINES ??= dir;
    if (process.env.OPENSSL_ENGINES === dir) return 'pkcs11';
  }
  return path;
}

/** Point the engine at `modulePath` (see the file comment). */
export function bindEngineModule(modulePath: string): void {
  const current = process.env.PKCS11_MODULE_PATH;
  if (current !== undefined && current !== '' && current !== modulePath) {
    throw new Pkcs11KeyError('ERR_PKCS11_MODULE', `PKCS11_MODULE_PATH names another module (${current}); the TLS engine would not use ${modulePath}`);
  }
  process.env.PKCS11_MODULE_PATH = modulePath;
}

/** The URI the engine loads the key by: the same token and object, type=private, no PIN. */
export function engineKeyUri(uri: Pkcs11Uri): string {
  const parts: string[] = [];
  if (uri.token !== undefined) parts.push(`token=${encodeUriValue(uri.token)}`);
  if (uri.manufacturer !== undefined) parts.push(`manufacturer=${encodeUriValue(uri.manufacturer)}`);
  if (uri.model !== undefined) parts.push(`model=${encodeUriValue(uri.model)}`);
  if (uri.serial !== undefined) parts.push(`serial=${encodeUriValue(uri.serial)}`);
  if (uri.object !== undefined) parts.push(`object=${encodeUriValue(uri.object)}`);
  if (uri.id !== undefined) parts.push(`id=${encodeUriValue(uri.id)}`);
  parts.push('type=private');
  return `pkcs11:${parts.join(';')}`;
}
