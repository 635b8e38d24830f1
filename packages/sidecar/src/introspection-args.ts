/**
 * `tether ingress --introspection-url`: how the ingress authenticates to the RFC 7662 endpoint
 * (`--introspection-auth`, `--introspection-client-id`, `--introspection-cert/--introspection-key`,
 * `TETHER_INTROSPECTION_SECRET`) and where failed introspection calls are logged (warn).
 */
import type { ParseArgsConfig } from 'node:util';
import { introspectionValidator, type AccessTokenValidator, type IntrospectionAuthMethod, type IntrospectionClientAuth } from '@tether/core';
import { isConfigError, readConfigFile, SidecarConfigError } from './config.js';
import type { Logger } from './log.js';

export const INTROSPECTION_METHODS: readonly IntrospectionAuthMethod[] = ['tls_client_auth', 'private_key_jwt', 'client_secret_basic'];
export const SECRET_ENV = 'TETHER_INTROSPECTION_SECRET';

export const introspectionArgs = {
  'introspection-url': { type: 'string' },
  'introspection-auth': { type: 'string' },
  'introspection-client-id': { type: 'string' },
  'introspection-cert': { type: 'string' },
  'introspection-key': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export interface IntrospectionArgValues {
  'introspection-url'?: string;
  'introspection-auth'?: string;
  'introspection-client-id'?: string;
  'introspection-cert'?: string;
  'introspection-key'?: string;
}

export interface IntrospectionContext {
  env: Record<string, string | undefined>;
  /** The ingress's own certificate and key (PEM), the defaults for tls_client_auth and private_key_jwt. */
  cert: string;
  key: string;
  /** `--jwks-ca`: CA bundle that verifies the endpoint. */
  ca?: string;
  issuer?: string;
  audience: readonly string[];
  /** Receives one warn line per failed introspection call. */
  log: Logger;
}

/**
 * The method: `--introspection-auth`, else `client_secret_basic` when the secret is in the
 * environment (what the ingress did before the option existed), else `tls_client_auth`.
 */
function methodOf(values: IntrospectionArgValues, env: IntrospectionContext['env']): IntrospectionAuthMethod {
  const given = values['introspection-auth'];
  if (given === undefined) return env[SECRET_ENV] !== undefined && env[SECRET_ENV] !== '' ? 'client_secret_basic' : 'tls_client_auth';
  if (!(INTROSPECTION_METHODS as readonly string[]).includes(given)) throw new SidecarConfigError(`--introspection-auth must be one of ${INTROSPECTION_METHODS.join(', ')}`);
  return given as IntrospectionAuthMethod;
}

function clientAuthOf(values: IntrospectionArgValues, ctx: IntrospectionContext): IntrospectionClientAuth {
  const method = methodOf(values, ctx.env);
  const clientId = values['introspection-client-id'];
  if (clientId === undefined || clientId === '') {
    throw new SidecarConfigError(`--introspection-url needs --introspection-client-id (the ingress's client_id at the authorization server, for ${method})`);
  }
  const certFile = values['introspection-cert'];
  const keyFile = values['introspection-key'];
  if (certFile !== undefined && method !== 'tls_client_auth') throw new SidecarConfigError('--introspection-cert is only used with --introspection-auth tls_client_auth');
  if (keyFile !== undefined && method === 'client_secret_basic') throw new SidecarConfigError('--introspection-key is not used with client_secret_basic');
  if (method === 'tls_client_auth' && (certFile === undefined) !== (keyFile === undefined)) {
    throw new SidecarConfigError('--introspection-cert and --introspection-key go together');
  }
  const key = keyFile === undefined ? ctx.key : readConfigFile(keyFile, '--introspection-key');
  switch (method) {
    case 'tls_client_auth':
      return { method, clientId, cert: certFile === undefined ? ctx.cert : readConfigFile(certFile, '--introspection-cert'), key };
    case 'private_key_jwt':
      return { method, clientId, key };
    case 'client_secret_basic': {
      const secret = ctx.env[SECRET_ENV];
      if (secret === undefined || secret === '') throw new SidecarConfigError(`--introspection-auth client_secret_basic needs the secret in ${SECRET_ENV}`);
      return { method, clientId, secret };
    }
  }
}

/** Introspection options without `--introspection-url` are a mistake, not something to ignore. */
export function rejectStrayIntrospectionArgs(values: IntrospectionArgValues): void {
  const stray = (Object.keys(introspectionArgs) as Array<keyof IntrospectionArgValues>).find((k) => k !== 'introspection-url' && values[k] !== undefined);
  if (stray !== undefined) throw new SidecarConfigError(`--${stray} is only used with --introspection-url`);
}

/** The introspection validator of `tether ingress --introspection-url URL`. Throws {@link SidecarConfigError}. */
export function introspectionFromArgs(values: IntrospectionArgValues & { 'introspection-url': string }, ctx: IntrospectionContext): AccessTokenValidator {
  let endpoint: URL;
  try {
    endpoint = new URL(values['introspection-url']);
  } catch {
    throw new SidecarConfigError('--introspection-url is not a URL');
  }
  const clientAuth = clientAuthOf(values, ctx);
  try {
    return introspectionValidator({
      endpoint,
      clientAuth,
      ...(ctx.ca === undefined ? {} : { tls: { ca: ctx.ca } }),
      ...(ctx.issuer === undefined ? {} : { issuer: ctx.issuer }),
      ...(ctx.audience.length === 0 ? {} : { audience: [...ctx.audience] }),
      onError: (failure) =>
        ctx.log.warn(
          {
            event: 'introspection_failed',
            reason: failure.reason,
            ...(failure.status === undefined ? {} : { status: failure.status }),
            ...(failure.error === undefined ? {} : { error: failure.error }),
            endpoint: failure.endpoint,
            method: clientAuth.method,
            err: failure.message,
          },
          'token introspection failed',
        ),
    });
  } catch (error) {
    if (isConfigError(error)) throw new SidecarConfigError(`--introspection-url: ${error.message}`, { cause: error });
    throw error;
  }
}
