import { writeFileSync } from 'node:fs';
import { ConfigurationError, parseWwwAuthenticate, SessionBoundClient, type SessionBoundClientStats, type SessionBoundResponse } from '@tether/core';
import { integer, parseCommandArgs, readOptionFile, valueOrFile, wantsHelp } from '../util/args.js';
import { resolveContext, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';
import { loadCaBundle, loadClientCredentials, PKCS11_HELP, pkcs11Options } from '../util/pem.js';

export const fetchHelp = `Usage: tether fetch URL --cert FILE --key FILE|pkcs11:URI [--ca FILE] [--token TOKEN] [options]

Like curl, for session-bound APIs. Sends the request N times, one after another, with
@tether/core's SessionBoundClient: Authorization: Bearer TOKEN plus a Session-Binding-Proof
signed with the client key over this TLS connection's exporter. The proof is signed once per
(token, connection) and reused; a use_session_binding or invalid_proof answer is retried once
with a fresh proof.

Output (stdout): one line per request, "I STATUS" ("I STATUS ERROR" when the answer carries a
WWW-Authenticate error), then a summary line:
  requests=N proofs_signed=P connections=C retries=R
With --json: one JSON document {"results":[{"status",...}],"body":LAST-BODY,"stats":{...}}
(the body parsed when it is JSON, else a string).

Options:
  URL                   https URL to request (required)
  --token TOKEN         access token; @FILE reads it from FILE (default: the TETHER_TOKEN
                        environment variable, which may also be @FILE; without either, the
                        request carries no credentials)
  --cert FILE           client certificate, PEM (required; presented in the mTLS handshake)
  --key FILE|pkcs11:URI its private key (required; signs the handshake and the proofs): a PEM
                        file, or a PKCS#11 URI (RFC 7512) of a key held in a token, e.g.
                        'pkcs11:token=tether;object=agent;type=private?pin-source=file:/run/pin'
${PKCS11_HELP}  --ca FILE             CA certificates, PEM, that verify the server (default: Node's roots)
  -n, --count N         number of requests, sent one after another (default 1)
  --http2               one multiplexed HTTP/2 connection (default)
  --http1.1             HTTP/1.1 with keep-alive
  --per-request-claims  add jti, htm and htu to every proof (one signature per request)
  --allow-tls12         also offer TLS 1.2 (default: TLS 1.3 only)
  --method METHOD       request method (default GET, or POST with --data)
  --data BODY           request body; @FILE reads it from FILE
  -H, --header 'NAME: VALUE'
                        extra request header; repeatable
  -o, --output FILE     write the last response body to FILE
  --timeout SECONDS     per-request timeout, connection setup included (default 30)
  --json                print one JSON document instead of lines
  -h, --help            show this help

Exit status: 0 when every response is 2xx, 1 otherwise or when a request fails (connection
refused, TLS failure, timeout), 2 on bad arguments or unreadable files.
`;

const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RESERVED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'session-binding-proof', 'keep-alive', 'upgrade', 'te']);

export interface FetchResult {
  status: number;
  /** The `error` of a Bearer challenge, when the response carries one. */
  error?: string;
  retried: boolean;
  connection: number;
}

function challengeError(response: SessionBoundResponse): string | undefined {
  return parseWwwAuthenticate(response.headers['www-authenticate']).find((c) => c.scheme === 'bearer')?.params.error;
}

function parseBody(response: SessionBoundResponse): unknown {
  const text = response.body.toString('utf8');
  const type = response.headers['content-type'];
  if (typeof type === 'string' && /\bjson\b/i.test(type)) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** `promise`, or a rejection after `seconds`. */
function deadline<T>(promise: Promise<T>, seconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** An error of @tether/pkcs11 (a bad URI, module, PIN or key): bad input. */
function isPkcs11Error(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PKCS11_');
}

/** After a TLS 1.3 handshake the server can still refuse the client certificate: say so. */
function withHint(message: string): string {
  return /without a response|alert|ECONNRESET|socket hang up/i.test(message)
    ? `${message} (the server may have refused the client certificate)`
    : message;
}

function statsOf(stats: SessionBoundClientStats): Record<string, number> {
  return { ...stats };
}

/** `tether fetch`: session-bound requests from the command line. */
export async function fetchCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(fetchHelp);
    return 0;
  }
  const { values, positionals } = parseCommandArgs({
    args,
    allowPositionals: true,
    options: {
      token: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ca: { type: 'string' },
      count: { type: 'string', short: 'n' },
      http2: { type: 'boolean' },
      'http1.1': { type: 'boolean' },
      'per-request-claims': { type: 'boolean' },
      'allow-tls12': { type: 'boolean' },
      json: { type: 'boolean' },
      method: { type: 'string' },
      data: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true },
      output: { type: 'string', short: 'o' },
      timeout: { type: 'string' },
      'pkcs11-module': { type: 'string' },
      'pkcs11-pin-file': { type: 'string' },
    },
  });
  if (positionals.length === 0) throw usageError('a URL is required');
  if (positionals.length > 1) throw usageError(`one URL only (got ${positionals.length}: ${positionals.join(' ')})`);
  let url: URL;
  try {
    url = new URL(positionals[0] as string);
  } catch {
    throw usageError(`'${positionals[0]}' is not a URL`);
  }
  if (url.protocol !== 'https:') throw usageError(`the URL must be https (got ${url.protocol.replace(/:$/, '')})`);
  if (values.http2 === true && values['http1.1'] === true) throw usageError('give at most one of --http2 and --http1.1');
  const count = integer(values.count, '--count', 1, 1_000_000, 1);
  const timeout = integer(values.timeout, '--timeout', 1, 3600, 30);
  if (values.cert === undefined || values.key === undefined) throw usageError('--cert and --key are required (the client certificate and its key)');

  const rawToken = values.token ?? ctx.env.TETHER_TOKEN;
  const tokenSource = values.token === undefined ? 'TETHER_TOKEN' : '--token';
  let token: string | undefined;
  if (rawToken !== undefined && rawToken !== '') {
    token = valueOrFile(rawToken, tokenSource).trim();
    if (!B64TOKEN.test(token)) throw usageError(`${tokenSource} is not a valid bearer token (RFC 6750 b64token)`);
  }
  const method = (values.method ?? (values.data === undefined ? 'GET' : 'POST')).toUpperCase();
  if (!METHOD.test(method)) throw usageError(`--method '${values.method}' is not an HTTP method`);
  const body = values.data === undefined ? undefined : values.data.startsWith('@') ? readOptionFile(values.data.slice(1), '--data') : values.data;
  const headers: Record<string, string> = {};
  for (const line of values.header ?? []) {
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon).trim().toLowerCase();
    const value = colon < 0 ? '' : line.slice(colon + 1).trim();
    if (!HEADER_NAME.test(name)) throw usageError(`--header '${line}' is not 'Name: value'`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) throw usageError(`--header ${name} holds control characters`);
    if (RESERVED_HEADERS.has(name) || (name === 'authorization' && token !== undefined)) throw usageError(`--header cannot set ${name}`);
    headers[name] = value;
  }

  const { cert, key } = loadClientCredentials(values.cert, values.key);
  const ca = values.ca === undefined ? undefined : loadCaBundle(values.ca);
  let client: SessionBoundClient;
  try {
    client = await SessionBoundClient.create({
      cert: cert.pem,
      key,
      pkcs11: pkcs11Options(values),
      ...(ca === undefined ? {} : { ca }),
      protocol: values['http1.1'] === true ? 'http/1.1' : 'h2',
      allowTls12: values['allow-tls12'] === true,
      perRequestClaims: values['per-request-claims'] === true,
      maxConnectionsPerOrigin: 1,
      timeoutMs: timeout * 1000,
    });
  } catch (error) {
    if (isPkcs11Error(error)) throw usageError(`--key: ${(error as Error).message}`, error);
    if (error instanceof ConfigurationError) throw usageError(error.message, error);
    throw error;
  }

  const results: FetchResult[] = [];
  let last: SessionBoundResponse | undefined;
  let failure: string | undefined;
  try {
    for (let i = 1; i <= count; i++) {
      let response: SessionBoundResponse;
      try {
        // The deadline covers the TLS handshake too (the client's own timeout starts with the request).
        response = await deadline(
          client.request(url, {
            method,
            headers,
            ...(token === undefined ? {} : { token }),
            ...(body === undefined ? {} : { body }),
          }),
          timeout,
        );
      } catch (error) {
        failure = `request ${i} to ${url.origin} failed: ${withHint(describeError(error))}`;
        break;
      }
      if (response.status === 0) {
        failure = `request ${i} to ${url.origin} failed: ${withHint('the stream ended without a response')}`;
        break;
      }
      last = response;
      const error = challengeError(response);
      const result: FetchResult = { status: response.status, retried: response.retried, connection: response.connectionId };
      if (error !== undefined) result.error = error;
      results.push(result);
      if (values.json !== true) ctx.stdout.write(`${i} ${response.status}${error === undefined ? '' : ` ${error}`}\n`);
    }
  } finally {
    // A connection that never completed its handshake may never close: do not wait for it.
    await deadline(client.close(), failure === undefined ? 5 : 0.5).catch(() => undefined);
  }

  const s = client.stats;
  if (values.output !== undefined && last !== undefined) {
    try {
      writeFileSync(values.output, last.body);
    } catch (error) {
      throw runtimeError(`cannot write --output ${values.output}: ${describeError(error)}`, error);
    }
  }
  if (values.json === true) {
    const document: Record<string, unknown> = { results, body: last === undefined ? null : parseBody(last), stats: statsOf(s) };
    if (failure !== undefined) document.error = failure;
    ctx.stdout.write(`${JSON.stringify(document)}\n`);
  } else {
    ctx.stdout.write(`requests=${results.length} proofs_signed=${s.proofsSigned} connections=${s.connectionsOpened} retries=${s.retries}\n`);
  }
  if (failure !== undefined) throw runtimeError(failure);
  return results.every((r) => r.status >= 200 && r.status < 300) ? 0 : 1;
}
