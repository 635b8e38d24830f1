/**
 * `tether egress` and `tether ingress`: argument parsing (node:util parseArgs), start-up, and
 * graceful shutdown on SIGTERM / SIGINT (or `io.signal`). Exit status: 0 after a clean shutdown,
 * 1 on a runtime failure (e.g. the port is taken), 2 on bad arguments or configuration, reported
 * as one line on standard error without a stack.
 */
import type { ParseArgsConfig } from 'node:util';
import { CommandArgsError, parseCommandArgs } from '@tether/core/internal';
import { jwksFromFile, jwtAccessTokenValidator, remoteJwks, type AccessTokenValidator } from '@tether/core';
import { isConfigError, LOG_LEVELS, readConfigFile, SidecarConfigError, type LogLevel } from './config.js';
import { checkCredentialFiles, followCredentialFiles, openCredentialKey, reloadOnSighup, type CredentialFiles } from './credentials-args.js';
import type { ReloadableCredentials } from './credentials/index.js';
import { reloadableSource } from './credentials/source.js';
import { resolveEgressOptions, startEgress, type EgressConfig, type EgressRoute } from './egress/index.js';
import { ingressHelp } from './ingress/help.js';
import { INGRESS_DEFAULTS, resolveIngressOptions, startResolvedIngress, type IngressConfig, type IngressOptions } from './ingress/index.js';
import { introspectionArgs, introspectionFromArgs, rejectStrayIntrospectionArgs } from './introspection-args.js';
import { createLogger, type LogOptions } from './log.js';

export { ingressHelp };

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

export const egressHelp = `Usage: tether egress --listen 127.0.0.1:PORT|unix:/path --cert FILE --key FILE [--ca FILE]
                     --route NAME=https://host[:port][/base] [--route ...] [options]

Egress sidecar: accepts plain HTTP/1.1 or h2c (prior knowledge) from the co-located agent and
forwards over mTLS (HTTP/2 preferred), adding a Session-Binding-Proof signed once per
(token, upstream connection). The agent sends only 'Authorization: Bearer'.

Routing: a request goes to route NAME when its Host name is NAME, or when its path starts with
/NAME/ (the prefix is removed). Anything else is refused with 403.

Once it listens it prints exactly one JSON line on standard output:
  {"listening":"http://HOST:PORT","metrics":"http://HOST:PORT","pid":N}
(metrics only with --metrics-listen). Logs are JSON lines on standard error.

Options:
  --listen ADDR            loopback HOST:PORT or unix:/path (required)
  --cert FILE, --key FILE  client certificate and private key (PEM) used upstream (required)
  --key pkcs11:URI         or: the key held in a PKCS#11 token (RFC 7512 URI, e.g.
                           'pkcs11:token=tether;object=agent;type=private?pin-source=file:/run/pin');
                           the handshake signs through OpenSSL's pkcs11 engine, proofs by C_Sign
  --pkcs11-module PATH     PKCS#11 module (default: the URI's module-path, then PKCS11_MODULE_PATH)
  --pkcs11-pin-file FILE   the token's user PIN, when the URI has no pin-source
  --ca FILE                CA certificates that verify upstream servers (default: system roots)
                           --cert, --key and --ca are reloaded when the files are replaced and
                           on SIGHUP: new upstream connections (and tokens) use the new pair
                           (a token-held key stays; its certificate may be replaced)
  --route NAME=URL         an allowed destination (repeatable, at least one)
  --audience NAME=AUD      audience a token must name to be sent to route NAME (repeatable;
                           default: the route's upstream origin)
  --token-policy P         audience (default) or none (no token check)
  --retry-buffer BYTES     bodies up to this Content-Length are buffered for one retry on a
                           binding error (default 1048576); larger or unknown-length bodies stream
  --allow-tls12            also offer TLS 1.2 upstream
  --connect-retry SECONDS  keep retrying a refused / reset upstream connection attempt this long,
                           with backoff (default 2; 0 = off)
  --upstream-timeout SECONDS  longest wait for an upstream's response headers after the request
                           was sent; then the upstream request is cancelled and the agent gets
                           504 upstream_timeout (default 30; 0 = off)
  --agent-idle-timeout SECONDS  close an agent connection (HTTP/1.1 keep-alive or h2c session)
                           with no request in flight for this long (default 300; 0 = never)
  --token-endpoint URL     authorization server token endpoint: for --egress-token routes the
                           egress obtains tokens itself (client_credentials, tls_client_auth,
                           resource = the route's audience) when the agent sends no Authorization
  --client-id ID           client_id for --token-endpoint
  --egress-token NAME[=SCOPE]  route whose tokens the egress obtains (repeatable)
  --metrics-listen ADDR    Prometheus /metrics, /healthz and /readyz on HOST:PORT
  --log-level LEVEL        ${LOG_LEVELS.join(', ')} (default info); JSON lines on stderr
  --drain-timeout SECONDS  how long shutdown waits for in-flight requests (default 10)
  -h, --help               this text
`;

const common = {
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

/** The one argument parser of every tether command (`@tether/core/internal`); its errors are configuration errors (exit 2). */
function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: readonly string[], options: O) {
  try {
    return parseCommandArgs({ args: [...argv], options, allowPositionals: false, strict: true }).values;
  } catch (error) {
    throw error instanceof CommandArgsError ? new SidecarConfigError(error.message) : error;
  }
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new SidecarConfigError(`${flag} is required`);
  return value;
}

function logLevel(value: string | undefined): LogLevel {
  const level = value ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new SidecarConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  return level as LogLevel;
}

function seconds(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new SidecarConfigError(`${flag} must be a number of seconds`);
  return n * 1000;
}

function logOptions(level: LogLevel, io: CommandIO): LogOptions {
  return io.stderr === process.stderr ? { level } : { level, destination: io.stderr as NodeJS.WritableStream };
}

function resolveIO(io: Partial<CommandIO>): CommandIO {
  return {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    ...(io.signal === undefined ? {} : { signal: io.signal }),
    ...(io.onReady === undefined ? {} : { onReady: io.onReady }),
  };
}

/** Resolves on `io.signal` or on SIGTERM / SIGINT; listening starts at once, so a signal during start-up is not lost. */
function stopSignal(io: CommandIO): { stopped: Promise<string>; dispose(): void } {
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

type Started = { url: string; metrics: { url: string } | undefined; close(): Promise<void> };

/**
 * Follow the certificate files (reloaded on change and on SIGHUP until the end), start, print the
 * ready line, wait for the stop signal, close.
 */
async function run(name: string, io: CommandIO, files: CredentialFiles, level: LogLevel, start: (credentials: ReloadableCredentials) => Promise<Started>): Promise<number> {
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
function reportError(name: string, io: CommandIO, error: unknown): 1 | 2 {
  const message = (error instanceof Error ? error.message : String(error)).split('\n')[0] as string;
  const code = isConfigError(error) ? 2 : 1;
  io.stderr.write(`tether ${name}: ${message}${code === 2 ? ` (see 'tether ${name} --help')` : ''}\n`);
  return code;
}

function usage(name: string, io: CommandIO, error: unknown): number {
  if (isConfigError(error)) return reportError(name, io, error);
  throw error;
}

const egressArgs = {
  ...common,
  route: { type: 'string', multiple: true },
  audience: { type: 'string', multiple: true },
  'token-policy': { type: 'string' },
  'retry-buffer': { type: 'string' },
  'connect-retry': { type: 'string' },
  'upstream-timeout': { type: 'string' },
  'agent-idle-timeout': { type: 'string' },
  'token-endpoint': { type: 'string' },
  'client-id': { type: 'string' },
  'egress-token': { type: 'string', multiple: true },
  'pkcs11-module': { type: 'string' },
  'pkcs11-pin-file': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type EgressArgs = ReturnType<typeof parse<typeof egressArgs>>;

/** A number as given (NaN when not a number); resolveEgressOptions says what is wrong with it. */
function numberArg(value: string | undefined, scale = 1): number | undefined {
  if (value === undefined) return undefined;
  return value.trim() === '' ? Number.NaN : Number(value) * scale;
}

/** `NAME=VALUE` of a repeatable flag. */
function namedValue(spec: string, flag: string, expected: string): [string, string] {
  const i = spec.indexOf('=');
  if (i <= 0 || i === spec.length - 1) throw new SidecarConfigError(`${flag} expects ${expected}, got ${JSON.stringify(spec)}`);
  return [spec.slice(0, i), spec.slice(i + 1)];
}

/** --route, --audience and --egress-token as routes (what refers to an unknown route is an error). */
function egressRoutes(values: EgressArgs): EgressRoute[] {
  const audiences = new Map<string, string[]>();
  for (const a of values.audience ?? []) {
    const [name, aud] = namedValue(a, '--audience', 'NAME=AUDIENCE');
    audiences.set(name, [...(audiences.get(name) ?? []), aud]);
  }
  const routes: EgressRoute[] = (values.route ?? []).map((r) => {
    const [name, upstream] = namedValue(r, '--route', 'NAME=https://upstream');
    const aud = audiences.get(name);
    return { name, upstream, ...(aud === undefined ? {} : { audience: aud }) };
  });
  for (const name of audiences.keys()) if (!routes.some((r) => r.name === name)) throw new SidecarConfigError(`--audience names unknown route ${name}`);
  for (const spec of values['egress-token'] ?? []) {
    const i = spec.indexOf('=');
    const name = i < 0 ? spec : spec.slice(0, i);
    const route = routes.find((r) => r.name === name);
    if (route === undefined) throw new SidecarConfigError(`--egress-token names unknown route ${name}`);
    route.egressToken = true;
    if (i >= 0 && i < spec.length - 1) route.scope = spec.slice(i + 1);
  }
  return routes;
}

/** The `startEgress` configuration the arguments describe; values are checked by resolveEgressOptions. */
function egressConfig(values: EgressArgs, io: CommandIO, pem: CredentialFiles['pem']): EgressConfig {
  const tokenEndpoint = values['token-endpoint'];
  if (tokenEndpoint === undefined && values['client-id'] !== undefined) throw new SidecarConfigError('--client-id needs --token-endpoint');
  const numbers = {
    retryBufferBytes: numberArg(values['retry-buffer']),
    drainTimeoutMs: numberArg(values['drain-timeout'], 1000),
    connectRetryMs: numberArg(values['connect-retry'], 1000),
    upstreamTimeoutMs: numberArg(values['upstream-timeout'], 1000),
    agentIdleTimeoutMs: numberArg(values['agent-idle-timeout'], 1000),
  };
  return {
    listen: required(values.listen, '--listen'),
    ...pem,
    routes: egressRoutes(values),
    ...(tokenEndpoint === undefined ? {} : { tokenEndpoint: { endpoint: tokenEndpoint, clientId: values['client-id'] ?? '' } }),
    tokenPolicy: (values['token-policy'] ?? 'audience') as EgressConfig['tokenPolicy'],
    ...Object.fromEntries(Object.entries(numbers).filter(([, v]) => v !== undefined)),
    allowTls12: values['allow-tls12'] === true,
    ...(values['metrics-listen'] === undefined ? {} : { metricsListen: values['metrics-listen'] }),
    log: logOptions(logLevel(values['log-level']), io),
  };
}

/** `tether egress ARGS`: resolves the exit status. */
export async function runEgressCommand(argv: readonly string[], partialIO: Partial<CommandIO> = {}): Promise<number> {
  const io = resolveIO(partialIO);
  let config: EgressConfig;
  let files: CredentialFiles;
  let level: LogLevel;
  try {
    const values = parse(argv, egressArgs);
    if (values.help === true) {
      io.stdout.write(egressHelp);
      return 0;
    }
    level = logLevel(values['log-level']);
    files = checkCredentialFiles(values, { caRequired: false, pkcs11: true });
    config = egressConfig(values, io, files.pem);
    resolveEgressOptions(config); // every option checked before anything starts
  } catch (error) {
    return usage('egress', io, error);
  }
  // The files are followed from the start on; the PEM read for the checks is not used.
  return run('egress', io, files, level, (credentials) => startEgress({ ...config, cert: undefined, key: undefined, ca: undefined, credentials }));
}

const ingressArgs = {
  ...common,
  upstream: { type: 'string' },
  'jwks-url': { type: 'string' },
  'jwks-file': { type: 'string' },
  'jwks-ca': { type: 'string' },
  issuer: { type: 'string' },
  audience: { type: 'string', multiple: true },
  ...introspectionArgs,
  'minimum-binding': { type: 'string' },
  'required-scope': { type: 'string', multiple: true },
  resource: { type: 'string' },
  'authorization-server': { type: 'string', multiple: true },
  'strip-authorization': { type: 'boolean' },
  'max-requests-per-connection': { type: 'string' },
  'app-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'proxy-protocol': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

type IngressArgs = ReturnType<typeof parse<typeof ingressArgs>>;

/** The token validator: JWTs with keys from --jwks-url / --jwks-file, or --introspection-url. */
function ingressTokens(values: IngressArgs, io: CommandIO, credentials: { cert: string; key: string }): AccessTokenValidator {
  const sources = (['jwks-url', 'jwks-file', 'introspection-url'] as const).filter((k) => values[k] !== undefined);
  if (sources.length !== 1) throw new SidecarConfigError('exactly one of --jwks-url, --jwks-file or --introspection-url is required');
  const extraCa = values['jwks-ca'] === undefined ? undefined : readConfigFile(values['jwks-ca'], '--jwks-ca');
  const audience = values.audience ?? [];
  const introspectionUrl = values['introspection-url'];
  if (introspectionUrl !== undefined) {
    return introspectionFromArgs(
      { ...values, 'introspection-url': introspectionUrl },
      {
        env: io.env,
        ...credentials,
        ...(extraCa === undefined ? {} : { ca: extraCa }),
        ...(values.issuer === undefined ? {} : { issuer: values.issuer }),
        audience,
        log: createLogger('ingress', logOptions(logLevel(values['log-level']), io)),
      },
    );
  }
  rejectStrayIntrospectionArgs(values);
  const issuer = required(values.issuer, '--issuer');
  if (audience.length === 0) throw new SidecarConfigError('--audience is required with --jwks-url or --jwks-file');
  const keys = values['jwks-file'] !== undefined ? jwksFromFile(values['jwks-file']) : remoteJwks(values['jwks-url'] as string, extraCa === undefined ? {} : { ca: extraCa });
  return jwtAccessTokenValidator({ keys, issuer, audience });
}

/** The `startIngress` configuration the arguments describe; values are checked by resolveIngressOptions. */
function ingressConfig(values: IngressArgs, io: CommandIO, pem: CredentialFiles['pem']): IngressConfig {
  const maxRaw = values['max-requests-per-connection'];
  return {
    listen: required(values.listen, '--listen'),
    ...pem,
    upstream: required(values.upstream, '--upstream'),
    // The introspection client's default certificate is --cert / --key as read at start (not reloaded).
    tokens: ingressTokens(values, io, pem),
    minimumBinding: (values['minimum-binding'] ?? 'session') as IngressConfig['minimumBinding'] & string,
    ...(values['required-scope'] === undefined ? {} : { requiredScopes: values['required-scope'] }),
    ...(values.resource === undefined ? {} : { resource: values.resource }),
    authorizationServers: values['authorization-server'] ?? (values.issuer === undefined ? [] : [values.issuer]),
    passAuthorization: values['strip-authorization'] !== true,
    allowTls12: values['allow-tls12'] === true,
    ...(values['metrics-listen'] === undefined ? {} : { metricsListen: values['metrics-listen'] }),
    drainTimeoutMs: seconds(values['drain-timeout'], '--drain-timeout', 10_000),
    ...(maxRaw === undefined ? {} : { maxRequestsPerConnection: maxRaw.trim() === '' ? Number.NaN : Number(maxRaw) }),
    appTimeoutMs: seconds(values['app-timeout'], '--app-timeout', INGRESS_DEFAULTS.appTimeoutMs),
    idleTimeoutMs: seconds(values['idle-timeout'], '--idle-timeout', INGRESS_DEFAULTS.idleTimeoutMs),
    proxyProtocol: values['proxy-protocol'] === true,
    log: logOptions(logLevel(values['log-level']), io),
  };
}

/** The one line `tether egress` and `tether ingress` print on standard output once they listen. */
export function readyLine(sidecar: { url: string; metrics: { url: string } | undefined }): string {
  return `${JSON.stringify({ listening: sidecar.url, ...(sidecar.metrics === undefined ? {} : { metrics: sidecar.metrics.url }), pid: process.pid })}\n`;
}

/** `tether ingress ARGS`: resolves the exit status. */
export async function runIngressCommand(argv: readonly string[], partialIO: Partial<CommandIO> = {}): Promise<number> {
  const io = resolveIO(partialIO);
  let options: IngressOptions;
  let files: CredentialFiles;
  let level: LogLevel;
  try {
    const values = parse(argv, ingressArgs);
    if (values.help === true) {
      io.stdout.write(ingressHelp);
      return 0;
    }
    level = logLevel(values['log-level']);
    files = checkCredentialFiles(values, { caRequired: true });
    options = resolveIngressOptions(ingressConfig(values, io, files.pem));
  } catch (error) {
    return usage('ingress', io, error);
  }
  // The files are followed from the start on; the PEM read for the checks is not used.
  return run('ingress', io, files, level, (credentials) => startResolvedIngress({ ...options, credentials: reloadableSource(credentials) }));
}
