/**
 * Keys, certificates and tokens of the sidecar benchmark and soak: a development PKI (CA, server
 * and one client certificate), an ES256 issuer key published as a local JWKS, and a minter of
 * fresh access tokens (session-bound to the client certificate, or plain bearer).
 */
import { X509Certificate, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { sessionBoundConfirmation } from '@tether/core';
import { createDevPki } from '@tether/pki';
import type { Material } from './sidecar-process.js';

export async function benchMaterial(): Promise<{ material: Material; privateKey: KeyObject }> {
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const material: Material = {
    ca: pki.ca.cert,
    serverCert: pki.server.cert,
    serverKey: pki.server.key,
    clientCert: client.cert,
    clientKey: client.key,
    jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'b1', alg: 'ES256' }] },
    issuer: 'https://as.bench',
    audience: 'https://rs.bench',
  };
  return { material, privateKey };
}

/** `count` fresh tokens per call: no run profits from another's proof or token-validation cache. */
export function tokenMinter(material: Material, privateKey: KeyObject, count: number): (bound: boolean) => Promise<string[]> {
  const cnf = sessionBoundConfirmation(new X509Certificate(material.clientCert));
  let serial = 0;
  const mint = (bound: boolean) =>
    new SignJWT({ client_id: 'bench', scope: 'read', ...(bound ? { cnf } : {}) })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'b1' })
      .setIssuer(material.issuer)
      .setAudience(material.audience)
      .setSubject(`u${serial++}`)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
  return (bound: boolean) => Promise.all(Array.from({ length: count }, () => mint(bound)));
}
