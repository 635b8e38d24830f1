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
import { createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
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

/** A PEM PKCS#8 private key as a WebCrypto signing key of `keyType`. */
function importPrivateKey(pem: string, keyType: KeyType): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, algorithm(keyType) as webcrypto.EcKeyImportParams, true, ['sign']);
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return bytes.toString('hex');
}

function leafKeyUsage(keyType: KeyType): number {
  return keyType === 'rsa' ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
}

interface Issuer {
  cert: x509.X509Certificate;
  privateKey: webcrypto.CryptoKey;
}

interface LeafOptions {
  keyType: KeyType;
  notBefore: Date;
  notAfter: Date;
  /** Certify this existing key pair instead of generating one (certificate renewal with the same key). */
  keys?: webcrypto.CryptoKeyPair;
  /** Certify this public key only (its private half is held elsewhere); the result's `key` is ''. */
  publicKey?: webcrypto.CryptoKey;
}

async function issueLeaf(ca: Issuer, subject: string, san: x509.JsonGeneralName[], usage: string, options: LeafOptions): Promise<IssuedCertificate> {
  const keys = options.publicKey === undefined ? (options.keys ?? (await generateKeys(options.keyType))) : undefined;
  const publicKey = options.publicKey ?? (keys as webcrypto.CryptoKeyPair).publicKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: ca.cert.subject,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    signingAlgorithm: algorithm(options.keyType),
    publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(leafKeyUsage(options.keyType), true),
      new x509.ExtendedKeyUsageExtension([usage]),
      new x509.SubjectAlternativeNameExtension(san),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  return { cert: cert.toString('pem') + '\n', key: keys === undefined ? '' : await privateKeyPem(keys.privateKey) };
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + days * 86_400_000) };
}

function clientSubject(name: string, trustDomain: string): [string, x509.JsonGeneralName[]] {
  if (!CLIENT_NAME.test(name)) throw new TypeError(`invalid client name ${JSON.stringify(name)}`);
  return [`CN=${name}`, [{ type: 'url', value: `spiffe://${trustDomain}/${name}` }]];
}

/** Create a CA, a localhost server certificate and client certificates, in memory. */
export async function createDevPki(options: DevPkiOptions = {}): Promise<DevPki> {
  const keyType = options.keyType ?? 'p256';
  if (!KEY_TYPES.includes(keyType)) throw new TypeError(`unknown key type ${String(keyType)}; use ${KEY_TYPES.join(', ')}`);
  const clients = options.clients ?? ['client'];
  const trustDomain = options.trustDomain ?? 'tether.local';
  for (const name of clients) clientSubject(name, trustDomain);
  const leaf = { keyType, ...validity(options.days ?? 30) };

  const caKeys = await generateKeys(keyType);
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=tether development CA',
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    signingAlgorithm: algorithm(keyType),
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const ca: Issuer = { cert: caCert, privateKey: caKeys.privateKey };

  const server = await issueLeaf(
    ca,
    'CN=localhost',
    [
      { type: 'dns', value: 'localhost' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
    ],
    x509.ExtendedKeyUsage.serverAuth,
    leaf,
  );
  const issued: Record<string, IssuedCertificate> = {};
  for (const name of clients) {
    issued[name] = await issueLeaf(ca, ...clientSubject(name, trustDomain), x509.ExtendedKeyUsage.clientAuth, leaf);
  }
  return { ca: { cert: caCert.toString('pem') + '\n', key: await privateKeyPem(caKeys.privateKey) }, server, clients: issued };
}

export interface ClientCertificateOptions {
  /** Key type of the CA (and of a newly generated client key). Default `p256`. */
  keyType?: KeyType;
  trustDomain?: string;
  /** Validity in days (default 30). */
  days?: number;
  /** PEM PKCS#8 key to certify again (a renewal that keeps the key). Default: a new key. */
  key?: string;
  /**
   * PEM SPKI public key to certify, for a private key that never leaves a hardware token (PKCS#11).
   * The issued `key` is then empty. Same key type as the CA.
   */
  publicKey?: string;
}

/**
 * Issue a client certificate `CN=<name>` (URI SAN `spiffe://<trustDomain>/<name>`) from an existing
 * development CA, e.g. to renew a client's certificate. Same profile as {@link createDevPki}.
 */
export async function issueClientCertificate(ca: IssuedCertificate, name: string, options: ClientCertificateOptions = {}): Promise<IssuedCertificate> {
  const keyType = options.keyType ?? 'p256';
  if (!KEY_TYPES.includes(keyType)) throw new TypeError(`unknown key type ${String(keyType)}; use ${KEY_TYPES.join(', ')}`);
  const subject = clientSubject(name, options.trustDomain ?? 'tether.local');
  const importKey = (pem: string) => importPrivateKey(pem, keyType);
  const issuer: Issuer = { cert: new x509.X509Certificate(ca.cert), privateKey: await importKey(ca.key) };
  if (options.publicKey !== undefined) {
    const spki = createPublicKey(options.publicKey).export({ type: 'spki', format: 'der' });
    const publicKey = await webcrypto.subtle.importKey('spki', spki, algorithm(keyType) as webcrypto.EcKeyImportParams, true, ['verify']);
    return issueLeaf(issuer, ...subject, x509.ExtendedKeyUsage.clientAuth, { keyType, ...validity(options.days ?? 30), publicKey });
  }
  let keys: webcrypto.CryptoKeyPair | undefined;
  if (options.key !== undefined) {
    const privateKey = await importKey(options.key);
    // The public half, from the private key (Node's KeyObject derives it; no ASN.1 by hand).
    const spki = createPublicKey(createPrivateKey(options.key)).export({ type: 'spki', format: 'der' });
    const publicKey = await webcrypto.subtle.importKey('spki', spki, algorithm(keyType) as webcrypto.EcKeyImportParams, true, ['verify']);
    keys = { privateKey, publicKey };
  }
  return issueLeaf(issuer, ...subject, x509.ExtendedKeyUsage.clientAuth, { keyType, ...validity(options.days ?? 30), ...(keys === undefined ? {} : { keys }) });
}

/** A subject alternative name of a server certificate. */
export interface ServerSan {
  type: 'dns' | 'ip' | 'uri';
  value: string;
}

export interface ServerCertificateOptions {
  /** Key type of the CA (and of the new server key). Default `p256`. */
  keyType?: KeyType;
  /** Validity in days (default 30). */
  days?: number;
  /** Subject alternative names (default: `dns:<name>`); a client checks the name it dialled against them. */
  sans?: readonly ServerSan[];
}

/**
 * Issue a server certificate `CN=<name>` from an existing development CA, for a name other than localhost (a compose
 * service or a Kubernetes Service DNS name). Same profile as the server certificate of {@link createDevPki}.
 */
export async function issueServerCertificate(ca: IssuedCertificate, name: string, options: ServerCertificateOptions = {}): Promise<IssuedCertificate> {
  const keyType = options.keyType ?? 'p256';
  if (!KEY_TYPES.includes(keyType)) throw new TypeError(`unknown key type ${String(keyType)}; use ${KEY_TYPES.join(', ')}`);
  const sans = options.sans ?? [{ type: 'dns', value: name }];
  if (sans.length === 0) throw new TypeError('a server certificate needs at least one subject alternative name');
  const issuer: Issuer = { cert: new x509.X509Certificate(ca.cert), privateKey: await importPrivateKey(ca.key, keyType) };
  const san: x509.JsonGeneralName[] = sans.map((s) => ({ type: s.type === 'uri' ? 'url' : s.type, value: s.value }));
  return issueLeaf(issuer, `CN=${name}`, san, x509.ExtendedKeyUsage.serverAuth, { keyType, ...validity(options.days ?? 30) });
}

/** The {@link KeyType} of a PEM private key (a CA key read back from disk), or undefined for other keys. */
export function keyTypeOf(pem: string): KeyType | undefined {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'rsa') return 'rsa';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve === 'prime256v1' ? 'p256' : curve === 'secp384r1' ? 'p384' : undefined;
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
