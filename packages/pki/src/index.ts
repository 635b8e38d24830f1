/**
 * A development PKI: one CA, a server certificate for localhost / 127.0.0.1 / ::1, and client
 * certificates whose URI SAN is `spiffe://tether.local/<name>`. Certificates are built with
 * @peculiar/x509 over Node's WebCrypto; nothing here parses or writes ASN.1 by hand.
 * For development and tests only: keys are written unencrypted.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

export type KeyType = 'p256' | 'p384' | 'ed25519' | 'rsa';
export const KEY_TYPES: readonly KeyType[] = ['p256', 'p384', 'ed25519', 'rsa'];

export interface IssuedCertificate {
  /** PEM certificate. */
  cert: string;
  /** PEM PKCS#8 private key. */
  key: string;
}

export interface DevPki {
  ca: IssuedCertificate;
  server: IssuedCertificate;
  clients: Record<string, IssuedCertificate>;
}

export interface DevPkiOptions {
  keyType?: KeyType;
  /** Client names (default `['client']`). Each gets URI SAN `spiffe://<trustDomain>/<name>`. */
  clients?: readonly string[];
  trustDomain?: string;
  /** Validity in days (default 30). */
  days?: number;
}

const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function algorithm(keyType: KeyType): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.Algorithm {
  switch (keyType) {
    case 'p256':
      return { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as webcrypto.EcKeyGenParams;
    case 'p384':
      return { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' } as webcrypto.EcKeyGenParams;
    case 'ed25519':
      return { name: 'Ed25519' };
    case 'rsa':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  }
}

async function generateKeys(keyType: KeyType): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algorithm(keyType) as webcrypto.EcKeyGenParams, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').trim();
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return bytes.toString('hex');
}

function leafKeyUsage(keyType: KeyType): number {
  return keyType === 'rsa' ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
}

/** Create a CA, a localhost server certificate and client certificates, in memory. */
export async function createDevPki(options: DevPkiOptions = {}): Promise<DevPki> {
  const keyType = options.keyType ?? 'p256';
  if (!KEY_TYPES.includes(keyType)) throw new TypeError(`unknown key type ${String(keyType)}; use ${KEY_TYPES.join(', ')}`);
  const clients = options.clients ?? ['client'];
  for (const name of clients) if (!CLIENT_NAME.test(name)) throw new TypeError(`invalid client name ${JSON.stringify(name)}`);
  const trustDomain = options.trustDomain ?? 'tether.local';
  const days = options.days ?? 30;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + days * 86_400_000);
  const signingAlgorithm = algorithm(keyType);

  const caKeys = await generateKeys(keyType);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=tether development CA',
    notBefore,
    notAfter,
    signingAlgorithm,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  async function issue(subject: string, san: x509.JsonGeneralName[], usage: string): Promise<IssuedCertificate> {
    const keys = await generateKeys(keyType);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      signingAlgorithm,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(leafKeyUsage(keyType), true),
        new x509.ExtendedKeyUsageExtension([usage]),
        new x509.SubjectAlternativeNameExtension(san),
        await x509.AuthorityKeyIdentifierExtension.create(caCert),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return { cert: cert.toString('pem') + '\n', key: await privateKeyPem(keys.privateKey) };
  }

  const server = await issue(
    'CN=localhost',
    [
      { type: 'dns', value: 'localhost' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
    ],
    x509.ExtendedKeyUsage.serverAuth,
  );
  const issued: Record<string, IssuedCertificate> = {};
  for (const name of clients) {
    issued[name] = await issue(`CN=${name}`, [{ type: 'url', value: `spiffe://${trustDomain}/${name}` }], x509.ExtendedKeyUsage.clientAuth);
  }
  return { ca: { cert: caCert.toString('pem') + '\n', key: await privateKeyPem(caKeys.privateKey) }, server, clients: issued };
}

/**
 * Write a development PKI to `dir`: `ca.pem` (+ `ca.key`), `server.pem`/`server.key`,
 * `<name>.pem`/`<name>.key`. Private keys are written with mode 0600.
 */
export async function writeDevPki(dir: string, options: DevPkiOptions = {}): Promise<{ files: string[] }> {
  const pki = await createDevPki(options);
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const write = (name: string, content: string, mode: number) => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode });
    files.push(path);
  };
  write('ca.pem', pki.ca.cert, 0o644);
  write('ca.key', pki.ca.key, 0o600);
  write('server.pem', pki.server.cert, 0o644);
  write('server.key', pki.server.key, 0o600);
  for (const [name, c] of Object.entries(pki.clients)) {
    write(`${name}.pem`, c.cert, 0o644);
    write(`${name}.key`, c.key, 0o600);
  }
  return { files };
}
