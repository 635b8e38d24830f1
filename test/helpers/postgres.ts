/**
 * A real PostgreSQL server from Debian's `postgresql` package for one test file: `initdb` in a
 * temporary directory, `pg_ctl start` listening on 127.0.0.1 at a free port (and a socket in the
 * same directory), `pg_ctl stop -m fast` afterwards (SIGKILL of the postmaster when that fails),
 * the directory removed. As root the server runs as the `postgres` user (PostgreSQL refuses root).
 * Every command has a timeout.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:PORT/DB` */
  url(database?: string): string;
  /** A new, empty database; resolves its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** The newest `/usr/lib/postgresql/N/bin` with initdb, or undefined when the package is missing. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error('PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)');
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'tether-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres'], { timeout: 5000 });
    const { stdout: gid } = await run('id', ['-g', 'postgres'], { timeout: 5000 });
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const pgCommand = (tool: string, args: string[], timeout: number) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { timeout, cwd: dir }) : run(join(bin, tool), args, { timeout, cwd: dir });
  const port = await freePort();
  const stopServer = async () => {
    try {
      await pgCommand('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '20', 'stop'], 30_000);
    } catch {
      const pid = Number.parseInt(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
      if (Number.isSafeInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  };
  let started = false;
  try {
    await pgCommand('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'], 120_000);
    const options = `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${dir} -c max_connections=60 -c shared_buffers=16MB`;
    await pgCommand('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start'], 90_000);
    started = true;
  } catch (error) {
    const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000) : '';
    if (existsSync(join(data, 'postmaster.pid'))) await stopServer();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot start PostgreSQL: ${(error as Error).message}\n${log}`, { cause: error });
  }
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    url,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 10_000, query_timeout: 30_000 });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name.replace(/[^a-z0-9_]/g, '')}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    async stop() {
      if (started) await stopServer();
      started = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
