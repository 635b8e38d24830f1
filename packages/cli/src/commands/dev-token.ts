import { randomUUID, type KeyObject, type X509Certificate } from 'node:crypto';
import { SCOPE_LIST, certificateBoundConfirmation, sessionBoundConfirmation, type Confirmation } from '@tether/core';
import { integer, oneOf, parseCommandArgs, required, wantsHelp } from '../util/args.js';
import { resolveContext, type CommandContext } from '../util/context.js';
import { usageError } from '../util/errors.js';
import { issuerAlgorithm, jwkThumbprint, signCompactJws } from '../util/jws.js';
import { loadCertificate, loadPrivateKey, uriSans } from '../util/pem.js';

export const DEV_ISSUER = 'https://as.tether.local';
export const DEV_AUDIENCE = 'https://rs.tether.local';

export type TokenBinding = 'session' | 'certificate' | 'none';

export const devTokenHelp = `Usage: tether dev-token --issuer-key FILE --cert CLIENT.pem [options]

DEVELOPMENT HELPER, not an authorization server. Prints an RFC 9068 JWT access token
(header typ "at+jwt") signed with a key from 'tether dev-issuer', bound to a client
certificate:
  session      cnf {"x5t#S256", "tls_exp":"EXPORTER-oauth-tls-session-bound"}: the client must
               send a Session-Binding-Proof on every TLS connection (default)
  certificate  cnf {"x5t#S256"} (RFC 8705 certificate-bound)
  none         no cnf: a plain bearer token
Claims: iss, sub, aud, client_id, iat, exp, jti, scope (when given), cnf.

Options:
  --issuer-key FILE   issuer private key, PEM (P-256, P-384, Ed25519 or RSA; required)
  --kid KID           key id for the JWS header (default: RFC 7638 thumbprint of the key,
                      the default of 'tether dev-issuer')
  --cert FILE         client certificate (PEM) to bind to; required unless --binding none
  --binding KIND      session (default), certificate or none
  --iss ISSUER        issuer (default: ${DEV_ISSUER})
  --aud AUDIENCE      audience (default: ${DEV_AUDIENCE})
  --sub SUBJECT       subject (default: dev-user)
  --client-id ID      client_id (default: the certificate's URI SAN, e.g. its SPIFFE ID,
                      else dev-client)
  --scope SCOPES      space-separated scopes (default: none)
  --ttl SECONDS       lifetime in seconds (default: 3600, at most 31536000)
  -h, --help          show this help

Exit status: 0 on success, 2 on bad arguments or unreadable files.
`;

export interface DevTokenOptions {
  privateKey: KeyObject;
  kid?: string;
  binding?: TokenBinding;
  certificate?: X509Certificate;
  iss?: string;
  aud?: string;
  sub?: string;
  clientId?: string;
  scope?: string;
  ttl?: number;
  /** Issue time, epoch seconds (default now). */
  now?: number;
}

/** Mint a development RFC 9068 access token. */
export function mintDevToken(options: DevTokenOptions): string {
  const binding = options.binding ?? 'session';
  let cnf: Confirmation | undefined;
  if (binding !== 'none') {
    if (options.certificate === undefined) throw usageError('--cert is required unless --binding none');
    cnf = binding === 'session' ? sessionBoundConfirmation(options.certificate) : certificateBoundConfirmation(options.certificate);
  }
  const iat = options.now ?? Math.floor(Date.now() / 1000);
  const clientId = options.clientId ?? (options.certificate === undefined ? undefined : uriSans(options.certificate)[0]) ?? 'dev-client';
  const payload: Record<string, unknown> = {
    iss: options.iss ?? DEV_ISSUER,
    sub: options.sub ?? 'dev-user',
    aud: options.aud ?? DEV_AUDIENCE,
    client_id: clientId,
    iat,
    exp: iat + (options.ttl ?? 3600),
    jti: randomUUID(),
    ...(options.scope === undefined ? {} : { scope: options.scope }),
    ...(cnf === undefined ? {} : { cnf }),
  };
  const kid = options.kid ?? jwkThumbprint(options.privateKey);
  return signCompactJws({ typ: 'at+jwt', kid }, payload, options.privateKey);
}

function text(value: string | undefined, option: string): string | undefined {
  if (value === undefined) return undefined;
  // eslint-disable-next-line no-control-regex
  if (value === '' || value.length > 2048 || /[\u0000-\u001f\u007f]/.test(value)) throw usageError(`${option} must be 1 to 2048 characters without control characters`);
  return value;
}

/** `tether dev-token`: print a development access token. */
export async function devTokenCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(devTokenHelp);
    return 0;
  }
  const { values } = parseCommandArgs({
    args,
    options: {
      'issuer-key': { type: 'string' },
      kid: { type: 'string' },
      cert: { type: 'string' },
      binding: { type: 'string' },
      iss: { type: 'string' },
      aud: { type: 'string' },
      sub: { type: 'string' },
      'client-id': { type: 'string' },
      scope: { type: 'string' },
      ttl: { type: 'string' },
    },
  });
  const binding = oneOf<TokenBinding>(values.binding, '--binding', ['session', 'certificate', 'none'], 'session');
  const keyPath = required(values['issuer-key'], '--issuer-key');
  if (binding !== 'none' && values.cert === undefined) throw usageError('--cert is required unless --binding none');
  const ttl = integer(values.ttl, '--ttl', 1, 31_536_000, 3600);
  const scope = text(values.scope, '--scope');
  if (scope !== undefined && !SCOPE_LIST.test(scope)) {
    throw usageError('--scope must be scope tokens separated by single spaces (RFC 6749 section 3.3)');
  }
  const kid = text(values.kid, '--kid');
  const iss = text(values.iss, '--iss');
  const aud = text(values.aud, '--aud');
  const sub = text(values.sub, '--sub');
  const clientId = text(values['client-id'], '--client-id');
  const { key } = loadPrivateKey(keyPath, '--issuer-key');
  issuerAlgorithm(key);
  const certificate = values.cert === undefined || binding === 'none' ? undefined : loadCertificate(values.cert, '--cert').x509;
  const token = mintDevToken({
    privateKey: key,
    binding,
    ttl,
    ...(certificate === undefined ? {} : { certificate }),
    ...(kid === undefined ? {} : { kid }),
    ...(iss === undefined ? {} : { iss }),
    ...(aud === undefined ? {} : { aud }),
    ...(sub === undefined ? {} : { sub }),
    ...(clientId === undefined ? {} : { clientId }),
    ...(scope === undefined ? {} : { scope }),
  });
  ctx.stdout.write(`${token}\n`);
  return 0;
}
