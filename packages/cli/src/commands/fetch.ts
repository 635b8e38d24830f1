import { closeSync, openSync, writeSync } from 'node:fs';
import { ConfigurationError, parseWwwAuthenticate, SessionBoundClient, type SessionBoundClientStats, type SessionBoundResponse } from '@tether/core';
import { wantsHelp } from '../util/args.js';
import { resolveContext, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';
import { loadCaBundle, loadClientCredentials, PKCS11_HELP } from '../util/pem.js';
import { parseFetchArgs, type FetchPlan } from './fetch-args.js';

export const fetchHelp = `Usage: tether fetch URL --cert FILE --key FILE|pkcs11:URI [--ca FILE] [--token TOKEN] [options]

Like curl, for session-bound APIs: prints the response body. Sends the request N times, one after
another, with @tether/core's SessionBoundClient: Authorization: Bearer TOKEN plus a
Session-Binding-Proof signed with the client key over this TLS connection's exporter. The proof is
signed once per (token, connection) and reused; a use_session_binding or invalid_proof answer is
retried once with a fresh proof.

Output: each response body on stdout (or in -o FILE). -i puts the status line and headers before
each body; -v writes to stderr the TLS version and exporter of each connection, one line per
request ("< STATUS [ERROR] proof signed|proof reused|no proof") and the summary
  requests=N proofs_signed=P connections=C retries=R
With --json: one JSON document {"results":[{"status",...}],"body":LAST-BODY,"stats":{...}}
(the body parsed when it is JSON, else a string) instead.

Options:
  URL                   https URL to request (required)
  --token TOKEN         access token; @FILE reads it from FILE (default: the TETHER_TOKEN
                        environment variable, which may also be @FILE; without either, the
                        request carries no credentials)
  --cert FILE           client certificate, PEM (required; presented in the mTLS handshake)
  --key FILE|pkcs11:URI its private key (required; signs the handshake and the proofs): a PEM
                        file, or a PKCS#11 URI (RFC 7512) of a key held in a token, e.g.
                        'pkcs11:token=tether;object=agent;type=private?pin-source=file:/run/pin'
${PKCS11_HELP}  --ca, --cacert FILE   CA certificates, PEM, that verify the server (default: Node's roots)
  -n, --count N         number of requests, sent one after another (default 1)
  --http2               one multiplexed HTTP/2 connection (default)
  --http1.1             HTTP/1.1 with keep-alive
  --per-request-claims  add jti, htm and htu to every proof (one signature per request)
  --allow-tls12         also offer TLS 1.2 (default: TLS 1.3 only)
  -X, --request METHOD  request method (default GET, or POST with --data); --method is the same
  -d, --data BODY       request body; @FILE reads it from FILE
  -H, --header 'NAME: VALUE'
                        extra request header; repeatable
  -i, --include         print the status line and response headers before each body
  -v, --verbose         connection, proof and per-request lines and the summary on stderr
  -o, --output FILE     write the response bodies to FILE instead of stdout
  --timeout SECONDS     per-request timeout, connection setup included (default 30)
  --json                print one JSON report instead (not with -i or -v)
  -h, --help            show this help

Exit status: 0 when every response is 2xx, 1 otherwise or when a request fails (connection
refused, TLS failure, timeout), 2 on bad arguments or unreadable files.
`;

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

/** After a TLS 1.3 handshake the server can still refuse the client certificate: say so. */
function withHint(message: string): string {
  return /without a response|alert|ECONNRESET|socket hang up/i.test(message) ? `${message} (the server may have refused the client certificate)` : message;
}

async function openClient(plan: FetchPlan): Promise<SessionBoundClient> {
  const { cert, key } = loadClientCredentials(plan.cert, plan.key);
  const ca = plan.ca === undefined ? undefined : loadCaBundle(plan.ca, '--ca');
  try {
    return await SessionBoundClient.create({
      cert: cert.pem,
      key,
      pkcs11: plan.pkcs11,
      ...(ca === undefined ? {} : { ca }),
      protocol: plan.http1 ? 'http/1.1' : 'h2',
      allowTls12: plan.allowTls12,
      perRequestClaims: plan.perRequestClaims,
      maxConnectionsPerOrigin: 1,
      timeoutMs: plan.timeoutSeconds * 1000,
    });
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    // A bad PKCS#11 URI, module, PIN or key is bad input, like a bad key file.
    if (typeof code === 'string' && code.startsWith('ERR_PKCS11_')) throw usageError(`--key: ${(error as Error).message}`, error);
    if (error instanceof ConfigurationError) throw usageError(error.message, error);
    throw error;
  }
}

/** Where bodies go (stdout or -o FILE) and what -v says on stderr. */
class FetchOutput {
  readonly #fd: number | undefined;
  readonly #seen = new Set<number>();
  constructor(
    private readonly plan: FetchPlan,
    private readonly ctx: CommandContext,
  ) {
    try {
      this.#fd = plan.output === undefined ? undefined : openSync(plan.output, 'w');
    } catch (error) {
      throw runtimeError(`cannot write --output ${plan.output}: ${describeError(error)}`, error);
    }
  }

  #body(data: string | Buffer): void {
    if (this.#fd === undefined) this.ctx.stdout.write(data);
    else writeSync(this.#fd, typeof data === 'string' ? Buffer.from(data) : data);
  }

  response(n: number, response: SessionBoundResponse, signedBefore: number, signedAfter: number): void {
    if (this.plan.json) return;
    const error = challengeError(response);
    if (this.plan.verbose) {
      if (!this.#seen.has(response.connectionId)) {
        this.#seen.add(response.connectionId);
        this.ctx.stderr.write(`* connection ${response.connectionId}: ${response.tlsVersion ?? 'TLS'}, exporter EXPORTER-oauth-tls-session-bound available\n`);
      }
      const proof = this.plan.token === undefined ? 'no proof' : signedAfter > signedBefore ? 'proof signed' : 'proof reused';
      this.ctx.stderr.write(`> ${this.plan.method} ${this.plan.url.pathname}${this.plan.url.search} (${n})\n< ${response.status}${error === undefined ? '' : ` ${error}`} ${proof}${response.retried ? ' (retried)' : ''}\n`);
    }
    if (this.plan.include) {
      const lines = Object.entries(response.headers)
        .filter(([name, value]) => !name.startsWith(':') && value !== undefined)
        .flatMap(([name, value]) => (Array.isArray(value) ? value : [value as string]).map((v) => `${name}: ${v}\r\n`));
      this.#body(`${this.plan.http1 ? 'HTTP/1.1' : 'HTTP/2'} ${response.status}\r\n${lines.join('')}\r\n`);
    }
    this.#body(response.body);
  }

  finish(results: FetchResult[], last: SessionBoundResponse | undefined, stats: SessionBoundClientStats, failure: string | undefined): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    if (this.plan.json) {
      const document: Record<string, unknown> = { results, body: last === undefined ? null : parseBody(last), stats: { ...stats } };
      if (failure !== undefined) document.error = failure;
      this.ctx.stdout.write(`${JSON.stringify(document)}\n`);
    } else if (this.plan.verbose) {
      this.ctx.stderr.write(`* requests=${results.length} proofs_signed=${stats.proofsSigned} connections=${stats.connectionsOpened} retries=${stats.retries}\n`);
    }
  }
}

/** `tether fetch`: session-bound requests from the command line. */
export async function fetchCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(fetchHelp);
    return 0;
  }
  const plan = parseFetchArgs(args, ctx.env);
  const client = await openClient(plan);
  const output = new FetchOutput(plan, ctx);
  const results: FetchResult[] = [];
  let last: SessionBoundResponse | undefined;
  let failure: string | undefined;
  try {
    for (let i = 1; i <= plan.count; i++) {
      const signedBefore = client.stats.proofsSigned;
      let response: SessionBoundResponse;
      try {
        // The deadline covers the TLS handshake too (the client's own timeout starts with the request).
        const init = { method: plan.method, headers: plan.headers, ...(plan.token === undefined ? {} : { token: plan.token }), ...(plan.body === undefined ? {} : { body: plan.body }) };
        response = await deadline(client.request(plan.url, init), plan.timeoutSeconds);
      } catch (error) {
        failure = `request ${i} to ${plan.url.origin} failed: ${withHint(describeError(error))}`;
        break;
      }
      if (response.status === 0) {
        failure = `request ${i} to ${plan.url.origin} failed: ${withHint('the stream ended without a response')}`;
        break;
      }
      last = response;
      const error = challengeError(response);
      results.push({ status: response.status, retried: response.retried, connection: response.connectionId, ...(error === undefined ? {} : { error }) });
      output.response(i, response, signedBefore, client.stats.proofsSigned);
    }
  } finally {
    // A connection that never completed its handshake may never close: do not wait for it.
    await deadline(client.close(), failure === undefined ? 5 : 0.5).catch(() => undefined);
  }
  output.finish(results, last, client.stats, failure);
  if (failure !== undefined) throw runtimeError(failure);
  return results.every((r) => r.status >= 200 && r.status < 300) ? 0 : 1;
}
