import { X509Certificate } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { issueClientCertificate, issueServerCertificate, keyTypeOf, type IssuedCertificate, type ServerSan } from '@tether/pki';
import { integer, parseCommandArgs, readOptionFile, required, wantsHelp } from '../util/args.js';
import { resolveContext, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';
import { CLIENT_NAME, TRUST_DOMAIN } from './pki-init.js';

export const pkiIssueHelp = `Usage: tether pki issue --ca-dir DIR --client NAME [options]
       tether pki issue --ca-dir DIR --server NAME [--san dns:NAME|ip:ADDRESS|uri:URI ...] [options]

Add a certificate to an existing development CA (DIR/ca.pem and DIR/ca.key, from 'tether pki
init'), with a new key of the CA's key type: a client certificate (URI SAN
spiffe://TRUST-DOMAIN/NAME) or a server certificate for a name other than localhost (a compose
service, a Kubernetes Service DNS name). Writes NAME.pem and NAME.key (mode 0600) to --out.
Prints one JSON line: {"files":[...],"subject":"CN=NAME","san":"..."}.

Options:
  --ca-dir DIR           the CA's directory (required)
  --client NAME          issue a client certificate (give --client or --server)
  --server NAME          issue a server certificate; its SANs are --san, or dns:NAME without one
  --san TYPE:VALUE       subject alternative name of a server certificate: dns:NAME, ip:ADDRESS
                         or uri:URI; repeatable
  --out DIR              where to write (default: --ca-dir)
  --trust-domain DOMAIN  SPIFFE trust domain of a client certificate (default: tether.local)
  --days N               validity in days (default: 30)
  --force                overwrite an existing NAME.pem / NAME.key
  -h, --help             show this help

Exit status: 0 on success, 2 on bad arguments or an unreadable CA, 1 when the files cannot be written.
`;

const DNS_NAME = /^(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function parseSan(text: string): ServerSan {
  const colon = text.indexOf(':');
  const type = text.slice(0, colon).toLowerCase();
  const value = text.slice(colon + 1);
  if (type === 'dns' && DNS_NAME.test(value)) return { type, value };
  if (type === 'ip' && isIP(value) !== 0) return { type, value };
  if (type === 'uri' && URL.canParse(value) && value.includes(':')) return { type, value };
  throw usageError(`--san '${text}' is not dns:NAME, ip:ADDRESS or uri:URI`);
}

/** The CA read back: certificate, key, and the key type that new keys take. */
function readCa(dir: string): { ca: IssuedCertificate; keyType: NonNullable<ReturnType<typeof keyTypeOf>> } {
  const cert = readOptionFile(join(dir, 'ca.pem'), '--ca-dir').toString('utf8');
  const key = readOptionFile(join(dir, 'ca.key'), '--ca-dir').toString('utf8');
  let keyType: ReturnType<typeof keyTypeOf>;
  try {
    if (!new X509Certificate(cert).ca) throw new Error('ca.pem is not a CA certificate');
    keyType = keyTypeOf(key);
  } catch (error) {
    throw usageError(`--ca-dir ${dir}: ${describeError(error)}`, error);
  }
  if (keyType === undefined) throw usageError(`--ca-dir ${dir}: ca.key is not a P-256, P-384, Ed25519 or RSA key`);
  return { ca: { cert, key }, keyType };
}

/** `tether pki issue`: a client or server certificate from an existing development CA. */
export async function pkiIssueCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(pkiIssueHelp);
    return 0;
  }
  const { values } = parseCommandArgs({
    args,
    options: {
      'ca-dir': { type: 'string' },
      client: { type: 'string' },
      server: { type: 'string' },
      san: { type: 'string', multiple: true },
      out: { type: 'string' },
      'trust-domain': { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
    },
  });
  const caDir = required(values['ca-dir'], '--ca-dir');
  if ((values.client === undefined) === (values.server === undefined)) throw usageError('give exactly one of --client NAME and --server NAME');
  const name = (values.client ?? values.server) as string;
  if (!CLIENT_NAME.test(name) || name === 'ca') throw usageError(`invalid name '${name}' (letters, digits, '.', '_', '-'; not 'ca')`);
  if (values.client !== undefined && values.san !== undefined) throw usageError('--san is for --server certificates');
  const trustDomain = values['trust-domain'] ?? 'tether.local';
  if (!TRUST_DOMAIN.test(trustDomain)) throw usageError(`invalid --trust-domain '${trustDomain}' (lowercase letters, digits, '.', '-')`);
  const days = integer(values.days, '--days', 1, 3650, 30);
  const sans = values.san?.map(parseSan);
  const out = values.out ?? caDir;
  const files = [join(out, `${name}.pem`), join(out, `${name}.key`)];
  if (values.force !== true && files.some((f) => existsSync(f))) throw usageError(`${files[0]} or its key exists: --force overwrites it`);
  const { ca, keyType } = readCa(caDir);

  const issued =
    values.client !== undefined
      ? await issueClientCertificate(ca, name, { keyType, trustDomain, days })
      : await issueServerCertificate(ca, name, { keyType, days, ...(sans === undefined ? {} : { sans }) });
  try {
    writeFileSync(files[0] as string, issued.cert, { mode: 0o644 });
    writeFileSync(files[1] as string, issued.key, { mode: 0o600 });
  } catch (error) {
    throw runtimeError(`cannot write to ${out}: ${describeError(error)}`, error);
  }
  const x509 = new X509Certificate(issued.cert);
  ctx.stdout.write(`${JSON.stringify({ files, subject: x509.subject.replace(/\n/g, ', '), san: x509.subjectAltName })}\n`);
  return 0;
}
