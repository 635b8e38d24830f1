/**
 * Run the BUILT tether CLI (packages/cli/dist/bin.js) as a real child process. The CI test
 * command builds first; when dist is missing (a fresh checkout), `npx tsc -b` runs once here.
 * Every child started here is killed by PID in `killAll` (call it from `after`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = join(ROOT, 'packages/cli/dist/bin.js');

export function ensureBuilt(): void {
  if (!existsSync(BIN)) execFileSync('npx', ['tsc', '-b'], { cwd: ROOT, stdio: 'inherit' });
}

const children = new Set<ChildProcess>();

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `tether ...args` to completion (killed after `timeoutMs`). */
export function tether(args: string[], options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, TETHER_TOKEN: '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/** A long-running `tether resource` child, with its JSON-lines stdout. */
export class ResourceProcess {
  readonly #lines: Array<Record<string, unknown>> = [];
  readonly #waiters: Array<() => void> = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcess) {
    children.add(child);
    this.exited = new Promise((r) =>
      child.on('exit', (code, signal) => {
        children.delete(child);
        r({ code, signal });
        this.#wake();
      }),
    );
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (this.stderr += c));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      this.#lines.push(JSON.parse(line) as Record<string, unknown>);
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Every stdout line so far, parsed. */
  get lines(): ReadonlyArray<Record<string, unknown>> {
    return this.#lines;
  }

  /** Wait for the `n`th stdout line (1-based) holding `key`. */
  async line(key: string, n = 1, timeoutMs = 10_000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.#lines.filter((l) => key in l);
      if (found.length >= n) return (found[n - 1] as Record<string, unknown>)[key];
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`resource exited before line ${key}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${key}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 100).unref();
      });
    }
  }

  static async start(args: string[]): Promise<{ resource: ResourceProcess; url: string }> {
    const child = spawn(process.execPath, [BIN, 'resource', '--listen', '127.0.0.1:0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const resource = new ResourceProcess(child);
    const url = (await resource.line('listening')) as string;
    return { resource, url };
  }

  /** Ask for the stats line (SIGUSR2) and return it. */
  async stats(): Promise<Record<string, unknown>> {
    const n = this.#lines.filter((l) => 'stats' in l).length + 1;
    this.child.kill('SIGUSR2');
    return (await this.line('stats', n)) as Record<string, unknown>;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** Kill every child still running (by PID). */
export function killAll(): void {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  }
  children.clear();
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `tether-cli-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Assert-friendly view of a CLI error: exactly one line on stderr, from tether, no stack. */
export function isCleanError(stderr: string): boolean {
  const lines = stderr.split('\n').filter((l) => l !== '');
  return lines.length === 1 && /^tether( [a-z-]+( init| issue)?)?: /.test(lines[0] as string) && !/^\s+at /m.test(stderr) && !/Error:/.test(stderr);
}
