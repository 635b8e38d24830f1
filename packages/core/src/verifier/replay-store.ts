/**
 * Replay detection for `jti` (draft section 2.3.2.2; also used for DPoP proofs). `use` must be
 * atomic: of two concurrent calls with the same `jti`, exactly one returns true. A store that
 * cannot answer must throw: the verifier then refuses the request (fails closed).
 */
export interface ReplayStore {
  /**
   * Record `jti` as used until `expiresAt` (epoch seconds): it counts as seen while
   * `now < expiresAt`. Resolves true when it was unused, false when it was seen before. The
   * verifiers pass the end of the proof's own acceptance window (`iat + maxAge + skew + 1`), so a
   * store need hold an id no longer than that.
   */
  use(jti: string, expiresAt: number): boolean | Promise<boolean>;
}

export interface MemoryReplayStoreOptions {
  /** Most identifiers held at once. When full of unexpired entries, `use` throws. Default 1,000,000. */
  maxEntries?: number;
  /** Clock in epoch seconds. */
  now?: () => number;
}

const MIN_SWEEP_AT = 1024;

/**
 * In-process replay store. Atomic because `use` is synchronous on one event loop. Expired ids are
 * swept whenever the store has doubled since the last sweep (amortized O(1) per `use`), so it holds
 * at most about twice the ids that are still live, not every id seen until `maxEntries`.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly #seen = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;
  #sweepAt = MIN_SWEEP_AT;

  constructor(options: MemoryReplayStoreOptions = {}) {
    this.#max = options.maxEntries ?? 1_000_000;
    this.#now = options.now ?? (() => Date.now() / 1000);
  }

  get size(): number {
    return this.#seen.size;
  }

  use(jti: string, expiresAt: number): boolean {
    const now = this.#now();
    const existing = this.#seen.get(jti);
    if (existing !== undefined && existing > now) return false;
    if (existing === undefined && this.#seen.size >= this.#max) {
      this.#sweep(now);
      // Failing closed beats forgetting identifiers that could then be replayed.
      if (this.#seen.size >= this.#max) throw new Error('replay store full');
    }
    this.#seen.delete(jti);
    this.#seen.set(jti, expiresAt);
    if (this.#seen.size >= this.#sweepAt) this.#sweep(now);
    return true;
  }

  #sweep(now: number): void {
    for (const [jti, exp] of this.#seen) if (exp <= now) this.#seen.delete(jti);
    this.#sweepAt = 2 * Math.max(MIN_SWEEP_AT / 2, this.#seen.size);
  }
}
