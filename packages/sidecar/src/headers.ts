import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Hop-by-hop fields (RFC 9110 section 7.6.1) plus the HTTP/2-forbidden connection-specific ones. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Field names listed in `Connection` (they are hop-by-hop too). */
function connectionTokens(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const value = headers.connection;
  if (typeof value === 'string') return tokensOf(value);
  const out = new Set<string>();
  for (const v of value ?? []) for (const t of tokensOf(v)) out.add(t);
  return out;
}

/** `Connection` values seen (`keep-alive`, `close`, ...) -> the names they list; bounded. */
const parsedConnection = new Map<string, ReadonlySet<string>>();

function tokensOf(value: string): ReadonlySet<string> {
  let tokens = parsedConnection.get(value);
  if (tokens !== undefined) return tokens;
  const out = new Set<string>();
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '') out.add(t);
  }
  tokens = out;
  if (parsedConnection.size >= 64) parsedConnection.delete(parsedConnection.keys().next().value as string);
  parsedConnection.set(value, tokens);
  return tokens;
}

export interface CopyOptions {
  /** Extra field names to drop (lower case). */
  drop?: ReadonlySet<string>;
  /** Field-name prefixes to drop (lower case). */
  dropPrefixes?: readonly string[];
}

/**
 * Copy end-to-end fields: drops hop-by-hop fields, those named in `Connection`, `Proxy-*`,
 * HTTP/2 pseudo-headers, `Host`, and whatever `options` lists.
 */
export function endToEndHeaders(headers: IncomingHttpHeaders, options: CopyOptions = {}): OutgoingHttpHeaders {
  const named = headers.connection === undefined ? undefined : connectionTokens(headers);
  const { drop, dropPrefixes } = options;
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    const n = name.toLowerCase();
    if (n.startsWith(':') || n === 'host' || HOP_BY_HOP.has(n) || named?.has(n) === true || n.startsWith('proxy-')) continue;
    if (drop?.has(n) === true || (dropPrefixes !== undefined && hasPrefix(n, dropPrefixes))) continue;
    out[n] = value;
  }
  return out;
}

function hasPrefix(name: string, prefixes: readonly string[]): boolean {
  for (const p of prefixes) if (name.startsWith(p)) return true;
  return false;
}

/** Every value of `name` as received (duplicates kept), from `rawHeaders`. */
export function rawValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i] as string;
    if (raw.length === name.length && raw.toLowerCase() === name) out.push(rawHeaders[i + 1] as string);
  }
  return out;
}

/**
 * Identity and certificate fields a client could forge to impersonate someone to the application
 * behind the ingress. The ingress drops them all and sets its own.
 */
export const IDENTITY_HEADERS: ReadonlySet<string> = new Set([
  'client-cert',
  'client-cert-chain',
  'x-forwarded-client-cert',
  'x-client-cert',
  'x-client-certificate',
  'x-client-verify',
  'x-client-dn',
  'x-ssl-cert',
  'x-tether-principal',
  'forwarded',
  'x-real-ip',
  'x-remote-user',
  'remote-user',
  'x-authenticated-user',
  'x-user',
  'x-amzn-mtls-clientcert',
  'x-arr-clientcert',
  'ssl-client-cert',
  'session-binding-proof',
]);

export const IDENTITY_PREFIXES: readonly string[] = ['x-forwarded-', 'x-ssl-', 'x-tether-', 'x-client-', 'x-mtls-', 'x-envoy-'];
