import { InvalidTokenError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/**
 * Step a: the request arrived over TLS at an allowed version. Whether a client certificate is
 * needed depends on the token's binding and is checked in step c.
 */
export function checkMutualTls(ctx: VerificationContext): void {
  const { connection } = ctx.input;
  if (connection.protocol === null || !(ctx.options.tlsVersions as readonly string[]).includes(connection.protocol)) {
    throw new InvalidTokenError({ reason: 'tls_version', description: 'The TLS version of this connection is not accepted' });
  }
}
