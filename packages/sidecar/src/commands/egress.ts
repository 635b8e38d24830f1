/** `tether egress`: its options, the routes and configuration they make, and the command. */
import type { ParseArgsConfig } from 'node:util';
import { LOG_LEVELS, SidecarConfigError, type LogLevel } from '../config.js';
import { checkCredentialFiles, type CredentialFiles } from '../credentials-args.js';
import { resolveEgressOptions, startEgress, type EgressConfig, type EgressRoute } from '../egress/index.js';
import { common, logLevel, logOptions, parse, required, resolveIO, run, usage, type CommandIO } from './shared.js';

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
