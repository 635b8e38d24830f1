/**
 * The agent idle timeout: an agent connection (a socket still being sniffed, an HTTP/1.1 keep-alive
 * connection, an h2c session) with no request in flight for `ms` is closed, so agent sockets have an
 * end. A request in flight (an upload, a long poll, a server-sent event stream) is never cut by it.
 */
interface Entry {
  active: number;
  /** One timer per connection, re-armed with refresh() (no new timer per request). */
  timer: NodeJS.Timeout | undefined;
  onIdle: () => void;
}

export class IdleConnections {
  readonly #entries = new Map<object, Entry>();

  /** `ms` = 0 turns the timeout off. */
  constructor(readonly ms: number) {}

  /** Watch `connection` (idle from now on); `onIdle` closes it. Stops by itself on {@link unwatch}. */
  watch(connection: object, onIdle: () => void): void {
    if (this.ms === 0) return;
    const entry: Entry = { active: 0, timer: undefined, onIdle };
    entry.timer = setTimeout(() => this.#expired(connection, entry), this.ms);
    entry.timer.unref();
    this.#entries.set(connection, entry);
  }

  /** Stop watching (the connection closed or was handed over). */
  unwatch(connection: object): void {
    const entry = this.#entries.get(connection);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.#entries.delete(connection);
  }

  /** A request started on `connection`: the timer, if it fires meanwhile, finds it busy. */
  begin(connection: object): void {
    const entry = this.#entries.get(connection);
    if (entry !== undefined) entry.active++;
  }

  /** A request on `connection` is over (answered or abandoned): idle from now on when it was the last. */
  end(connection: object): void {
    const entry = this.#entries.get(connection);
    if (entry === undefined || entry.active === 0) return;
    if (--entry.active === 0) entry.timer?.refresh();
  }

  /** Connections watched now (for state reports). */
  get size(): number {
    return this.#entries.size;
  }

  #expired(connection: object, entry: Entry): void {
    if (entry.active > 0) return; // busy: re-armed when its last request ends
    this.#entries.delete(connection);
    entry.onIdle();
  }
}
