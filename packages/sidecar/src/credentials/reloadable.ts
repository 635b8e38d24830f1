/**
 * A certificate / key / CA triple that follows its files: reloaded when they are replaced (watch,
 * debounced, with a polling fallback) or when `reload()` is called (SIGHUP). A new triple is used
 * only once it is complete and valid; otherwise the refusal is logged at `warn` and the current
 * one stays in use. Each accepted triple gets the next generation number.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import type { ExternalClientKey } from '@tether/core';
import { FileWatch, fileSignature } from './watch.js';
import {
  CredentialsError,
  validateCredentials,
  type CredentialsMaterial,
  type CredentialsPaths,
  type CredentialsRefusal,
  type ValidatedCredentials,
  type ValidationOptions,
} from './validate.js';

/**
 * One accepted certificate / key / CA triple. Immutable (frozen); a reload makes a new one.
 * `JSON.stringify` and `util.inspect` show only generation, fingerprint and validity.
 */
export interface CredentialsSnapshot extends Readonly<ValidatedCredentials> {
  /** 1 for the triple loaded at start, +1 for each accepted reload. */
  readonly generation: number;
}

/** What a log needs to offer (a pino logger does). */
export interface CredentialsLog {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface FileCredentialsOptions extends ValidationOptions {
  certPath: string;
  /** The key file; with `externalKey`, only a label for logs (the key is not read from a file). */
  keyPath: string;
  /** A key held in a token (`--key pkcs11:...`): never reloaded; the certificate and CA still are. */
  externalKey?: ExternalClientKey;
  caPath?: string;
  log: CredentialsLog;
  /** Quiet time after the last file event before reloading (default 100 ms). */
  debounceMs?: number;
  /** Polling fallback interval (default 10 000 ms; 0 = no polling). */
  pollMs?: number;
  /** Watch the files' directories (default true). With false, only polling and `reload()`. */
  watch?: boolean;
}

export interface PemCredentials {
  cert: string | Buffer;
  key: string | Buffer;
  ca?: string | Buffer;
}

export type ReloadResult =
  | { status: 'changed'; generation: number; fingerprint: string }
  | { status: 'unchanged'; generation: number }
  | ({ status: 'refused'; generation: number } & CredentialsRefusal)
  | { status: 'closed'; generation: number };

export interface CredentialsEvents {
  /** A new triple was accepted (the snapshot, and what triggered the reload). */
  change: [snapshot: CredentialsSnapshot, trigger: string];
  /** A new triple was refused; the current one stays in use. */
  refused: [refusal: CredentialsRefusal & { trigger: string }];
}

type WatchSettings = Pick<FileCredentialsOptions, 'debounceMs' | 'pollMs' | 'watch'> & { initialSignature: string };

type Source = { kind: 'files'; paths: CredentialsPaths; externalKey: ExternalClientKey | undefined } | { kind: 'pem' };

/** The files to follow: certificate, key (unless it lives in a token), CA. */
const filesOf = (paths: CredentialsPaths, externalKey: ExternalClientKey | undefined): string[] => [
  paths.cert,
  ...(externalKey === undefined ? [paths.key] : []),
  ...(paths.ca === undefined ? [] : [paths.ca]),
];

const silentLog: CredentialsLog = { debug() {}, info() {}, warn() {}, error() {} };

function readMaterial(paths: CredentialsPaths, externalKey: ExternalClientKey | undefined): { ok: true; material: CredentialsMaterial } | { ok: false; refusal: CredentialsRefusal } {
  const read = (path: string): Buffer | CredentialsRefusal => {
    try {
      return readFileSync(path);
    } catch (error) {
      return { reason: 'read_failed', path, message: `cannot read the file: ${(error as NodeJS.ErrnoException).code ?? 'error'}` };
    }
  };
  const cert = read(paths.cert);
  if (!Buffer.isBuffer(cert)) return { ok: false, refusal: cert };
  const key = externalKey ?? read(paths.key);
  if (!Buffer.isBuffer(key) && !('tlsKey' in key)) return { ok: false, refusal: key };
  if (paths.ca === undefined) return { ok: true, material: { cert, key } };
  const ca = read(paths.ca);
  if (!Buffer.isBuffer(ca)) return { ok: false, refusal: ca };
  return { ok: true, material: { cert, key, ca } };
}

const sameBytes = (a: Buffer | undefined, b: Buffer | undefined): boolean => (a === undefined || b === undefined ? a === b : a.equals(b));
const sameKey = (a: CredentialsMaterial['key'], b: CredentialsMaterial['key']): boolean => (Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b);

/**
 * Freeze a validated triple as generation `generation`. JSON and util.inspect show only the public
 * facts (a snapshot logged by mistake does not leak the key).
 */
function snapshotOf(value: ValidatedCredentials, generation: number): CredentialsSnapshot {
  const snapshot = { ...value, generation };
  const summary = () => ({ generation, fingerprint: value.fingerprint, notBefore: value.notBefore.toISOString(), notAfter: value.notAfter.toISOString() });
  Object.defineProperty(snapshot, 'toJSON', { value: summary, enumerable: false });
  Object.defineProperty(snapshot, inspect.custom, { value: () => `CredentialsSnapshot ${JSON.stringify(summary())}`, enumerable: false });
  return Object.freeze(snapshot);
}

const toBuffer = (value: string | Buffer): Buffer => (typeof value === 'string' ? Buffer.from(value) : value);

export class ReloadableCredentials extends EventEmitter<CredentialsEvents> {
  readonly #source: Source;
  readonly #options: ValidationOptions;
  readonly #log: CredentialsLog;
  readonly #watch: FileWatch | undefined;
  #current: CredentialsSnapshot;
  #closed = false;

  private constructor(source: Source, initial: ValidatedCredentials, options: ValidationOptions, log: CredentialsLog, watch?: WatchSettings) {
    super();
    this.#source = source;
    this.#options = { requireChain: options.requireChain, notBeforeToleranceMs: options.notBeforeToleranceMs };
    this.#log = log;
    this.#current = snapshotOf(initial, 1);
    if (watch === undefined || source.kind !== 'files') return;
    this.#watch = new FileWatch({
      paths: filesOf(source.paths, source.externalKey),
      debounceMs: watch.debounceMs ?? 100,
      pollMs: watch.pollMs ?? 10_000,
      watch: watch.watch ?? true,
      log,
      initialSignature: watch.initialSignature,
      onChange: (trigger) => this.reload(trigger),
    });
  }

  /**
   * Load from files and follow them. Throws {@link CredentialsError} (a SidecarConfigError) if the
   * files do not hold a valid triple now: at start-up there is nothing to fall back to.
   */
  static fromFiles(options: FileCredentialsOptions): ReloadableCredentials {
    const paths: CredentialsPaths = { cert: options.certPath, key: options.keyPath, ...(options.caPath === undefined ? {} : { ca: options.caPath }) };
    // Taken before reading: files replaced after this point are noticed (by polling at the latest).
    const initialSignature = fileSignature(filesOf(paths, options.externalKey));
    const read = readMaterial(paths, options.externalKey);
    if (!read.ok) throw new CredentialsError(read.refusal);
    const result = validateCredentials(read.material, paths, options);
    if (!result.ok) throw new CredentialsError(result.refusal);
    const credentials = new ReloadableCredentials({ kind: 'files', paths, externalKey: options.externalKey }, result.value, options, options.log, { ...options, initialSignature });
    options.log.info({ generation: 1, fingerprint: result.value.fingerprint, notAfter: result.value.notAfter.toISOString() }, 'certificate loaded');
    return credentials;
  }

  /** Fixed in-memory PEM (validated the same way; never reloaded). Throws {@link CredentialsError}. */
  static fromPem(pem: PemCredentials, options: ValidationOptions & { log?: CredentialsLog } = {}): ReloadableCredentials {
    const material: CredentialsMaterial = { cert: toBuffer(pem.cert), key: toBuffer(pem.key), ...(pem.ca === undefined ? {} : { ca: toBuffer(pem.ca) }) };
    const paths: CredentialsPaths = { cert: '(cert)', key: '(key)', ca: '(ca)' };
    const result = validateCredentials(material, paths, options);
    if (!result.ok) throw new CredentialsError(result.refusal);
    return new ReloadableCredentials({ kind: 'pem' }, result.value, options, options.log ?? silentLog);
  }

  /** The triple in use. Take it once per new connection; do not cache it across connections. */
  current(): CredentialsSnapshot {
    return this.#current;
  }

  get generation(): number {
    return this.#current.generation;
  }

  /** True when created from files (reloads possible). */
  get reloadable(): boolean {
    return this.#source.kind === 'files';
  }

  /**
   * Read the files now and switch to them if they hold a complete, valid triple that differs from
   * the current one. Never throws; the result says what happened. `trigger` is logged (e.g.
   * `'SIGHUP'`).
   */
  reload(trigger = 'manual'): ReloadResult {
    const generation = this.#current.generation;
    if (this.#closed) return { status: 'closed', generation };
    if (this.#source.kind !== 'files') return { status: 'unchanged', generation };
    this.#watch?.remember();
    const read = readMaterial(this.#source.paths, this.#source.externalKey);
    if (!read.ok) return this.#refuse(read.refusal, trigger);
    const current = this.#current;
    const { material } = read;
    if (material.cert.equals(current.cert) && sameKey(material.key, current.key) && sameBytes(material.ca, current.ca)) {
      this.#log.debug({ trigger, generation }, 'certificate files unchanged');
      return { status: 'unchanged', generation };
    }
    const result = validateCredentials(material, this.#source.paths, this.#options);
    if (!result.ok) return this.#refuse(result.refusal, trigger);
    const next = snapshotOf(result.value, generation + 1);
    this.#current = next;
    this.#log.info(
      { trigger, generation: next.generation, fingerprint: next.fingerprint, previousFingerprint: current.fingerprint, notAfter: next.notAfter.toISOString() },
      'certificate reloaded; new connections use it',
    );
    this.#emitSafely('change', next, trigger);
    return { status: 'changed', generation: next.generation, fingerprint: next.fingerprint };
  }

  /** Stop watching and polling (clears every watcher and timer). Later reloads answer `closed`. */
  close(): void {
    this.#closed = true;
    this.#watch?.close();
  }

  #refuse(refusal: CredentialsRefusal, trigger: string): ReloadResult {
    this.#log.warn(
      { trigger, reason: refusal.reason, path: refusal.path, detail: refusal.message, generation: this.#current.generation },
      'certificate reload refused; the current certificate stays in use',
    );
    this.#emitSafely('refused', { ...refusal, trigger });
    return { status: 'refused', generation: this.#current.generation, ...refusal };
  }

  /** Listeners run inside watcher and signal callbacks: one that throws is logged, not propagated. */
  #emitSafely<K extends keyof CredentialsEvents>(event: K, ...args: CredentialsEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: CredentialsEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.#log.error({ event, err: error instanceof Error ? error.message : String(error) }, 'credentials listener failed');
    }
  }
}
