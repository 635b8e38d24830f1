/**
 * A SoftHSM2 token for the tests, in a temporary directory: its own softhsm2.conf and token
 * directory (SOFTHSM2_CONF is set for this process and the children it starts), a token `tether`,
 * key pairs generated inside it with pkcs11-tool (`--sensitive`, never extractable), their public
 * halves certified by the test CA, and a PIN file (0600).
 *
 * SoftHSM2 reads its configuration once per process (at C_Initialize), so one token directory
 * serves a whole test file: `softHsm()` is memoized, and `removeSoftHsm()` deletes it afterwards.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { issueClientCertificate, type IssuedCertificate, type KeyType } from '@tether/pki';
import { testPki } from './pki.js';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
export const TOKEN_LABEL = 'tether';

export interface TokenKey {
  /** pkcs11: URI of the private key, PIN from the helper's PIN file. */
  uri: string;
  /** The same URI without any PIN attribute. */
  bareUri: string;
  label: string;
  id: string;
  /** Certificate of the key's public half, from the test CA of `keyType`; and its file. */
  cert: string;
  certPath: string;
}

export interface SoftHsm {
  dir: string;
  conf: string;
  modulePath: string;
  pin: string;
  pinFile: string;
  /** Environment for children: SOFTHSM2_CONF. */
  env: Record<string, string>;
  keys: Record<'p256' | 'rsa', TokenKey>;
}

const SPECS: Array<{ name: 'p256' | 'rsa'; keyType: KeyType; pkcs11Type: string; label: string; id: string }> = [
  { name: 'p256', keyType: 'p256', pkcs11Type: 'EC:prime256v1', label: 'agent', id: '01' },
  { name: 'rsa', keyType: 'rsa', pkcs11Type: 'rsa:2048', label: 'agent-rsa', id: '02' },
];

function run(command: string, args: string[], env: NodeJS.ProcessEnv): string {
  const result = spawnSync(command, args, { env, encoding: 'utf8', timeout: 30_000 });
  if (result.status !== 0) throw new Error(`${command} ${args[0] ?? ''} failed (${result.status ?? result.signal}): ${result.stderr}`);
  return result.stdout;
}

let created: Promise<SoftHsm> | undefined;

async function create(): Promise<SoftHsm> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-softhsm-'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  mkdirSync(join(dir, 'tokens'));
  process.env.SOFTHSM2_CONF = conf;
  const pin = '24681357';
  const pinFile = join(dir, 'pin');
  writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  // pkcs11-tool reads the PIN from the environment (env:NAME), so it is not in any argv.
  const env = { ...process.env, SOFTHSM2_CONF: conf, TETHER_TEST_PIN: pin };
  run('softhsm2-util', ['--init-token', '--free', '--label', TOKEN_LABEL, '--so-pin', '97531864', '--pin', pin], env);
  const base = ['--module', SOFTHSM_MODULE, '--token-label', TOKEN_LABEL];
  const keys = {} as SoftHsm['keys'];
  for (const spec of SPECS) {
    run('pkcs11-tool', [...base, '--login', '--pin', 'env:TETHER_TEST_PIN', '--keypairgen', '--key-type', spec.pkcs11Type, '--label', spec.label, '--id', spec.id, '--usage-sign', '--sensitive'], env);
    const pubPath = join(dir, `${spec.label}.pub.der`);
    run('pkcs11-tool', [...base, '--read-object', '--type', 'pubkey', '--id', spec.id, '-o', pubPath], env);
    const publicKey = createPublicKey({ key: readFileSync(pubPath), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString();
    const ca = (await testPki(spec.keyType)).ca;
    const { cert } = await issueClientCertificate(ca, `hsm-${spec.label}`, { keyType: spec.keyType, publicKey });
    const certPath = join(dir, `${spec.label}.pem`);
    writeFileSync(certPath, cert);
    const bareUri = `pkcs11:token=${TOKEN_LABEL};object=${spec.label};type=private`;
    keys[spec.name] = { uri: `${bareUri}?pin-source=file:${pinFile}`, bareUri, label: spec.label, id: spec.id, cert, certPath };
  }
  return { dir, conf, modulePath: SOFTHSM_MODULE, pin, pinFile, env: { SOFTHSM2_CONF: conf }, keys };
}

/** The process's SoftHSM2 token (created on first use). */
export function softHsm(): Promise<SoftHsm> {
  created ??= create();
  return created;
}

/** Delete the token directory (call in `after`). */
export async function removeSoftHsm(): Promise<void> {
  if (created === undefined) return;
  const hsm = await created.catch(() => undefined);
  if (hsm !== undefined) rmSync(hsm.dir, { recursive: true, force: true });
}

/** Another certificate for a token-held key, from `ca` (e.g. an authorization server's test CA), for client `name`. */
export async function certifyTokenKey(key: TokenKey, ca: IssuedCertificate, name: string, keyType: KeyType = 'p256'): Promise<string> {
  const publicKey = new X509Certificate(key.cert).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return (await issueClientCertificate(ca, name, { keyType, publicKey })).cert;
}
