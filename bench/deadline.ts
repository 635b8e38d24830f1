/**
 * Deadlines of the load generators: every request has one (the transport cancels it and counts a
 * failure), and every run has one; a run that misses it fails with the requests still outstanding
 * named (what, how long waiting), instead of waiting forever.
 */
import { BenchFailure } from './children.js';

/** Default per-request deadline, ms: far above any loopback request, so only a stuck one hits it. */
export const REQUEST_TIMEOUT_MS = 15_000;

/** The requests in flight of one run, so a missed deadline can name them. */
export class Outstanding {
  readonly #open = new Map<number, { what: string; since: number }>();
  #next = 0;

  begin(what: string): number {
    const id = this.#next++;
    this.#open.set(id, { what, since: Date.now() });
    return id;
  }

  end(id: number): void {
    this.#open.delete(id);
  }

  get size(): number {
    return this.#open.size;
  }

  /** `what (waiting N ms)` for the first `limit` outstanding requests, and how many more. */
  describe(limit = 10): string {
    if (this.#open.size === 0) return 'none';
    const now = Date.now();
    const listed = [...this.#open.values()].slice(0, limit).map((r) => `${r.what} (waiting ${now - r.since} ms)`);
    const more = this.#open.size - listed.length;
    return listed.join('; ') + (more > 0 ? `; and ${more} more` : '');
  }
}

/** `work`, or a `BenchFailure('deadline_missed')` naming the outstanding requests after `deadlineMs`. */
export async function withRunDeadline<T>(what: string, deadlineMs: number, outstanding: Outstanding, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const missed = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BenchFailure('deadline_missed', `${what} missed its ${deadlineMs} ms deadline; ${outstanding.size} requests outstanding: ${outstanding.describe()}`)),
      deadlineMs,
    );
  });
  try {
    return await Promise.race([work, missed]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run `cancel` if `promise` has not settled within `timeoutMs`; the returned promise settles with `promise`. */
export function cancelAfter<T>(promise: Promise<T>, timeoutMs: number, cancel: () => void): Promise<T> {
  const timer = setTimeout(cancel, timeoutMs);
  const clear = () => clearTimeout(timer);
  promise.then(clear, clear);
  return promise;
}
