/**
 * Persistent state of the authorization server behind the {@link Store} interface: signing keys,
 * revocations, clients registered at run time, seen one-time identifiers (`jti` of client
 * assertions and proofs), and certificate thumbprints clients authenticated with. The embedded
 * {@link FileStore} keeps everything in memory and writes one JSON document atomically (temporary
 * file, fsync, rename, fsync of the directory) before a change is acknowledged. A database-backed
 * store implements the same interface.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JWK } from 'jose';
import type { ClientMetadata, SigningAlgorithm } from './config.js';

/** A signing key as persisted. Times are epoch seconds. */
export interface StoredKey {
  kid: string;
  alg: SigningAlgorithm;
  /** Private JWK (unencrypted at rest; protect the data directory). */
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: number;
  /** `next`: published, not yet signing. `active`: signing. `retired`: published until `publishUntil`. */
  state: 'next' | 'active' | 'retired';
  activatedAt?: number;
  retiredAt?: number;
  publishUntil?: number;
  /** Longest lifetime of any token this key signed (or may sign), seconds. */
  maxTokenLifetime: number;
}

export interface Store {
  /** Load state; fails when the state cannot be read (never silently starts empty over a corrupt file). */
  open(): Promise<void>;
  close(): Promise<void>;
  listKeys(): Promise<StoredKey[]>;
  /** Replace the whole key set in one write. */
  saveKeys(keys: readonly StoredKey[]): Promise<void>;
  /** Record a revoked token until `expiresAt` (its `exp`). */
  revoke(jti: string, expiresAt: number): Promise<void>;
  isRevoked(jti: string): Promise<boolean>;
  listClients(): Promise<ClientMetadata[]>;
  putClient(metadata: ClientMetadata): Promise<void>;
  deleteClient(clientId: string): Promise<boolean>;
  /** Remember `id` in `namespace` until `expiresAt`; resolves false when it was already there (replay). */
  rememberOnce(namespace: string, id: string, expiresAt: number): Promise<boolean>;
  /** Record that `clientId` authenticated with a certificate of this thumbprint (valid until `expiresAt`). */
  observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void>;
  observedCertificates(clientId: string): Promise<string[]>;
  /** Forget entries that expired before `now` (epoch seconds). */
  prune(now: number): Promise<void>;
}

interface StateV1 {
  version: 1;
  keys: StoredKey[];
  /** jti -> exp */
  revocations: Record<string, number>;
  clients: ClientMetadata[];
  /** `${namespace} ${id}` -> expiresAt */
  seen: Record<string, number>;
  /** client_id -> thumbprint -> expiresAt */
  certificates: Record<string, Record<string, number>>;
}

function emptyState(): StateV1 {
  return { version: 1, keys: [], revocations: {}, clients: [], seen: {}, certificates: {} };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Thrown when the data directory is unusable: locked by another process, or its state unreadable. */
export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/**
 * File-based store: `<dir>/state.json` (mode 0600) and a `<dir>/lock` file that keeps a second
 * server process off the same directory. Writes are serialized and coalesced: concurrent changes
 * share one write, and each change resolves only after a write that includes it reached the disk.
 */
export class FileStore implements Store {
  readonly dir: string;
  #state: StateV1 = emptyState();
  #opened = false;
  #version = 0;
  #written = 0;
  #writing: Promise<void> | undefined;
  #lockPath: string;
  #statePath: string;

  constructor(dir: string) {
    this.dir = dir;
    this.#lockPath = join(dir, 'lock');
    this.#statePath = join(dir, 'state.json');
  }

  async open(): Promise<void> {
    if (this.#opened) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.#lock();
    try {
      let text: string | undefined;
      try {
        text = await readFile(this.#statePath, 'utf8');
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') throw new StoreError(`cannot read ${this.#statePath}`, { cause: error });
      }
      if (text !== undefined) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (cause) {
          throw new StoreError(`${this.#statePath} is not valid JSON; refusing to start over it`, { cause });
        }
        if (!isRecord(parsed) || parsed.version !== 1 || !Array.isArray(parsed.keys) || !isRecord(parsed.revocations)) {
          throw new StoreError(`${this.#statePath} is not a tether state file (version 1)`);
        }
        this.#state = { ...emptyState(), ...(parsed as unknown as StateV1) };
      }
    } catch (error) {
      await this.#unlock();
      throw error;
    }
    this.#opened = true;
  }

  async close(): Promise<void> {
    if (!this.#opened) return;
    await this.#flush();
    this.#opened = false;
    await this.#unlock();
  }

  async #lock(): Promise<void> {
    const content = `${process.pid}\n`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(this.#lockPath, content, { flag: 'wx', mode: 0o600 });
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== 'EEXIST') throw new StoreError(`cannot create ${this.#lockPath}`, { cause: error });
      }
      const holder = Number.parseInt(await readFile(this.#lockPath, 'utf8').catch(() => ''), 10);
      if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
        throw new StoreError(`data directory ${this.dir} is in use by process ${holder}`);
      }
      if (holder === process.pid) {
        // Same process: only one store may hold a directory at a time.
        throw new StoreError(`data directory ${this.dir} is already open in this process`);
      }
      await unlink(this.#lockPath).catch(() => undefined); // stale lock of a dead process
    }
    throw new StoreError(`cannot lock ${this.dir}`);
  }

  async #unlock(): Promise<void> {
    await unlink(this.#lockPath).catch(() => undefined);
  }

  #assertOpen(): void {
    if (!this.#opened) throw new StoreError('store is not open');
  }

  /** Resolve once a write that includes every change made so far has reached the disk. */
  async #flush(): Promise<void> {
    const target = this.#version;
    while (this.#written < target) {
      if (this.#writing !== undefined) {
        await this.#writing.catch(() => undefined);
        continue;
      }
      const version = this.#version;
      const text = `${JSON.stringify(this.#state)}\n`;
      this.#writing = this.#write(text).then(
        () => {
          this.#written = Math.max(this.#written, version);
        },
      );
      try {
        await this.#writing;
      } finally {
        this.#writing = undefined;
      }
    }
  }

  async #write(text: string): Promise<void> {
    const tmp = join(this.dir, `.state.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(tmp, this.#statePath);
    } catch (error) {
      await unlink(tmp).catch(() => undefined);
      throw error;
    }
    // Make the rename itself durable.
    try {
      const dirHandle = await open(this.dir, 'r');
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
    } catch {
      // Some platforms cannot fsync a directory; the rename is still atomic.
    }
  }

  async #change(mutate: (state: StateV1) => void): Promise<void> {
    this.#assertOpen();
    mutate(this.#state);
    this.#version++;
    await this.#flush();
  }

  async listKeys(): Promise<StoredKey[]> {
    this.#assertOpen();
    return structuredClone(this.#state.keys);
  }

  saveKeys(keys: readonly StoredKey[]): Promise<void> {
    return this.#change((s) => {
      s.keys = structuredClone([...keys]);
    });
  }

  revoke(jti: string, expiresAt: number): Promise<void> {
    return this.#change((s) => {
      s.revocations[jti] = Math.max(s.revocations[jti] ?? 0, expiresAt);
    });
  }

  async isRevoked(jti: string): Promise<boolean> {
    this.#assertOpen();
    return Object.hasOwn(this.#state.revocations, jti);
  }

  async listClients(): Promise<ClientMetadata[]> {
    this.#assertOpen();
    return structuredClone(this.#state.clients);
  }

  putClient(metadata: ClientMetadata): Promise<void> {
    return this.#change((s) => {
      s.clients = [...s.clients.filter((c) => c.client_id !== metadata.client_id), structuredClone(metadata)];
    });
  }

  async deleteClient(clientId: string): Promise<boolean> {
    this.#assertOpen();
    if (!this.#state.clients.some((c) => c.client_id === clientId)) return false;
    await this.#change((s) => {
      s.clients = s.clients.filter((c) => c.client_id !== clientId);
    });
    return true;
  }

  async rememberOnce(namespace: string, id: string, expiresAt: number): Promise<boolean> {
    this.#assertOpen();
    const key = `${namespace} ${id}`;
    if (Object.hasOwn(this.#state.seen, key)) return false;
    await this.#change((s) => {
      s.seen[key] = expiresAt;
    });
    return true;
  }

  async observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void> {
    this.#assertOpen();
    if (this.#state.certificates[clientId]?.[thumbprint] === expiresAt) return;
    await this.#change((s) => {
      s.certificates[clientId] = { ...s.certificates[clientId], [thumbprint]: expiresAt };
    });
  }

  async observedCertificates(clientId: string): Promise<string[]> {
    this.#assertOpen();
    return Object.keys(this.#state.certificates[clientId] ?? {});
  }

  async prune(now: number): Promise<void> {
    this.#assertOpen();
    let changed = false;
    const drop = (record: Record<string, number>) => {
      for (const [k, exp] of Object.entries(record)) {
        if (exp < now) {
          delete record[k];
          changed = true;
        }
      }
    };
    drop(this.#state.revocations);
    drop(this.#state.seen);
    for (const [client, certs] of Object.entries(this.#state.certificates)) {
      drop(certs);
      if (Object.keys(certs).length === 0) {
        delete this.#state.certificates[client];
        changed = true;
      }
    }
    if (changed) await this.#change(() => undefined);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
