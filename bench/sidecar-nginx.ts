/**
 * nginx as the reference hop of the sidecar benchmark: a plain TLS-terminating reverse proxy
 * (HTTP/1.1 and HTTP/2 on the client side, TLS 1.3, no client certificate) with a keep-alive pool
 * to the same application the ingress fronts.
 *
 * It runs in the foreground (`daemon off`, `master_process off`: one process serving everything,
 * the equivalent of `worker_processes 1`) from its own temporary directory holding the config, the
 * certificate, the pid file, the error and access logs and the temp paths; it listens on a
 * 127.0.0.1 port picked free just before. It is registered by PID for the bench's exit paths and
 * stopped by PID (SIGTERM, then SIGKILL). Its CPU is read from /proc/PID/stat (utime + stime of
 * the process and of any child it has).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fs, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { BenchFailure, track, trackTempDir, untrack } from './children.js';

/** The nginx binary: $TETHER_BENCH_NGINX, else `nginx` on PATH, /usr/sbin or /usr/local/sbin; undefined when absent. */
export function findNginx(): string | undefined {
  const candidates = process.env.TETHER_BENCH_NGINX
    ? [process.env.TETHER_BENCH_NGINX]
    : [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'].map((d) => join(d, 'nginx'));
  for (const c of candidates) {
    try {
      accessSync(c, fs.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

function which(name: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(d, name), fs.X_OK);
      return join(d, name);
    } catch {
      // next
    }
  }
  return undefined;
}

/** A free port on 127.0.0.1 (bound, read, released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface NginxOptions {
  binary: string;
  /** Application origin, `http://127.0.0.1:PORT`. */
  upstream: string;
  cert: string;
  key: string;
  startTimeoutMs: number;
}

function config(dir: string, port: number, upstreamPort: number): string {
  return `# Written by bench/sidecar-nginx.ts for one benchmark run.
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log ${dir}/access.log combined buffer=64k flush=1s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${dir}/server.crt;
    ssl_certificate_key ${dir}/server.key;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 5s;
      proxy_send_timeout 30s;
      proxy_read_timeout 30s;
    }
  }
}
`;
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime (ticks) and parent PID of a process, from /proc/PID/stat; undefined when gone. */
function procStat(pid: number): { ticks: number; ppid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): state ppid ... utime(14) stime(15).
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return undefined;
  }
}

/** The process and its children (nginx workers, when master_process is on). */
function processTree(pid: number): number[] {
  const pids = [pid];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    if (procStat(Number(e))?.ppid === pid) pids.push(Number(e));
  }
  return pids;
}

function waitForPort(port: number, proc: ChildProcess, timeoutMs: number, errorLog: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const log = () => {
    try {
      return readFileSync(errorLog, 'utf8').slice(-2000);
    } catch {
      return '(no error log)';
    }
  };
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        return reject(new BenchFailure('nginx_failed', `nginx exited during start-up (${String(proc.exitCode ?? proc.signalCode)}): ${log()}`));
      }
      if (Date.now() > deadline) return reject(new BenchFailure('nginx_start_timeout', `nginx did not listen on 127.0.0.1:${port} within ${timeoutMs} ms: ${log()}`));
      const s = connect({ host: '127.0.0.1', port });
      s.setTimeout(1000, () => s.destroy());
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => setTimeout(attempt, 50));
      s.once('timeout', () => setTimeout(attempt, 50));
    };
    attempt();
  });
}

/** A running nginx, measured like the forked components (`reset` / `report`). */
export class NginxProcess {
  readonly role = 'nginx';
  #baseTicks = 0;
  #pids: number[];
  private constructor(
    readonly proc: ChildProcess,
    readonly pid: number,
    readonly url: string,
    readonly dir: string,
    readonly version: string,
  ) {
    this.#pids = [pid];
  }

  static async start(o: NginxOptions): Promise<NginxProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'tether-bench-nginx-'));
    trackTempDir(dir);
    writeFileSync(join(dir, 'server.crt'), o.cert, { mode: 0o644 });
    writeFileSync(join(dir, 'server.key'), o.key, { mode: 0o600 });
    const port = await freePort();
    writeFileSync(join(dir, 'nginx.conf'), config(dir, port, Number(new URL(o.upstream).port)));
    const v = spawnSync(o.binary, ['-v'], { encoding: 'utf8', timeout: 5000 });
    const version = `${v.stdout ?? ''}${v.stderr ?? ''}`.trim().replace(/^nginx version: /, '') || 'nginx';
    const args = ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')];
    // With setpriv, nginx is killed by the kernel if the bench dies without running its handlers.
    const setpriv = which('setpriv');
    const proc = setpriv === undefined ? spawn(o.binary, args, { stdio: ['ignore', 'ignore', 'inherit'] }) : spawn(setpriv, ['--pdeathsig', 'KILL', o.binary, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (proc.pid === undefined) throw new BenchFailure('nginx_failed', `could not start ${o.binary}`);
    track(proc.pid, 'nginx');
    proc.once('exit', () => untrack(proc.pid));
    const n = new NginxProcess(proc, proc.pid, `https://127.0.0.1:${port}`, dir, version);
    try {
      await waitForPort(port, proc, o.startTimeoutMs, join(dir, 'error.log'));
    } catch (error) {
      n.kill();
      throw error;
    }
    n.#pids = processTree(proc.pid);
    return n;
  }

  #cpuTicks(): number {
    return this.#pids.reduce((a, pid) => a + (procStat(pid)?.ticks ?? 0), 0);
  }

  /** Same shape as the forked components' `reset` / `report` replies. */
  async reset(): Promise<{ proofsSigned: number; proofVerifications: number }> {
    this.#pids = processTree(this.pid);
    this.#baseTicks = this.#cpuTicks();
    return { proofsSigned: 0, proofVerifications: 0 };
  }

  async report(): Promise<{ cpuMicros: number; proofsSigned: number; proofVerifications: number }> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
      throw new BenchFailure('child_exited', `nginx (pid ${this.pid}) exited during the run (${String(this.proc.exitCode ?? this.proc.signalCode)})`);
    }
    return { cpuMicros: ((this.#cpuTicks() - this.#baseTicks) * 1e6) / ticksPerSecond(), proofsSigned: 0, proofVerifications: 0 };
  }

  /** Stop by PID: SIGTERM (fast shutdown), SIGKILL to every process of the tree after `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    const pids = processTree(this.pid);
    process.kill(this.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      console.error(`bench: nginx (pid ${this.pid}) did not stop within ${timeoutMs} ms; SIGKILL`);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }, timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    for (const pid of processTree(this.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}
