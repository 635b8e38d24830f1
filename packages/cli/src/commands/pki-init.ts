import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KEY_TYPES, writeDevPki, type KeyType } from '@tether/pki';
import { integer, oneOf, parseCommandArgs, required, wantsHelp } from '../util/args.js';
import { resolveContext, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';

export const pkiInitHelp = `Usage: tether pki init --out DIR [options]

Create a development PKI (for development and tests only: keys are written unencrypted):
a CA, a server certificate for localhost / 127.0.0.1 / ::1, and one client certificate per
--client whose URI SAN is spiffe://TRUST-DOMAIN/NAME.

Files written to DIR: ca.pem, ca.key, server.pem, server.key, NAME.pem, NAME.key
(private keys with mode 0600). A directory that already holds a CA (ca.pem or ca.key) is
refused unless --force is given: a new CA makes every certificate of the old one useless
(add certificates to an existing CA with 'tether pki issue').
Prints one JSON line: {"dir":DIR,"keyType":TYPE,"files":[...]}.

Options:
  --out DIR              directory to write to (created if missing; required)
  --key-type TYPE        p256 (default), p384, ed25519 or rsa (RSA 2048)
  --client NAME          a client certificate to issue; repeatable (default: client).
                         Letters, digits, '.', '_', '-'; 'ca' and 'server' are reserved.
  --trust-domain DOMAIN  SPIFFE trust domain of the client certificates (default: tether.local)
  --days N               validity in days (default: 30)
  --force                replace an existing CA in DIR
  -h, --help             show this help

Exit status: 0 on success, 2 on bad arguments, 1 when the files cannot be written.
`;

export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const TRUST_DOMAIN = /^[a-z0-9][a-z0-9.-]{0,252}$/;

/** `tether pki init`: write a development PKI with @tether/pki. */
export async function pkiInitCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(pkiInitHelp);
    return 0;
  }
  const { values } = parseCommandArgs({
    args,
    options: {
      out: { type: 'string' },
      'key-type': { type: 'string' },
      client: { type: 'string', multiple: true },
      'trust-domain': { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
    },
  });
  const out = required(values.out, '--out');
  const keyType = oneOf<KeyType>(values['key-type'], '--key-type', KEY_TYPES, 'p256');
  const clients = values.client ?? ['client'];
  const seen = new Set<string>();
  for (const name of clients) {
    if (!CLIENT_NAME.test(name)) throw usageError(`invalid --client name '${name}' (letters, digits, '.', '_', '-'; at most 63 characters)`);
    if (name === 'ca' || name === 'server') throw usageError(`--client name '${name}' is reserved (it would overwrite ${name}.pem)`);
    if (seen.has(name)) throw usageError(`--client '${name}' is given twice`);
    seen.add(name);
  }
  const trustDomain = values['trust-domain'] ?? 'tether.local';
  if (!TRUST_DOMAIN.test(trustDomain)) throw usageError(`invalid --trust-domain '${trustDomain}' (lowercase letters, digits, '.', '-')`);
  const days = integer(values.days, '--days', 1, 3650, 30);
  if (existsSync(out) && !statSync(out).isDirectory()) throw usageError(`--out ${out} exists and is not a directory`);
  if (values.force !== true && ['ca.pem', 'ca.key'].some((f) => existsSync(join(out, f)))) {
    throw usageError(`${out} already holds a CA: --force replaces it (its certificates stop verifying); 'tether pki issue --ca-dir ${out}' adds to it`);
  }

  let files: string[];
  try {
    ({ files } = await writeDevPki(out, { keyType, clients, trustDomain, days }));
  } catch (error) {
    throw runtimeError(`cannot write the PKI to ${out}: ${describeError(error)}`, error);
  }
  ctx.stdout.write(`${JSON.stringify({ dir: out, keyType, files })}\n`);
  return 0;
}
