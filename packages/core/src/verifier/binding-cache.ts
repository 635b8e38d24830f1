/**
 * Per-connection cache of verified bindings (draft section 3.3, NOTES decision 2). Keyed on
 * (connection, ath); remembers the exact proof string it verified, so a different proof for the
 * same token on the same connection is verified again. Entries expire at the earliest of the
 * token's `exp` and the proof's `iat` plus the maximum binding age; a connection's entries are
 * purged when it closes. Bounded per connection and in total (least recently inserted go first).
 */

import type { ConnectionContext } from './connection.js';

export interface BindingEntry {
  proof: string;
  /** Epoch seconds after which the entry is no longer used. */
  expiresAt: number;
  /** `htm`/`htu` from the proof, re-checked against every request that hits the entry. */
  htm?: string;
  htu?: string;
}

export interface BindingCacheOptions {
  maxEntriesPerConnection?: number;
  maxEntries?: number;
}

export class BindingCache {
  readonly #connections = new Map<number, Map<string, BindingEntry>>();
  readonly #tracked = new WeakSet<ConnectionContext>();
  readonly #maxPerConnection: number;
  readonly #maxEntries: number;
  #size = 0;

  constructor(options: BindingCacheOptions = {}) {
    this.#maxPerConnection = options.maxEntriesPerConnection ?? 1024;
    this.#maxEntries = options.maxEntries ?? 100_000;
  }

  readonly #inflight = new Map<string, { proof: string; verification: Promise<unknown> }>();

  /**
   * A verification of exactly `proof` for (connection, ath) that is still running, if any: HTTP/2
   * streams that carry the same new proof concurrently share one signature check.
   */
  inflight<T>(connectionId: number, ath: string, proof: string): Promise<T> | undefined {
    const running = this.#inflight.get(`${connectionId} ${ath}`);
    return running?.proof === proof ? (running.verification as Promise<T>) : undefined;
  }

  /** Register a running verification; it unregisters itself when it settles. */
  trackVerification(connectionId: number, ath: string, proof: string, verification: Promise<unknown>): void {
    const key = `${connectionId} ${ath}`;
    const entry = { proof, verification };
    this.#inflight.set(key, entry);
    const done = () => {
      if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
    };
    verification.then(done, done);
  }

  /** Total entries across connections. */
  get size(): number {
    return this.#size;
  }

  /** Connections holding at least one entry. */
  get connections(): number {
    return this.#connections.size;
  }

  /** The entry for (connection, ath) if it is still valid for `proof` at `now`. */
  get(connectionId: number, ath: string, proof: string, now: number): BindingEntry | undefined {
    const entries = this.#connections.get(connectionId);
    const entry = entries?.get(ath);
    if (entry === undefined || entries === undefined) return undefined;
    if (entry.expiresAt <= now) {
      entries.delete(ath);
      this.#size--;
      if (entries.size === 0) this.#connections.delete(connectionId);
      return undefined;
    }
    return entry.proof === proof ? entry : undefined;
  }

  /**
   * Remember a verified binding for `connection`. Nothing is stored for a closed connection; the
   * first entry of a connection registers the purge that runs when it closes.
   */
  set(connection: ConnectionContext, ath: string, entry: BindingEntry): void {
    if (connection.closed) return;
    const connectionId = connection.id;
    if (!this.#tracked.has(connection)) {
      this.#tracked.add(connection);
      connection.onClose(() => this.purge(connectionId));
    }
    let entries = this.#connections.get(connectionId);
    if (entries === undefined) {
      entries = new Map();
      this.#connections.set(connectionId, entries);
    }
    if (entries.delete(ath)) this.#size--;
    if (entries.size >= this.#maxPerConnection) this.#evictOldest(entries);
    while (this.#size >= this.#maxEntries) {
      const oldestConnection = this.#connections.entries().next();
      if (oldestConnection.done) break;
      const [oldestId, oldest] = oldestConnection.value;
      this.#evictOldest(oldest);
      if (oldest.size === 0) this.#connections.delete(oldestId);
    }
    entries.set(ath, entry);
    // The loop drops a connection it empties, and that may be this one: attach its map again.
    this.#connections.set(connectionId, entries);
    this.#size++;
  }

  /** Drop every entry of a connection (call when it closes). */
  purge(connectionId: number): void {
    const entries = this.#connections.get(connectionId);
    if (entries === undefined) return;
    this.#size -= entries.size;
    this.#connections.delete(connectionId);
  }

  #evictOldest(entries: Map<string, BindingEntry>): void {
    const first = entries.keys().next();
    if (!first.done) {
      entries.delete(first.value);
      this.#size--;
    }
  }
}
