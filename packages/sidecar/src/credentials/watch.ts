/**
 * Notices that a set of files was replaced. Certificate writers (cert-manager, spiffe-helper, the
 * kubelet's secret volumes) write a new file elsewhere and rename it over the old path, or swap a
 * `..data` symlink: the watched inode is replaced, so a watch on the file itself goes deaf. We watch
 * the directories that contain the files, filtered by name, debounce the events (a certificate and
 * its key written one after the other are one change), and poll (device, inode, size, mtime) as a
 * fallback because fs.watch can miss events. `close()` clears every watcher and timer.
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

/** Names in a Kubernetes secret / configMap volume whose rename means every file changed. */
const KUBERNETES_NAMES = ['..data'];

export interface FileWatchLog {
  warn(object: object, message: string): void;
}

export interface FileWatchOptions {
  /** The files to watch (their directories are watched). */
  paths: readonly string[];
  /** Quiet time after the last event before `onChange` runs (ms). */
  debounceMs: number;
  /** Poll interval (ms); 0 turns polling off. */
  pollMs: number;
  /** Use fs.watch (default true); with false only polling (if any) notices changes. */
  watch: boolean;
  /** Runs after a debounced burst of events (`'watch'`) or when polling saw a difference (`'poll'`). */
  onChange(trigger: 'watch' | 'poll'): void;
  log: FileWatchLog;
  /** The files' signature when they were last read (default: now). */
  initialSignature?: string;
}

/** What the files look like on disk (following symlinks): changes when any of them is replaced or rewritten. */
export function fileSignature(paths: readonly string[]): string {
  return paths
    .map((path) => {
      try {
        const s = statSync(path, { bigint: true });
        return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
      } catch (error) {
        return `missing:${(error as NodeJS.ErrnoException).code ?? 'error'}`;
      }
    })
    .join('|');
}

export class FileWatch {
  readonly #options: FileWatchOptions;
  /** Directory -> names in it that matter. */
  readonly #names = new Map<string, Set<string>>();
  readonly #watchers = new Map<string, FSWatcher>();
  #debounce: NodeJS.Timeout | undefined;
  #burstStartedAt = 0;
  #poll: NodeJS.Timeout | undefined;
  #seen: string;
  #closed = false;

  constructor(options: FileWatchOptions) {
    this.#options = options;
    for (const path of options.paths) {
      const dir = dirname(resolve(path));
      const names = this.#names.get(dir) ?? new Set(KUBERNETES_NAMES);
      names.add(basename(path));
      this.#names.set(dir, names);
    }
    this.#seen = options.initialSignature ?? fileSignature(options.paths);
    if (options.watch) for (const dir of this.#names.keys()) this.#watch(dir);
    if (options.pollMs > 0) this.#poll = setInterval(() => this.#tick(), options.pollMs);
  }

  /** Record the files' current state as handled; call right before reading them. */
  remember(): void {
    this.#seen = fileSignature(this.#options.paths);
  }

  /** Stop watching and polling; nothing of this object keeps the process alive afterwards. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    clearInterval(this.#poll);
    this.#poll = undefined;
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
  }

  #watch(dir: string): void {
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: true }, (_event, name) => this.#event(dir, name));
    } catch (error) {
      // The directory may not exist yet (or is unreadable); polling retries it.
      this.#options.log.warn({ path: dir, code: (error as NodeJS.ErrnoException).code }, 'cannot watch the certificate directory; relying on polling');
      return;
    }
    watcher.on('error', (error: NodeJS.ErrnoException) => {
      this.#options.log.warn({ path: dir, code: error.code }, 'certificate directory watch failed; relying on polling');
      watcher.close();
      if (this.#watchers.get(dir) === watcher) this.#watchers.delete(dir);
    });
    this.#watchers.set(dir, watcher);
  }

  #event(dir: string, name: string | Buffer | null): void {
    if (this.#closed) return;
    // Some platforms give no file name: treat that as a possible change.
    if (name !== null && !this.#names.get(dir)?.has(name.toString())) return;
    const now = Date.now();
    if (this.#debounce === undefined) this.#burstStartedAt = now;
    clearTimeout(this.#debounce);
    // A steady stream of events does not postpone the reload for ever: at most 10 debounce periods.
    const delay = Math.max(0, Math.min(this.#options.debounceMs, this.#burstStartedAt + 10 * this.#options.debounceMs - now));
    this.#debounce = setTimeout(() => this.#fire('watch'), delay);
  }

  #fire(trigger: 'watch' | 'poll'): void {
    this.#debounce = undefined;
    if (this.#closed) return;
    try {
      this.#options.onChange(trigger);
    } catch (error) {
      this.#options.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'certificate reload failed');
    }
  }

  #tick(): void {
    if (this.#closed) return;
    if (this.#options.watch) for (const dir of this.#names.keys()) if (!this.#watchers.has(dir)) this.#watch(dir);
    // A pending debounced reload will look at the files anyway.
    if (this.#debounce !== undefined) return;
    if (fileSignature(this.#options.paths) !== this.#seen) this.#fire('poll');
  }
}
