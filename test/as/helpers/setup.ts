import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { pino } from 'pino';
import { createDevPki, type DevPki, type IssuedCertificate } from '@tether/pki';
import {
  TokenClient,
  startAuthorizationServer,
  type AuthorizationServer,
  type AuthorizationServerConfig,
  type ClientMetadata,
  type StartOptions,
  type TokenRequestResult,
} from '@tether/as';

x509.cryptoProvider.set(webcrypto as never);

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const spiffe = (name: string) => `spiffe://tether.local/${name}`;
export const NAMES = ['a', 'b', 'c', 'd', 'thief'] as const;

let pkiPromise: Promise<DevPki> | undefined;
/** One dev PKI per test process: clients a, b, c, d and thief. */
export function asPki(): Promise<DevPki> {
  pkiPromise ??= createDevPki({ clients: [...NAMES] });
  return pkiPromise;
}

export function tempDir(prefix = 'tether-as-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A standard client: tls_client_auth by SPIFFE URI SAN, session-bound, both grants, any audience. */
export function standardClient(name: string, extra: Partial<ClientMetadata> = {}): ClientMetadata {
  return {
    client_id: name,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_uri: spiffe(name),
    identifiers: [spiffe(name)],
    grant_types: ['client_credentials', TOKEN_EXCHANGE],
    scope: 'read write admin',
    tls_session_bound_access_tokens: true,
    audiences: ['*'],
    ...extra,
  } as ClientMetadata;
}

export function baseConfig(pki: DevPki, dataDir: string, overrides: Partial<AuthorizationServerConfig> = {}): AuthorizationServerConfig {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: pki.server.cert, key: pki.server.key },
    clientAuthentication: { tls_client_auth: { ca: [pki.ca.cert] } },
    dataDir,
    logging: { level: 'silent' },
    clients: NAMES.map((n) => standardClient(n)),
    resources: [
      { identifier: 'https://rs.example', binding: 'certificate', scopes: ['read', 'write'] },
      { identifier: 'https://open.example', binding: 'none' },
    ],
    ...overrides,
  };
}

export const silentLogger = pino({ level: 'silent' });

export interface TestAs {
  server: AuthorizationServer;
  pki: DevPki;
  dataDir: string;
  /** Milliseconds added to the AS clock. */
  skew: { ms: number };
  client(name: string): TokenClient;
  /** client_credentials for `name`; throws unless 200. */
  token(name: string, params?: Record<string, string | string[]>): Promise<string>;
  post(name: string, path: string, params: Record<string, string | string[] | undefined>, options?: Parameters<TokenClient['post']>[2]): Promise<TokenRequestResult>;
  exchange(name: string, subjectToken: string, params?: Record<string, string | string[] | undefined>, options?: Parameters<TokenClient['post']>[2]): Promise<TokenRequestResult>;
  close(options?: { keepData?: boolean }): Promise<void>;
}

/** Start an AS on 127.0.0.1:0 with the standard clients (override anything). */
export async function startTestAs(
  overrides: Partial<AuthorizationServerConfig> = {},
  options: { dataDir?: string; start?: StartOptions } = {},
): Promise<TestAs> {
  const pki = await asPki();
  const dataDir = options.dataDir ?? tempDir();
  const skew = { ms: 0 };
  let server: AuthorizationServer;
  try {
    server = await startAuthorizationServer(baseConfig(pki, dataDir, overrides), {
      logger: silentLogger,
      clock: () => Date.now() + skew.ms,
      defaultMetrics: false,
      ...options.start,
    });
  } catch (error) {
    // A start that fails (a refused configuration, for example) leaves no directory behind.
    if (options.dataDir === undefined) removeDir(dataDir);
    throw error;
  }
  const clients = new Map<string, TokenClient>();
  const client = (name: string): TokenClient => {
    let c = clients.get(name);
    if (c === undefined) {
      const cred = pki.clients[name] as IssuedCertificate;
      c = new TokenClient({ cert: cred.cert, key: cred.key, ca: pki.ca.cert });
      clients.set(name, c);
    }
    return c;
  };
  const post: TestAs['post'] = (name, path, params, opts) => client(name).post(`${server.url}${path}`, params, opts);
  return {
    server,
    pki,
    dataDir,
    skew,
    client,
    post,
    async token(name, params = {}) {
      const r = await post(name, '/token', { grant_type: 'client_credentials', client_id: name, ...params });
      if (r.status !== 200) throw new Error(`token for ${name}: ${r.status} ${r.text}`);
      return r.json?.access_token as string;
    },
    exchange(name, subjectToken, params = {}, opts) {
      return post(
        name,
        '/token',
        { grant_type: TOKEN_EXCHANGE, client_id: name, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, ...params },
        opts,
      );
    },
    async close(closeOptions = {}) {
      for (const c of clients.values()) c.close();
      await server.close();
      if (closeOptions.keepData !== true && options.dataDir === undefined) removeDir(dataDir);
    },
  };
}

export function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
}

export function headerOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Extra certificates (built with @peculiar/x509, like @tether/pki)

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END PRIVATE KEY-----\n`;
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

let serialCounter = 1000;

interface Issuer {
  cert: x509.X509Certificate;
  key: webcrypto.CryptoKey;
}

async function loadIssuer(ca: IssuedCertificate): Promise<Issuer> {
  const key = await webcrypto.subtle.importKey('pkcs8', pemBody(ca.key), EC, false, ['sign']);
  return { cert: new x509.X509Certificate(ca.cert), key };
}

export interface LeafSpec {
  subject: string | x509.JsonName;
  san?: x509.JsonGeneralName[];
  /** Issue with this CA (default: self-signed). */
  issuer?: Issuer;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
}

export async function makeCertificate(spec: LeafSpec): Promise<IssuedCertificate> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const notBefore = spec.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = spec.notAfter ?? new Date(Date.now() + (spec.days ?? 7) * 86_400_000);
  const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(false, undefined, true)];
  if (spec.san !== undefined) extensions.push(new x509.SubjectAlternativeNameExtension(spec.san));
  const serialNumber = (serialCounter++).toString(16).padStart(8, '0');
  const cert =
    spec.issuer === undefined
      ? await x509.X509CertificateGenerator.createSelfSigned({ serialNumber, name: spec.subject as never, notBefore, notAfter, signingAlgorithm: EC, keys, extensions })
      : await x509.X509CertificateGenerator.create({
          serialNumber,
          subject: spec.subject as never,
          issuer: spec.issuer.cert.subject,
          notBefore,
          notAfter,
          signingAlgorithm: EC,
          publicKey: keys.publicKey,
          signingKey: spec.issuer.key,
          extensions: [...extensions, await x509.AuthorityKeyIdentifierExtension.create(spec.issuer.cert)],
        });
  return { cert: `${cert.toString('pem')}\n`, key: await privateKeyPem(keys.privateKey) };
}

/** A CA of its own (same DN as the dev CA, to show names alone are not trusted). */
export async function makeRogueCa(): Promise<{ ca: IssuedCertificate; issuer: Issuer }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '7f01',
    name: 'CN=tether development CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 7 * 86_400_000),
    signingAlgorithm: EC,
    keys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  return { ca: { cert: `${cert.toString('pem')}\n`, key: await privateKeyPem(keys.privateKey) }, issuer: { cert, key: keys.privateKey } };
}

export async function devCaIssuer(): Promise<Issuer> {
  return loadIssuer((await asPki()).ca);
}

export function clientWith(cred: IssuedCertificate | undefined, pki: DevPki): TokenClient {
  return new TokenClient({ ...(cred === undefined ? {} : { cert: cred.cert, key: cred.key }), ca: pki.ca.cert });
}
