import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCommandArgs, required, wantsHelp } from '../util/args.js';
import { resolveContext, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';
import { jwkThumbprint, publicJwk } from '../util/jws.js';

export const devIssuerHelp = `Usage: tether dev-issuer --out DIR [--kid KID]

DEVELOPMENT HELPER, not an authorization server. Creates an ES256 (P-256) signing key for
minting test access tokens with 'tether dev-token', and the JWK Set a resource server
verifies them with ('tether resource --jwks-file DIR/jwks.json').

Files written to DIR: issuer.key (PKCS#8 PEM, mode 0600, unencrypted) and jwks.json.
Existing files of those names are overwritten.
Prints one JSON line: {"files":[...],"kid":KID,"alg":"ES256"}.

Options:
  --out DIR    directory to write to (created if missing; required)
  --kid KID    key id in jwks.json (default: the key's RFC 7638 JWK thumbprint, which is
               also what 'tether dev-token' assumes when --kid is not given)
  -h, --help   show this help

Exit status: 0 on success, 2 on bad arguments, 1 when the files cannot be written.
`;

export interface DevIssuer {
  keyPath: string;
  jwksPath: string;
  kid: string;
  privateKey: KeyObject;
  jwks: { keys: Array<Record<string, string>> };
}

/** Create an ES256 issuer key and its JWK Set in `dir`. */
export function writeDevIssuer(dir: string, options: { kid?: string } = {}): DevIssuer {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = options.kid ?? jwkThumbprint(privateKey);
  const jwks = { keys: [{ ...publicJwk(privateKey), kid, alg: 'ES256', use: 'sig' }] };
  mkdirSync(dir, { recursive: true });
  const keyPath = join(dir, 'issuer.key');
  const jwksPath = join(dir, 'jwks.json');
  writeFileSync(keyPath, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  writeFileSync(jwksPath, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o644 });
  return { keyPath, jwksPath, kid, privateKey, jwks };
}

/** `tether dev-issuer`: development signing key and JWKS. */
export async function devIssuerCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(devIssuerHelp);
    return 0;
  }
  const { values } = parseCommandArgs({ args, options: { out: { type: 'string' }, kid: { type: 'string' } } });
  const out = required(values.out, '--out');
  const kid = values.kid;
  if (kid !== undefined && !/^[\x21-\x7e]{1,128}$/.test(kid)) throw usageError('--kid must be 1 to 128 printable ASCII characters without spaces');
  if (existsSync(out) && !statSync(out).isDirectory()) throw usageError(`--out ${out} exists and is not a directory`);
  let issuer: DevIssuer;
  try {
    issuer = writeDevIssuer(out, kid === undefined ? {} : { kid });
  } catch (error) {
    throw runtimeError(`cannot write the issuer to ${out}: ${describeError(error)}`, error);
  }
  ctx.stdout.write(`${JSON.stringify({ files: [issuer.keyPath, issuer.jwksPath], kid: issuer.kid, alg: 'ES256' })}\n`);
  return 0;
}
