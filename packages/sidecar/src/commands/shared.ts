/**
 * What `tether egress` and `tether ingress` share: argument parsing (node:util parseArgs, through
 * core's one parser), start-up, and graceful shutdown on SIGTERM / SIGINT (or `io.signal`). Exit
 * status: 0 after a clean shutdown, 1 on a runtime failure (e.g. the port is taken), 2 on bad
 * arguments or configuration, reported as one line on standard error without a stack.
 */
import type { ParseArgsConfig, parseArgs } from 'node:util';
import { CommandArgsError, parseCommandArgs } from '@tether/core/internal';
import { isConfigError, LOG_LEVELS, SidecarConfigError, type LogLevel } from '../config.js';
import { followCredentialFiles, openCredentialKey, reloadOnSighup, type CredentialFiles } from '../credentials-args.js';
import type { ReloadableCredentials } from '../credentials/index.js';
import { createLogger, type LogOptions } from '../log.js';

/** Where a command writes and how it is stopped; defaults are the process's. Compatible with the CLI's CommandContext. */
export interface CommandIO {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  env: Record<string, string | undefined>;
  /** Ends the command (graceful shutdown). Without it, SIGTERM / SIGINT of this process do. */
  signal?: AbortSignal;
  /** Called once the sidecar listens (tests use it to learn the bound addresses). */
  onReady?: (info: { url: string; metricsUrl: string | undefined }) => void;
}

export const common = {
  listen: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  'allow-tls12': { type: 'boolean' },
  'metrics-listen': { type: 'string' },
  'log-level': { type: 'string' },
  'drain-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export type ParsedArgs<O extends NonNullable<ParseArgsConfig['options']>> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: false; strict: true }>>['values'];

/** The one argument parser of every tether command (`@tether/core/internal`); its errors are configuration errors (exit 2). */
export function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: readonly string[], options: O): ParsedArgs<O> {
  try {
    return parseCommandArgs({ args: [...argv], options, allowPositionals: false, strict: true }).values;
  } catch (error) {
    throw error instanceof CommandArgsError ? new SidecarConfigError(error.message) : error;
  }
}

export function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new SidecarConfigError(`${flag} is required`);
  return value;
}

export function logLevel(value: string | undefined): LogLevel {
  const level = value ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new SidecarConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  return level as LogLevel;
}

export function seconds(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new SidecarConfigError(`${flag} must be a number of seconds`);
  return n * 1000;
}

export function logOptions(level: LogLevel, io: CommandIO): LogOptions {
  return io.stderr === process.stderr ? { level } : { level, destination: io.stderr as NodeJS.WritableStream };
}

export function resolveIO(io: Partial<CommandIO>): CommandIO {
  return {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    ...(io.signal === undefined ? {} : { signal: io.signal }),
    ...(io.onReady === undefined ? {} : { onReady: io.onReady }),
  };
}

/** Resolves on `io.signal` or on SIGTERM / SIGINT; listening starts at once, so a signal during start-up is not lost. */
export function stopSignal(io: CommandIO): { stopped: Promise<string>; dispose(): void } {
  if (io.signal !== undefined) {
    const signal = io.signal;
    return {
      stopped: new Promise((resolve) => {
        if (signal.aborted) resolve('abort');
        else signal.addEventListener('abort', () => resolve('abort'), { once: true });
      }),
      dispose() {},
    };
  }
  let on: (name: NodeJS.Signals) => void = () => undefined;
  let received = 0;
  const stopped = new Promise<string>((resolve) => {
    on = (name) => {
      // A second signal while draining means "now".
      if (++received > 1) process.exit(128 + (name === 'SIGINT' ? 2 : 15));
      resolve(name);
    };
  });
  process.on('SIGTERM', on);
  process.on('SIGINT', on);
  return {
    stopped,
    dispose() {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
    },
  };
}

export type Started = { url: string; metrics: { url: string } | undefined; close(): Promise<void> };

/**
 * Follow the certificate files (reloaded on change and on SIGHUP until the end), start, print the
 * ready line, wait for the stop signal, close.
 */
export async function run(name: string, io: CommandIO, files: CredentialFiles, level: LogLevel, start: (credentials: ReloadableCredentials) => Promise<Started>): Promise<number> {
  const stop = stopSignal(io);
  let credentials: ReloadableCredentials | undefined;
  let externalKey: Awaited<ReturnType<typeof openCredentialKey>>;
  let stopSighup = () => undefined as void;
  try {
    let sidecar;
    try {
      externalKey = await openCredentialKey(files);
      credentials = followCredentialFiles(files, createLogger(name, logOptions(level, io)), externalKey);
      stopSighup = reloadOnSighup(credentials);
      sidecar = await start(credentials);
    } catch (error) {
      return reportError(name, io, error);
    }
    io.stdout.write(readyLine(sidecar));
    io.onReady?.({ url: sidecar.url, metricsUrl: sidecar.metrics?.url });
    await stop.stopped;
    await sidecar.close();
    return 0;
  } finally {
    stopSighup();
    credentials?.close();
    // After the sidecar closed: no handshake or proof needs the token any more.
    await externalKey?.close();
    stop.dispose();
  }
}

/**
 * The one error format of every tether command: `tether CMD: message`, one line; bad arguments and bad input files
 * (exit 2) point to the help.
 */
export function reportError(name: string, io: CommandIO, error: unknown): 1 | 2 {
  const message = (error instanceof Error ? error.message : String(error)).split('\n')[0] as string;
  const code = isConfigError(error) ? 2 : 1;
  io.stderr.write(`tether ${name}: ${message}${code === 2 ? ` (see 'tether ${name} --help')` : ''}\n`);
  return code;
}

export function usage(name: string, io: CommandIO, error: unknown): number {
  if (isConfigError(error)) return reportError(name, io, error);
  throw error;
}

/** The one line `tether egress` and `tether ingress` print on standard output once they listen. */
export function readyLine(sidecar: { url: string; metrics: { url: string } | undefined }): string {
  return `${JSON.stringify({ listening: sidecar.url, ...(sidecar.metrics === undefined ? {} : { metrics: sidecar.metrics.url }), pid: process.pid })}\n`;
}
