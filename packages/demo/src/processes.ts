/** The orchestrator's side of the child processes (see child.ts). */
import { fork, type ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

const CALL_TIMEOUT_MS = 20_000;

/** One demo process, started with `node [this process's execArgv] child.js ROLE` and an IPC channel. */
export class DemoProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 0;
  #stderr = '';
  #stopping: Promise<number | null> | undefined;
  readonly exited: Promise<number | null>;

  constructor(readonly role: string) {
    const here = fileURLToPath(import.meta.url);
    const entry = fileURLToPath(new URL(`./child${extname(here)}`, import.meta.url));
    this.#child = fork(entry, [role], { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.#child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      if (this.#stderr.length < 4096) this.#stderr += c;
    });
    this.#child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(`${role}: ${m.error}`));
      else p.resolve(m.result);
    });
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        resolve(signal === null ? code : null);
        const detail = this.#stderr.trim().split('\n')[0] ?? '';
        for (const p of this.#pending.values()) p.reject(new Error(`${role} exited (${signal ?? `code ${String(code)}`})${detail === '' ? '' : `: ${detail}`}`));
        this.#pending.clear();
      });
    });
    this.#child.once('error', () => undefined);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  call<T>(method: string, params?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
    const id = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.role}: ${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (!this.#child.connected) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(new Error(`${this.role}: process not running`));
        return;
      }
      this.#child.send({ id, method, params });
    });
  }

  /** SIGTERM, then SIGKILL after 3 s. Resolves the exit code (null when killed by a signal). */
  stop(): Promise<number | null> {
    this.#stopping ??= (async () => {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) return this.exited;
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), 3000);
      try {
        return await this.exited;
      } finally {
        clearTimeout(timer);
      }
    })();
    return this.#stopping;
  }
}
