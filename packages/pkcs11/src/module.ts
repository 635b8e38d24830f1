/**
 * One loaded PKCS#11 module per path per process, shared by every key opened from it and counted.
 *
 * The module is never finalized (`C_Finalize`) while the process runs, even when its last key
 * closes: OpenSSL's pkcs11 engine, which signs the TLS handshakes, loads the same shared library in
 * the same process and so shares its global state. A `C_Finalize` from here invalidates the
 * engine's sessions, and the engine never recovers (measured: the next handshake fails with
 * "Cryptoki not initialized", and after a new `C_Initialize` with "Session handle invalid"). Keys
 * close their own sessions instead; the process's exit releases the module.
 */
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import pkcs11js from 'pkcs11js';
import { ckr, Pkcs11KeyError } from './errors.js';

export interface LoadedModule {
  readonly path: string;
  readonly api: pkcs11js.PKCS11;
  /** Keys currently open on it. */
  users: number;
  /**
   * SHA-256 of the PIN each slot was logged in with (hex slot handle -> digest). PKCS#11 login
   * state is per process: once logged in, `C_Login` answers "already logged in" whatever PIN it is
   * given, so a later key's PIN is compared with this instead.
   */
  readonly logins: Map<string, Buffer>;
}

const modules = new Map<string, LoadedModule>();

/** The module path: option, then the URI's `module-path`, then `PKCS11_MODULE_PATH`. */
export function resolveModulePath(option: string | undefined, fromUri: string | undefined): string {
  const path = option ?? fromUri ?? process.env.PKCS11_MODULE_PATH;
  if (path === undefined || path === '') {
    throw new Pkcs11KeyError('ERR_PKCS11_MODULE', 'no PKCS#11 module: give --pkcs11-module PATH, set PKCS11_MODULE_PATH, or add module-path to the URI');
  }
  if (!isAbsolute(path)) throw new Pkcs11KeyError('ERR_PKCS11_MODULE', `the PKCS#11 module path must be absolute: ${path}`);
  if (!existsSync(path)) throw new Pkcs11KeyError('ERR_PKCS11_MODULE', `PKCS#11 module not found: ${path}`);
  return path;
}

/** Load and initialise the module at `path` (once per process) and count one more user. */
export function acquireModule(path: string): LoadedModule {
  let loaded = modules.get(path);
  if (loaded === undefined) {
    const api = new pkcs11js.PKCS11();
    try {
      api.load(path);
    } catch (cause) {
      throw new Pkcs11KeyError('ERR_PKCS11_MODULE', `cannot load the PKCS#11 module ${path}`, { cause });
    }
    try {
      api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (cause) {
      // The engine may have initialised the library first; that state is shared and fine.
      if (ckr(cause) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
        throw new Pkcs11KeyError('ERR_PKCS11_MODULE', `the PKCS#11 module ${path} failed to initialise (${ckr(cause) ?? 'error'})`, { cause });
      }
    }
    loaded = { path, api, users: 0, logins: new Map() };
    modules.set(path, loaded);
  }
  loaded.users++;
  return loaded;
}

/** One user fewer. The module stays loaded and initialised (see the file comment). */
export function releaseModule(module: LoadedModule): void {
  module.users = Math.max(0, module.users - 1);
}
