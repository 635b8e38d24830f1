import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

/** A configuration error: reported as one line at start-up, exit status 2. */
export class SidecarConfigError extends Error {
  /** Stable code of every configuration error. */
  readonly code = 'ERR_SIDECAR_CONFIG';
  readonly exitCode = 2;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SidecarConfigError';
  }
}

export function isConfigError(error: unknown): error is SidecarConfigError {
  return error instanceof SidecarConfigError || (error instanceof Error && error.name === 'ConfigurationError');
}

/** Where a server listens or a client connects: TCP host and port, or a Unix socket path. */
export type Endpoint = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** Parse `HOST:PORT`, `[V6]:PORT` or `unix:/path`. */
export function parseEndpoint(value: string, what: string): Endpoint {
  if (value.startsWith('unix:')) {
    const path = value.slice(5);
    if (path === '') throw new SidecarConfigError(`${what}: unix: needs a socket path`);
    return { kind: 'unix', path };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (m === null) throw new SidecarConfigError(`${what}: expected HOST:PORT or unix:/path, got ${JSON.stringify(value)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new SidecarConfigError(`${what}: port out of range`);
  return { kind: 'tcp', host: (m[1] ?? m[2]) as string, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

export function describeEndpoint(e: Endpoint): string {
  return e.kind === 'unix' ? `unix:${e.path}` : `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}

/** Read a PEM (or any text) file; a missing or unreadable file is a configuration error. */
export function readConfigFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    throw new SidecarConfigError(`cannot read ${what} file ${path}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`, { cause });
  }
}

/** Parse an upstream given as `http://host:port[/base]` or `unix:/path`. */
export function parseLocalUpstream(value: string, what: string): { endpoint: Endpoint; basePath: string } {
  if (value.startsWith('unix:')) return { endpoint: parseEndpoint(value, what), basePath: '' };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SidecarConfigError(`${what}: not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:') throw new SidecarConfigError(`${what}: must be http://HOST:PORT or unix:/path (plain HTTP to the local application)`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { endpoint: { kind: 'tcp', host, port: Number(url.port || 80) }, basePath: url.pathname.replace(/\/$/, '') };
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
