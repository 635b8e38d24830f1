/**
 * Child processes of the benchmarks (matrix, soak, session binding, AS issuance, sidecar) and their
 * supervision: the parent never waits forever on a child.
 *
 * Every child is registered by PID the moment it starts and is killed by PID on every exit path of
 * the bench: the normal end, a thrown error (a missed deadline included), SIGINT/SIGTERM/SIGHUP, an
 * uncaught exception or an unhandled rejection. The forked children also exit on their own when
 * their IPC channel to the bench closes (see bench/sidecar-process.ts), and nginx is started under
 * `setpriv --pdeathsig KILL` where that exists, so a bench killed with SIGKILL leaves nothing either.
 *
 * Every question to a child (`ask`) has a deadline and fails when the child exits first.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

/** A failure of the bench itself (deadline missed, child died, child silent): reported and exit 1. */
export class BenchFailure extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'BenchFailure';
    this.code = code;
  }
}

const tracked = new Map<number, string>();
const tempDirs = new Set<string>();

/** Register a child process (PID -> role) so that every exit path kills it. */
export function track(pid: number | undefined, role: string): void {
  if (pid !== undefined) tracked.set(pid, role);
}

export function untrack(pid: number | undefined): void {
  if (pid !== undefined) tracked.delete(pid);
}

/** A temporary directory removed on every exit path. */
export function trackTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** The children still registered, for messages: `role=pid, ...`. */
export function trackedChildren(): string {
  return [...tracked].map(([pid, role]) => `${role}=${pid}`).join(', ');
}

/** Kill every registered child by PID (synchronous, so it also works in an 'exit' handler). */
export function killAllSync(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const pid of tracked.keys()) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
  tracked.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Install the handlers that kill the children on SIGINT/SIGTERM/SIGHUP, uncaught errors and exit. */
export function installExitGuards(): void {
  process.on('exit', () => killAllSync());
  const signals: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ];
  for (const [signal, code] of signals) {
    process.on(signal, () => {
      console.error(`bench: ${signal} received; killing child processes ${trackedChildren() || '(none)'}`);
      killAllSync();
      process.exit(code);
    });
  }
  const fatal = (kind: string) => (error: unknown) => {
    console.error(`bench: ${kind}; killing child processes ${trackedChildren() || '(none)'}`, error);
    killAllSync();
    process.exit(1);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));
}

/** The parent's Node flags, with tsx added when missing (so `--conditions=...` reaches the children). */
function childExecArgv(): string[] {
  const argv = process.execArgv.filter((a) => !a.startsWith('--test') && !a.startsWith('--inspect'));
  return argv.some((a) => a.includes('tsx')) ? argv : [...argv, '--import', 'tsx'];
}

interface Waiter {
  resolve: (msg: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export interface ForkOptions {
  /** Arguments after the script (default: `[role]`). */
  args?: string[];
  /** Node flags added to the parent's (for example `--expose-gc`). */
  execArgv?: string[];
  /** Environment variables added to the parent's (for example `LD_PRELOAD`). */
  env?: Record<string, string>;
  /** The program that runs Node (default: this Node; bench/callgrind-rs.ts: a script that runs it under valgrind). */
  execPath?: string;
}

/** One forked component (by default bench/sidecar-process.ts ROLE), questioned over IPC with deadlines. */
export class ForkedChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Resolves on the child's first message (it is listening for commands). */
  readonly ready: Promise<unknown>;
  #waiter: Waiter | undefined;
  #exit: string | undefined;
  readonly #exited: Promise<void>;

  constructor(
    readonly role: string,
    script: string,
    readyTimeoutMs: number,
    options: ForkOptions = {},
  ) {
    const execArgv = [...childExecArgv(), ...(options.execArgv ?? []).filter((a) => !process.execArgv.includes(a))];
    this.proc = fork(script, options.args ?? [role], { execArgv, env: { ...process.env, ...options.env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...(options.execPath === undefined ? {} : { execPath: options.execPath }) });
    if (this.proc.pid === undefined) throw new BenchFailure('child_spawn_failed', `could not start the ${role} process`);
    this.pid = this.proc.pid;
    track(this.pid, role);
    this.#exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        untrack(this.pid);
        this.#exit = signal === null ? `exited with code ${String(code)}` : `was killed by ${signal}`;
        this.#settle(new BenchFailure('child_exited', `${role} (pid ${this.pid}) ${this.#exit} while the bench waited for it`));
        resolve();
      }),
    );
    this.proc.on('message', (msg) => this.#settle(undefined, msg));
    this.proc.on('error', (error) => this.#settle(new BenchFailure('child_error', `${role} (pid ${this.pid}): ${error.message}`)));
    this.ready = this.#wait(readyTimeoutMs, 'to start');
  }

  /** Send `msg` and wait for the one reply, at most `timeoutMs`. */
  async ask<T>(msg: { cmd: string }, timeoutMs: number): Promise<T> {
    await this.ready;
    if (this.#waiter !== undefined) throw new BenchFailure('child_busy', `${this.role} already has a question outstanding`);
    const reply = this.#wait(timeoutMs, `to answer '${msg.cmd}'`);
    this.proc.send(msg);
    return reply as Promise<T>;
  }

  /** Ask the child to close and exit; after `timeoutMs`, SIGKILL it by PID. */
  async exit(timeoutMs = 5000): Promise<void> {
    if (this.#exit !== undefined) return;
    if (this.proc.connected) this.proc.send({ cmd: 'exit' });
    const timer = setTimeout(() => {
      console.error(`bench: ${this.role} (pid ${this.pid}) did not exit within ${timeoutMs} ms; SIGKILL`);
      this.kill();
    }, timeoutMs);
    await this.#exited;
    clearTimeout(timer);
  }

  kill(): void {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  #wait(timeoutMs: number, what: string): Promise<unknown> {
    if (this.#exit !== undefined) return Promise.reject(new BenchFailure('child_exited', `${this.role} (pid ${this.pid}) ${this.#exit}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.#settle(new BenchFailure('child_timeout', `${this.role} (pid ${this.pid}) did not manage ${what} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiter = { resolve, reject, timer };
    });
  }

  #settle(error: Error | undefined, msg?: unknown): void {
    const w = this.#waiter;
    if (w === undefined) return;
    this.#waiter = undefined;
    clearTimeout(w.timer);
    if (error === undefined) w.resolve(msg);
    else w.reject(error);
  }
}
