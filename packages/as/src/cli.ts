/**
 * `tether as`: run the authorization server from a configuration file, or in development mode
 * from a `tether pki init` directory. Prints one JSON line on stdout when ready
 * (`{"listening":"https://HOST:PORT","issuer":...,"pid":...}`, see {@link readyLine}); logs (pino
 * JSON) go to stderr. Runs until the abort signal fires (or, without one, SIGINT/SIGTERM), then
 * closes and resolves 0.
 */
import { isIP } from 'node:net';
import { pino } from 'pino';
import { CommandArgsError, parseCommandArgs } from '@tether/core/internal';
import { resolve } from 'node:path';
import { loadConfigFile, resolveConfig, type AuthorizationServerConfig, type ResolvedConfig } from './config.js';
import { devConfig } from './dev.js';
import { storeUrlProblem } from './store/url.js';
import { ConfigError } from './errors.js';
import { startAuthorizationServer, type AuthorizationServer, type StartOptions } from './server.js';

export interface AsCommandContext {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** Ends the server. Without it, SIGINT and SIGTERM of this process do. */
  signal?: AbortSignal;
}

export const asCommandHelp = `Usage: tether as --config FILE [--store URL] [--kek-file FILE | --kek-env NAME] [--metrics-listen HOST:PORT] [--log-level LEVEL]
       tether as --dev --pki DIR [--listen HOST:PORT] [--data DIR] [--store URL] [--kek-file FILE | --kek-env NAME]
                 [--metrics-listen HOST:PORT] [--log-level LEVEL]

Run the authorization server: mTLS client authentication (tls_client_auth,
self_signed_tls_client_auth) and private_key_jwt; client_credentials and token exchange
(RFC 8693); RFC 9068 access tokens bound to the client certificate and, when policy says
so, to the TLS session (cnf.tls_exp); introspection, revocation, RFC 8414 metadata, JWKS,
/health and /metrics. Configuration options: packages/as/README.md.

Options:
  --config FILE       JSON configuration; relative paths in it are relative to its directory
  --dev               development mode from a 'tether pki init' directory (needs --pki)
  --pki DIR           the PKI directory: ca.pem, server.pem, server.key, <name>.pem per client;
                      each client is client_id <name>, tls_client_auth by its SPIFFE URI SAN,
                      session-bound tokens, and may request or exchange tokens for any other
  --listen HOST:PORT  listen address in --dev mode (default 127.0.0.1:8443; port 0 picks one)
  --data DIR          state directory in --dev mode (default DIR/as-data): the embedded
                      store DIR/tether.db unless --store names another
  --store URL         where keys, revocations and replay ids live: sqlite:PATH (embedded,
                      one instance) or postgres://USER@HOST:PORT/DB (several instances
                      share it); overrides the configuration's store. Migrations run on
                      start; a schema newer than this version is refused
  --kek-file FILE     key-encryption key (32 bytes, hex or base64) sealing private signing
                      keys at rest; --kek-env NAME reads it from an environment variable
  --metrics-listen HOST:PORT
                      operations listener, plain HTTP: GET /metrics (Prometheus), /healthz
                      (liveness) and /readyz (readiness: 503 with a reason while starting,
                      draining, or without an active signing key or a valid certificate);
                      none by default. Port 0 picks one
  --log-level LEVEL   fatal, error, warn, info (default), debug, trace or silent
  -h, --help          show this help

Prints one JSON line on stdout when ready:
  {"listening":"https://HOST:PORT","issuer":"...","plain":"https://...","metrics":"http://...","pid":N}
(listening: the mTLS listener; plain only with plainTlsListen; metrics only with
--metrics-listen). Logs go to stderr as JSON lines; nothing else is written to stdout.
Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on bad arguments or an
invalid configuration (every problem is listed with its path).
`;

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type Level = (typeof LEVELS)[number];

class UsageError extends Error {}

function parseListen(value: string, option = '--listen'): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:[\]]*):(\d+)$/.exec(value);
  if (m === null) throw new UsageError(`${option} must be HOST:PORT or [IPv6]:PORT (got '${value}')`);
  const host = (m[1] as string) === '' ? '127.0.0.1' : (m[1] as string);
  if (value.startsWith('[') && isIP(host) !== 6) throw new UsageError(`${option}: '${host}' is not an IPv6 address`);
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new UsageError(`${option}: invalid host '${host}'`);
  const port = Number(m[2]);
  if (!Number.isSafeInteger(port) || port > 65535) throw new UsageError(`${option}: invalid port '${m[2] as string}'`);
  return { host, port };
}

/**
 * The ready line: `listening` (the mTLS listener's URL) first, then `issuer`, `plain` (the
 * plain-TLS listener, when configured), `metrics` (the operations listener, with
 * --metrics-listen) and `pid`.
 */
function readyLine(server: Pick<AuthorizationServer, 'url' | 'issuer' | 'plainUrl' | 'metricsUrl'>, pid = process.pid): string {
  return `${JSON.stringify({
    listening: server.url,
    issuer: server.issuer,
    ...(server.plainUrl === undefined ? {} : { plain: server.plainUrl }),
    ...(server.metricsUrl === undefined ? {} : { metrics: server.metricsUrl }),
    pid,
  })}\n`;
}

/** `--store` and `--kek-file`/`--kek-env` as configuration keys (they override the file's). */
function storageOptions(values: { store?: string; 'kek-file'?: string; 'kek-env'?: string }): Pick<AuthorizationServerConfig, 'store' | 'keyEncryption'> {
  if (values['kek-file'] !== undefined && values['kek-env'] !== undefined) throw new UsageError('--kek-file and --kek-env exclude each other');
  const problem = values.store === undefined ? undefined : storeUrlProblem(values.store);
  if (problem !== undefined) throw new UsageError(`--store ${problem}`);
  const kek = values['kek-file'] !== undefined ? { file: resolve(values['kek-file']) } : values['kek-env'] !== undefined ? { env: values['kek-env'] } : undefined;
  return { ...(values.store === undefined ? {} : { store: values.store }), ...(kek === undefined ? {} : { keyEncryption: kek }) };
}

/** Run `tether as` with `argv` (the arguments after `as`). Never throws; resolves the exit code. */
export async function runAuthorizationServerCommand(argv: readonly string[], context: Partial<AsCommandContext> = {}): Promise<number> {
  const stdout = context.stdout ?? process.stdout;
  const stderr = context.stderr ?? process.stderr;
  let values: {
    config?: string;
    dev?: boolean;
    pki?: string;
    listen?: string;
    data?: string;
    store?: string;
    'kek-file'?: string;
    'kek-env'?: string;
    'metrics-listen'?: string;
    'log-level'?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseCommandArgs({
      args: [...argv],
      options: {
        config: { type: 'string' },
        dev: { type: 'boolean' },
        pki: { type: 'string' },
        listen: { type: 'string' },
        data: { type: 'string' },
        store: { type: 'string' },
        'kek-file': { type: 'string' },
        'kek-env': { type: 'string' },
        'metrics-listen': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    // The one argument parser of every tether command (`@tether/core/internal`): one line naming the option.
    if (!(error instanceof CommandArgsError)) throw error;
    stderr.write(`tether as: ${error.message} (see 'tether as --help')\n`);
    return 2;
  }
  if (values.help === true) {
    stdout.write(asCommandHelp);
    return 0;
  }

  let config: ResolvedConfig;
  let level: Level;
  let metricsListen: { host: string; port: number } | undefined;
  try {
    if (values['metrics-listen'] !== undefined) metricsListen = parseListen(values['metrics-listen'], '--metrics-listen');
    const logLevel = values['log-level'];
    if (logLevel !== undefined && !(LEVELS as readonly string[]).includes(logLevel)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`);
    if (values.dev === true) {
      if (values.config !== undefined) throw new UsageError('--dev and --config exclude each other');
      if (values.pki === undefined) throw new UsageError('--dev needs --pki DIR');
      const listen = parseListen(values.listen ?? '127.0.0.1:8443');
      config = resolveConfig(
        {
          ...devConfig({ pkiDir: values.pki, host: listen.host, port: listen.port, ...(values.data === undefined ? {} : { dataDir: values.data }), logLevel: (logLevel ?? 'info') as Level }),
          ...storageOptions(values),
        },
        process.cwd(),
      );
    } else {
      if (values.config === undefined) throw new UsageError('--config FILE or --dev --pki DIR is required');
      for (const o of ['pki', 'listen', 'data'] as const) if (values[o] !== undefined) throw new UsageError(`--${o} is only used with --dev`);
      config = loadConfigFile(values.config);
      config = { ...config, ...storageOptions(values) };
      if (logLevel !== undefined) config = { ...config, logging: { level: logLevel as Level } };
    }
    level = config.logging.level;
  } catch (error) {
    if (error instanceof ConfigError) {
      stderr.write(`tether as: invalid configuration:\n${error.issues.map((i) => `  ${i}\n`).join('')}`);
      return 2;
    }
    if (error instanceof UsageError) {
      stderr.write(`tether as: ${error.message} (see 'tether as --help')\n`);
      return 2;
    }
    stderr.write(`tether as: ${(error as Error).message}\n`);
    return 1;
  }

  const logger = pino({ level }, { write: (line: string) => stderr.write(line) });
  return serve(config, { logger, ...(metricsListen === undefined ? {} : { metricsListen }) }, { stdout, stderr, ...(context.signal === undefined ? {} : { signal: context.signal }) });
}

/**
 * Resolves when the server should stop: `signal` aborted or, without one, the first SIGINT or
 * SIGTERM. Listening starts at once, so a signal during start-up closes the server once it is up
 * instead of killing the process; a second signal ends the process at once (default action).
 */
function stopSignal(signal: AbortSignal | undefined): { stopped: Promise<void>; dispose(): void } {
  if (signal !== undefined) {
    return { stopped: signal.aborted ? Promise.resolve() : new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })), dispose() {} };
  }
  // After the first signal the listeners are gone: a second one ends the process at once.
  let resolveStopped = () => undefined as void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  const dispose = () => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  };
  const stop = () => {
    dispose();
    resolveStopped();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return { stopped, dispose };
}

async function serve(config: ResolvedConfig, options: StartOptions, io: AsCommandContext): Promise<number> {
  const stop = stopSignal(io.signal);
  try {
    let server: AuthorizationServer;
    try {
      server = await startAuthorizationServer(config, options);
    } catch (error) {
      io.stderr.write(`tether as: cannot start: ${(error as Error).message}\n`);
      return 1;
    }
    io.stdout.write(readyLine(server));
    await stop.stopped;
    try {
      await server.close();
    } catch (error) {
      io.stderr.write(`tether as: error while stopping: ${(error as Error).message}\n`);
      return 1;
    }
    return 0;
  } finally {
    stop.dispose();
  }
}
