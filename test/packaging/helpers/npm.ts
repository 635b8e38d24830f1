/**
 * npm and the packed packages as a user meets them: `npm pack` of a workspace package, `npm install` of tarballs
 * into an empty project, and commands run there. Every child runs in its own process group with a deadline; on the
 * deadline (or in `killAll`) the whole group is killed, so a demo's grandchildren cannot outlive the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

const groups = new Set<ChildProcess>();

/**
 * The environment for npm in another project: the `npm_*` variables that `npm test` sets for its own run
 * (prefixes, the workspace's config) must not leak into an install elsewhere. `npm_config_nodedir` stays: it says
 * where the running Node's headers are (scripts/test-on-node.sh sets it), which native addons are built against.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.toLowerCase().startsWith('npm_') || name.toLowerCase() === 'npm_config_nodedir') env[name] = value;
  }
  return { ...env, NO_UPDATE_NOTIFIER: '1', ...extra };
}

export function run(command: string, args: string[], options: { cwd: string; timeoutMs: number; env?: Record<string, string> }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: cleanEnv(options.env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    groups.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      killGroup(child);
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${options.timeoutMs} ms\n${stderr.slice(-2000)}`));
    }, options.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      groups.delete(child);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      groups.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function killAll(): void {
  for (const child of groups) killGroup(child);
  groups.clear();
}

export interface Packed {
  name: string;
  tarball: string;
  files: string[];
}

/** `npm pack` of one workspace package into `dest`. Scripts are skipped: the test command has built dist/ already. */
export async function pack(packageDir: string, dest: string): Promise<Packed> {
  const r = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], { cwd: packageDir, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`npm pack in ${packageDir} failed: ${r.stderr}`);
  const [info] = JSON.parse(r.stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>;
  if (info === undefined) throw new Error(`npm pack in ${packageDir} printed no result`);
  return { name: info.name, tarball: join(dest, info.filename), files: info.files.map((f) => f.path) };
}

/** An empty ESM project in `dir`. */
export function emptyProject(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'tether-install-check', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`);
}

/**
 * Install tarballs (and registry packages) into `dir`; third-party packages come from the npm cache when it has them.
 * The deadline allows for native addons built from source (better-sqlite3 for the AS's embedded store on Node 20: about
 * 90 s of CPU here, several minutes on a loaded machine).
 */
export async function install(dir: string, specs: string[]): Promise<void> {
  const r = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...specs], { cwd: dir, timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`npm install failed in ${dir}: ${r.stderr.slice(-3000)}`);
}

/** The installed packages of a project, from its lock file: name -> where it was resolved from. */
export function installedPackages(dir: string): Map<string, string> {
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { resolved?: string; link?: boolean }> };
  const installed = new Map<string, string>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '') continue;
    installed.set(path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length), entry.resolved ?? '');
  }
  return installed;
}
