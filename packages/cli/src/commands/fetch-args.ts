/**
 * `tether fetch` arguments, checked: curl's spellings (-X/--request, -d/--data, -H, -i, -v, -o, --cacert) beside
 * tether's own. Everything wrong with them is a usage error (exit 2) naming the option.
 */
import { integer, parseCommandArgs, readOptionFile, valueOrFile } from '../util/args.js';
import { usageError } from '../util/errors.js';
import { pkcs11Options } from '../util/pem.js';
import type { CommandContext } from '../util/context.js';

const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RESERVED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'session-binding-proof', 'keep-alive', 'upgrade', 'te']);

export const FETCH_OPTIONS = {
  token: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  cacert: { type: 'string' },
  count: { type: 'string', short: 'n' },
  http2: { type: 'boolean' },
  'http1.1': { type: 'boolean' },
  'per-request-claims': { type: 'boolean' },
  'allow-tls12': { type: 'boolean' },
  json: { type: 'boolean' },
  method: { type: 'string' },
  request: { type: 'string', short: 'X' },
  data: { type: 'string', short: 'd' },
  header: { type: 'string', short: 'H', multiple: true },
  include: { type: 'boolean', short: 'i' },
  verbose: { type: 'boolean', short: 'v' },
  output: { type: 'string', short: 'o' },
  timeout: { type: 'string' },
  'pkcs11-module': { type: 'string' },
  'pkcs11-pin-file': { type: 'string' },
} as const;

export interface FetchPlan {
  url: URL;
  count: number;
  timeoutSeconds: number;
  token: string | undefined;
  method: string;
  body: string | Buffer | undefined;
  headers: Record<string, string>;
  cert: string;
  key: string;
  ca: string | undefined;
  output: string | undefined;
  json: boolean;
  include: boolean;
  verbose: boolean;
  http1: boolean;
  allowTls12: boolean;
  perRequestClaims: boolean;
  /** `--pkcs11-module` / `--pkcs11-pin-file`, as SessionBoundClient.create takes them. */
  pkcs11: ReturnType<typeof pkcs11Options>;
}

function parseUrl(positionals: string[]): URL {
  if (positionals.length === 0) throw usageError('a URL is required');
  if (positionals.length > 1) throw usageError(`one URL only (got ${positionals.length}: ${positionals.join(' ')})`);
  let url: URL;
  try {
    url = new URL(positionals[0] as string);
  } catch {
    throw usageError(`'${positionals[0]}' is not a URL`);
  }
  if (url.protocol !== 'https:') throw usageError(`the URL must be https (got ${url.protocol.replace(/:$/, '')})`);
  return url;
}

function parseToken(given: string | undefined, env: CommandContext['env']): string | undefined {
  const raw = given ?? env.TETHER_TOKEN;
  const source = given === undefined ? 'TETHER_TOKEN' : '--token';
  if (raw === undefined || raw === '') return undefined;
  const token = valueOrFile(raw, source).trim();
  if (!B64TOKEN.test(token)) throw usageError(`${source} is not a valid bearer token (RFC 6750 b64token)`);
  return token;
}

function parseHeaders(lines: readonly string[], hasToken: boolean): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).trim().toLowerCase();
    const value = colon < 0 ? '' : line.slice(colon + 1).trim();
    if (!TOKEN_CHARS.test(name)) throw usageError(`--header '${line}' is not 'Name: value'`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) throw usageError(`--header ${name} holds control characters`);
    if (RESERVED_HEADERS.has(name) || (name === 'authorization' && hasToken)) throw usageError(`--header cannot set ${name}`);
    headers[name] = value;
  }
  return headers;
}

/** One of two spellings of the same option, or a usage error when both are given. */
function either(a: string | undefined, b: string | undefined, names: string): string | undefined {
  if (a !== undefined && b !== undefined) throw usageError(`give one of ${names}`);
  return a ?? b;
}

export function parseFetchArgs(args: string[], env: CommandContext['env']): FetchPlan {
  const { values, positionals } = parseCommandArgs({ args, allowPositionals: true, options: FETCH_OPTIONS });
  const url = parseUrl(positionals);
  if (values.http2 === true && values['http1.1'] === true) throw usageError('give at most one of --http2 and --http1.1');
  if (values.json === true && (values.include === true || values.verbose === true)) throw usageError('--json is a report of its own: not with -i or -v');
  if (values.cert === undefined || values.key === undefined) throw usageError('--cert and --key are required (the client certificate and its key)');
  const token = parseToken(values.token, env);
  const methodArg = either(values.method, values.request, '--method and -X/--request');
  const method = (methodArg ?? (values.data === undefined ? 'GET' : 'POST')).toUpperCase();
  if (!TOKEN_CHARS.test(method)) throw usageError(`--request '${methodArg}' is not an HTTP method`);
  return {
    url,
    count: integer(values.count, '--count', 1, 1_000_000, 1),
    timeoutSeconds: integer(values.timeout, '--timeout', 1, 3600, 30),
    token,
    method,
    body: values.data === undefined ? undefined : values.data.startsWith('@') ? readOptionFile(values.data.slice(1), '--data') : values.data,
    headers: parseHeaders(values.header ?? [], token !== undefined),
    cert: values.cert,
    key: values.key,
    ca: either(values.ca, values.cacert, '--ca and --cacert'),
    output: values.output,
    json: values.json === true,
    include: values.include === true,
    verbose: values.verbose === true,
    http1: values['http1.1'] === true,
    allowTls12: values['allow-tls12'] === true,
    perRequestClaims: values['per-request-claims'] === true,
    pkcs11: pkcs11Options(values),
  };
}
