/**
 * A client key held in a PKCS#11 token: proofs are signed with `C_Sign` on one session of our own,
 * the TLS handshake through OpenSSL's engine (engine.ts) on the same key object.
 *
 * Deadlines: `C_Sign` runs on libuv's thread pool (`C_SignAsync`), raced against `signTimeoutMs`. A
 * module call that never returns fails the proof with `ERR_PKCS11_TIMEOUT` instead of hanging the
 * request; the session it wedged is abandoned (a later signature opens a new one), and the thread
 * stays blocked in the module until the module returns (libuv has 4 such threads by default,
 * `UV_THREADPOOL_SIZE`). Signatures on one session run one at a time (a PKCS#11 session holds one
 * operation), queued in order.
 */
import { randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { signingAlgorithmForKey, verifyJwsSignature, type ExternalClientKey, type ProofAlgorithm } from '@tether/core';
import { ckr, Pkcs11KeyError } from './errors.js';
import { CKK_EC_EDWARDS, MAX_SIGNATURE_BYTES, signStep } from './mechanisms.js';
import { releaseModule, type LoadedModule } from './module.js';
import { closeQuietly, openSession } from './token.js';

export interface TokenKeyHandle {
  module: LoadedModule;
  slot: Buffer;
  pin: string;
  session: Buffer;
  handle: Buffer;
  keyType: number;
}

/** The session is gone (token removed, logged out): the next signature opens a new one. */
const SESSION_LOST = new Set(['CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED', 'CKR_USER_NOT_LOGGED_IN', 'CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT']);

const KEY_TYPES: Record<number, string> = { [pkcs11js.CKK_EC]: 'ec', [CKK_EC_EDWARDS]: 'ed25519', [pkcs11js.CKK_RSA]: 'rsa' };

export class Pkcs11Key implements ExternalClientKey {
  readonly publicKey: KeyObject;
  readonly tlsKey: { readonly privateKeyEngine: string; readonly privateKeyIdentifier: string };
  /** The algorithm the certificate's key signs proofs with (PS256 for RSA unless RS256 is asked for). */
  readonly alg: ProofAlgorithm;
  /** `C_Sign` calls made (the probe at open included). */
  signatures = 0;
  readonly #token: TokenKeyHandle;
  readonly #timeoutMs: number;
  #session: Buffer | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(token: TokenKeyHandle, certificate: X509Certificate, tlsKey: Pkcs11Key['tlsKey'], timeoutMs: number) {
    this.#token = token;
    this.#session = token.session;
    this.#timeoutMs = timeoutMs;
    this.tlsKey = tlsKey;
    this.publicKey = certificate.publicKey;
    const type = KEY_TYPES[token.keyType];
    if (type === undefined || (type === 'ec' ? this.publicKey.asymmetricKeyType !== 'ec' : !this.publicKey.asymmetricKeyType?.startsWith(type))) {
      throw new Pkcs11KeyError('ERR_PKCS11_KEY_MISMATCH', `the token key (type ${type ?? token.keyType}) does not belong to the certificate (${this.publicKey.asymmetricKeyType})`);
    }
    try {
      this.alg = signingAlgorithmForKey(this.publicKey);
    } catch (cause) {
      throw new Pkcs11KeyError('ERR_PKCS11_UNSUPPORTED_KEY', 'the certificate key cannot sign proofs', { cause });
    }
  }

  /**
   * Sign once with the token and verify with the certificate's public key: the key is the
   * certificate's, and the token's signatures come out in JOSE form.
   */
  async probe(): Promise<void> {
    const input = randomBytes(32);
    const signature = await this.sign(this.alg, input);
    if (!verifyJwsSignature(this.alg, this.publicKey, input.toString('latin1'), Buffer.from(signature))) {
      throw new Pkcs11KeyError('ERR_PKCS11_KEY_MISMATCH', 'the token key does not belong to the certificate (a test signature did not verify)');
    }
  }

  /** JOSE signature of `signingInput` with `alg`, by the token. */
  sign(alg: ProofAlgorithm, signingInput: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Pkcs11KeyError('ERR_PKCS11_CLOSED', 'the PKCS#11 key is closed'));
    const step = signStep(alg, signingInput);
    const run = this.#queue.then(() => this.#signNow(step));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Close our session (never the module: see module.ts). Waits for queued signatures, at most their deadline. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    if (this.#session !== undefined) closeQuietly(this.#token.module.api, this.#session);
    this.#session = undefined;
    releaseModule(this.#token.module);
  }

  async #signNow(step: ReturnType<typeof signStep>): Promise<Buffer> {
    const { api } = this.#token.module;
    this.#session ??= openSession(this.#token.module, this.#token.slot, this.#token.pin);
    const session = this.#session;
    this.signatures++;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // The session still has the operation in flight: abandon it, the next signature opens another.
        if (this.#session === session) this.#session = undefined;
        reject(new Pkcs11KeyError('ERR_PKCS11_TIMEOUT', `the PKCS#11 signature took longer than ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
    });
    try {
      api.C_SignInit(session, step.mechanism, this.#token.handle);
      const signature = await Promise.race([api.C_SignAsync(session, step.data, Buffer.alloc(MAX_SIGNATURE_BYTES)), deadline]);
      if (step.length !== undefined && signature.length !== step.length) {
        throw new Pkcs11KeyError('ERR_PKCS11_SIGN', `the token returned a ${signature.length}-byte signature; ${step.length} expected`);
      }
      return Buffer.from(signature);
    } catch (error) {
      if (error instanceof Pkcs11KeyError) throw error;
      const code = ckr(error);
      if (code !== undefined && SESSION_LOST.has(code) && this.#session === session) this.#session = undefined;
      if (code === 'CKR_MECHANISM_INVALID' || code === 'CKR_KEY_TYPE_INCONSISTENT' || code === 'CKR_KEY_FUNCTION_NOT_PERMITTED') {
        throw new Pkcs11KeyError('ERR_PKCS11_UNSUPPORTED_KEY', `the token cannot sign with this key and algorithm (${code})`, { cause: error });
      }
      throw new Pkcs11KeyError('ERR_PKCS11_SIGN', `the PKCS#11 signature failed (${code ?? 'error'})`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

