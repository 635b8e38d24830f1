/**
 * Real proxies from Debian's packages (HAProxy, nginx) for the intermediary tests: run in the foreground from a
 * temporary directory holding their configuration and logs, on a port picked free just before, awaited until the
 * port accepts connections (with a deadline), and stopped by PID (SIGTERM, then SIGKILL).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTimeout } from './wait.js';

/** The binary at the first of `paths` that is executable, or undefined. */
export function findBinary(...paths: string[]): string | undefined {
  for (const path of paths) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // next
    }
  }
  return undefined;
}

/** A free TCP port on `host` (bound, read, released). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.setTimeout(500, () => s.destroy());
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}

export class ProxyProcess {
  private constructor(
    readonly proc: ChildProcess,
    readonly dir: string,
    private output: string,
  ) {}

  /** Start `binary args...` (`{dir}` in args and config stands for the temporary directory) and wait for host:port. */
  static async start(o: {
    binary: string;
    args: string[];
    config: { name: string; text: string };
    host: string;
    port: number;
    timeoutMs?: number;
    /** Write what the configuration refers to (certificates, keys) into the directory. */
    beforeStart?: (dir: string) => void;
  }): Promise<ProxyProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'tether-proxy-'));
    writeFileSync(join(dir, o.config.name), o.config.text.replaceAll('{dir}', dir));
    o.beforeStart?.(dir);
    const proc = spawn(o.binary, o.args.map((a) => a.replaceAll('{dir}', dir)), { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new ProxyProcess(proc, dir, '');
    proc.stdout?.setEncoding('utf8').on('data', (c: string) => (p.output += c));
    proc.stderr?.setEncoding('utf8').on('data', (c: string) => (p.output += c));
    try {
      await withTimeout(
        (async () => {
          while (!(await accepts(o.host, o.port))) {
            if (proc.exitCode !== null) throw new Error(`${o.binary} exited (${proc.exitCode}): ${p.output}`);
            await new Promise((r) => setTimeout(r, 50));
          }
        })(),
        o.timeoutMs ?? 10_000,
        `${o.binary} to listen on ${o.host}:${o.port}`,
      );
    } catch (error) {
      await p.stop();
      throw error;
    }
    return p;
  }

  /** What the process wrote, and its log file when given. */
  log(file?: string): string {
    let text = this.output;
    if (file !== undefined) {
      try {
        text += readFileSync(join(this.dir, file), 'utf8');
      } catch {
        // no log written
      }
    }
    return text;
  }

  async stop(timeoutMs = 5000): Promise<void> {
    const { proc } = this;
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
