/** `tether ingress`: its options, the token validator and configuration they make, and the command. */
import type { ParseArgsConfig } from 'node:util';
import { jwksFromFile, jwtAccessTokenValidator, remoteJwks, type AccessTokenValidator } from '@tether/core';
import { readConfigFile, SidecarConfigError, type LogLevel } from '../config.js';
import { reloadableSource } from '../credentials/source.js';
import { ingressHelp } from '../ingress/help.js';
import { checkCredentialFiles, type CredentialFiles } from '../credentials-args.js';
import { INGRESS_DEFAULTS, resolveIngressOptions, startResolvedIngress, type IngressConfig, type IngressOptions } from '../ingress/index.js';
import { introspectionArgs, introspectionFromArgs, rejectStrayIntrospectionArgs } from '../introspection-args.js';
import { createLogger } from '../log.js';
import { common, logLevel, logOptions, parse, required, resolveIO, run, seconds, usage, type CommandIO } from './shared.js';

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
