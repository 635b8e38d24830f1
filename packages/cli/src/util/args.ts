import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ParseArgsConfig } from 'node:util';
import { CommandArgsError, parseCommandArgs as parseArgs } from '@tether/core/internal';
import { usageError } from './errors.js';

/** True when `--help` or `-h` appears before a `--` terminator. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** The one argument parser of every tether command (`@tether/core/internal`); its errors are usage errors (exit 2). */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw error instanceof CommandArgsError ? usageError(error.message, error) : error;
  }
}

/** The value of a required string option, or a usage error naming it. */
export function required(value: string | undefined, option: string): string {
  if (value === undefined || value === '') throw usageError(`${option} is required`);
  return value;
}

/** One of `allowed`, or a usage error listing them. */
export function oneOf<T extends string>(value: string | undefined, option: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw usageError(`${option} must be one of ${allowed.join(', ')} (got '${value}')`);
  return value as T;
}

/** A decimal integer in [min, max], or a usage error. */
export function integer(value: string | undefined, option: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim())) throw usageError(`${option} must be a whole number (got '${value}')`);
  const n = Number(value.trim());
  if (!Number.isSafeInteger(n) || n < min || n > max) throw usageError(`${option} must be between ${min} and ${max} (got '${value}')`);
  return n;
}

function errnoText(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
  }
}

/** Read a file named by an option; a missing or unreadable file is a usage error naming both. */
export function readOptionFile(path: string, option: string): Buffer {
  try {
    if (statSync(path).isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    return readFileSync(path);
  } catch (error) {
    throw usageError(`cannot read ${option} ${path}: ${errnoText(error)}`);
  }
}

/** `@path` reads the file (trimmed); anything else is the value itself. */
export function valueOrFile(value: string, option: string): string {
  if (!value.startsWith('@')) return value;
  const path = value.slice(1);
  if (path === '') throw usageError(`${option} @FILE needs a file name`);
  return readOptionFile(path, option).toString('utf8').trim();
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (127.0.0.1). Port 0 picks a free port. */
export function parseListen(value: string, option = '--listen'): ListenAddress {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  const plain = /^([^:[\]]*):(\d+)$/.exec(value);
  const match = bracketed ?? plain;
  if (match === null) throw usageError(`${option} must be HOST:PORT or [IPv6]:PORT (got '${value}')`);
  const host = (match[1] as string) === '' ? '127.0.0.1' : (match[1] as string);
  if (bracketed !== null && isIP(host) !== 6) throw usageError(`${option}: '${host}' is not an IPv6 address`);
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw usageError(`${option}: invalid host '${host}'`);
  const port = integer(match[2], `${option} port`, 0, 65535, 0);
  return { host, port };
}

/** `https://host:port` with an IPv6 host in brackets. */
export function originOf(host: string, port: number): string {
  return `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}
