/**
 * `tether as` in a child process (the CLI from source): its ready line awaited with a deadline,
 * output collected, SIGKILLed in teardown if still running.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withTimeout } from '../../helpers/wait.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = join(ROOT, 'packages/cli/src/bin.ts');

export interface AsChild {
  child: ChildProcess;
  ready: { listening: string; issuer: string; pid: number };
  exited: Promise<number | null>;
  stderr(): string;
  /** SIGTERM, and the exit code once it has closed (SIGKILL after `ms`). */
  stop(ms?: number): Promise<number | null>;
}

export async function spawnAs(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}, readyTimeoutMs = 30_000): Promise<AsChild> {
  const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', BIN, 'as', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const exited = new Promise<number | null>((resolveExit) => child.once('close', (code) => resolveExit(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const firstLine = new Promise<string>((resolveLine) =>
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
      if (stdout.includes('\n')) resolveLine(stdout.slice(0, stdout.indexOf('\n')));
    }),
  );
  const line = await withTimeout(
    Promise.race([firstLine, exited.then((code) => assert.fail(`tether as exited early (${code}): ${stderr}`))]),
    readyTimeoutMs,
    `tether as: no ready line; stderr: ${stderr}`,
    () => child.kill('SIGKILL'),
  );
  return {
    child,
    ready: JSON.parse(line) as AsChild['ready'],
    exited,
    stderr: () => stderr,
    async stop(ms = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      return withTimeout(exited, ms, 'tether as did not stop on SIGTERM', () => child.kill('SIGKILL'));
    },
  };
}
