/**
 * The matrix's keys and tokens: a dev PKI (CA, RS server certificate, client certificate), an AS key
 * whose JWKS the RS children trust, the load generator's credentials, and access tokens of every
 * kind (bearer, certificate-bound, session-bound, DPoP-bound). The RS children read their material
 * from `dir`.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { createDevPki } from '@tether/pki';
import { certificateBoundConfirmation, sessionBoundConfirmation } from '@tether/core';
import { jwkThumbprint, publicJwkOf } from '@tether/core/dpop';
import type { LoadCredentials } from '../load/connection.js';
import { writeServerTlsFiles } from '../server-tls-files.js';
import type { Mode } from '../load/signer.js';

export type TokenKind = 'bearer' | 'certificate' | 'session' | 'dpop';
export const tokenKind: Record<Mode, TokenKind> = { bearer: 'bearer', certificate: 'certificate', session: 'session', 'session-per-request': 'session', dpop: 'dpop', 'dpop-jose': 'dpop' };

export interface Fixtures {
  /** Temporary directory with the RS children's PEM files and jwks.json (removed by main). */
  dir: string;
  pki: Awaited<ReturnType<typeof createDevPki>>;
  client: { cert: string; key: string };
  jwks: { keys: object[] };
  creds: LoadCredentials;
  tokens: Record<TokenKind, string[]>;
}

/** Make the PKI, the RS material in a temporary directory, the credentials and `maxTokens` tokens of every kind. */
export async function makeFixtures(maxTokens: number): Promise<Fixtures> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-matrix-'));
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  writeServerTlsFiles(dir, pki);
  // The RS measures the in-process verification costs with the client's certificate and key.
  writeFileSync(join(dir, 'client.pem'), client.cert);
  writeFileSync(join(dir, 'client.key'), client.key);
  const { privateKey: asKey, publicKey: asPublic } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = { keys: [{ ...(await exportJWK(asPublic)), kid: 'b1', alg: 'ES256' }] };
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));

  const certificate = new X509Certificate(client.cert);
  const dpopKey: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const dpopJwk = publicJwkOf(dpopKey);
  const creds: LoadCredentials = {
    certPem: client.cert,
    keyPem: client.key,
    caPem: pki.ca.cert,
    privateKey: createPrivateKey(client.key),
    certificate,
    dpopKey,
    dpopJwk,
  };
  const tokens = await mintTokens(asKey, creds, maxTokens);
  return { dir, pki, client, jwks, creds, tokens };
}

async function mintTokens(asKey: KeyObject, creds: LoadCredentials, maxTokens: number): Promise<Record<TokenKind, string[]>> {
  const cnfs: Record<TokenKind, unknown> = {
    bearer: undefined,
    certificate: certificateBoundConfirmation(creds.certificate),
    session: sessionBoundConfirmation(creds.certificate),
    dpop: { jkt: await jwkThumbprint(creds.dpopJwk) },
  };
  const mint = (cnf: unknown, sub: string) =>
    new SignJWT({ client_id: 'bench', scope: 'read', ...(cnf === undefined ? {} : { cnf }) })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'b1' })
      .setIssuer('https://as.bench')
      .setAudience('https://rs.bench')
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(asKey);
  const tokens = {} as Record<TokenKind, string[]>;
  for (const kind of Object.keys(cnfs) as TokenKind[]) {
    tokens[kind] = [];
    for (let i = 0; i < maxTokens; i++) tokens[kind].push(await mint(cnfs[kind], `${kind}-u${i}`));
  }
  return tokens;
}
