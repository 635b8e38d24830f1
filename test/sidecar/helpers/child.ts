/**
 * A `tether egress` / `tether ingress` child process (from source), its output collected, and its
 * one JSON ready line awaited with a deadline. Killed in teardown if still running.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withTimeout } from '../../helpers/wait.js';

export interface SidecarChild {
  child: ChildProcess;
  /** The first stdout line (the ready line), raw. */
  line: string;
  ready: { listening: string; metrics: string; pid: number };
  /** Resolves with the exit code once the process has closed. */
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

export async function spawnSidecar(t: TestContext, command: 'egress' | 'ingress', args: readonly string[], readyTimeoutMs = 20_000): Promise<SidecarChild> {
  const entry = fileURLToPath(new URL('./entry.ts', import.meta.url));
  const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', entry, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const firstLine = new Promise<string>((resolve) =>
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
      if (stdout.includes('\n')) resolve(stdout.slice(0, stdout.indexOf('\n')));
    }),
  );
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const line = await withTimeout(Promise.race([firstLine, exited.then((code) => assert.fail(`exited early (${code}): ${stderr}`))]), readyTimeoutMs, `no ready line; stderr: ${stderr}`);
  return { child, line, ready: JSON.parse(line) as SidecarChild['ready'], exited, stdout: () => stdout, stderr: () => stderr };
}
