/**
 * Keys that cannot sign Session-Binding Proofs (RFC 8725 3.2 and 3.5: only current algorithms and
 * sufficiently strong keys). Real keys from node:crypto; the weak certificates are real X.509
 * certificates built with @peculiar/x509.
 */
import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import {
  ConfigurationError,
  MIN_RSA_BITS,
  algorithmsForKey,
  certificateThumbprint,
  createSessionBindingProof,
  signingAlgorithmForKey,
  verifySessionBindingProof,
} from '@tether/core';
import { EKM, IAT, assemble, identities, rejectsProof, type RawAlg } from './support/jws.js';

x509.cryptoProvider.set(webcrypto as never);

const TOKEN = 'weak-key-test-token';

function pair(type: string, options: object = {}): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync(type as 'ec', options as { namedCurve: string });
}

const WEAK: Array<[string, () => { privateKey: KeyObject; publicKey: KeyObject }]> = [
  ['RSA 1024', () => pair('rsa', { modulusLength: 1024 })],
  ['RSA 2040', () => pair('rsa', { modulusLength: 2040 })],
  ['RSA-PSS 1024', () => pair('rsa-pss', { modulusLength: 1024 })],
  ['secp256k1', () => pair('ec', { namedCurve: 'secp256k1' })],
  ['P-521', () => pair('ec', { namedCurve: 'P-521' })],
  ['brainpoolP256r1', () => pair('ec', { namedCurve: 'brainpoolP256r1' })],
  ['X25519', () => pair('x25519')],
  ['X448', () => pair('x448')],
  ['Ed448', () => pair('ed448')],
  ['DSA 2048', () => pair('dsa', { modulusLength: 2048, divisorLength: 256 })],
];

test('algorithmsForKey / signingAlgorithmForKey refuse weak and unsupported keys', async () => {
  assert.equal(MIN_RSA_BITS, 2048);
  for (const [name, make] of WEAK) {
    const { privateKey, publicKey } = make();
    assert.deepEqual(algorithmsForKey(privateKey), [], `${name} private`);
    assert.deepEqual(algorithmsForKey(publicKey), [], `${name} public`);
    assert.throws(() => signingAlgorithmForKey(privateKey), ConfigurationError, name);
    assert.throws(() => signingAlgorithmForKey(privateKey, true), ConfigurationError, name);
    await assert.rejects(
      createSessionBindingProof({ privateKey, certificate: Buffer.from('not used'), accessToken: TOKEN, ekm: EKM, iat: IAT }),
      (e: unknown) => e instanceof ConfigurationError && e.code === 'ERR_TETHER_CONFIGURATION',
      name,
    );
  }
});

test('algorithmsForKey maps each supported key type to its algorithms', async () => {
  assert.deepEqual(algorithmsForKey(pair('ec', { namedCurve: 'P-256' }).publicKey), ['ES256']);
  assert.deepEqual(algorithmsForKey(pair('ec', { namedCurve: 'P-384' }).privateKey), ['ES384']);
  assert.deepEqual(algorithmsForKey(pair('ed25519').publicKey), ['EdDSA', 'Ed25519']);
  const rsa = pair('rsa', { modulusLength: 2048 });
  assert.deepEqual(algorithmsForKey(rsa.publicKey), ['PS256', 'RS256']);
  assert.equal(signingAlgorithmForKey(rsa.privateKey), 'PS256');
  assert.equal(signingAlgorithmForKey(rsa.privateKey, true), 'RS256');
  // RSA-PSS keys are restricted to PSS by their type.
  const pss = pair('rsa-pss', { modulusLength: 2048 });
  assert.deepEqual(algorithmsForKey(pss.publicKey), ['PS256']);
  assert.equal(signingAlgorithmForKey(pss.privateKey, true), 'PS256');
  assert.deepEqual(algorithmsForKey(pair('rsa', { modulusLength: 3072 }).publicKey), ['PS256', 'RS256']);
  // The dev PKI keys.
  for (const [keyType, expected] of [['p256', 'ES256'], ['p384', 'ES384'], ['ed25519', 'EdDSA'], ['rsa', 'PS256']] as const) {
    const { client } = await identities(keyType);
    assert.equal(signingAlgorithmForKey(client.key), expected);
  }
});

async function selfSigned(algorithm: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams): Promise<{ cert: X509Certificate; key: KeyObject }> {
  const keys = (await webcrypto.subtle.generateKey(algorithm as webcrypto.EcKeyGenParams, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=weak client',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: algorithm,
    keys,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { cert: new X509Certificate(cert.toString('pem')), key: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }) };
}

test('a proof from an RSA-1024 or P-521 certificate is refused on alg, even correctly signed', async () => {
  const cases: Array<[string, webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams, RawAlg[]]> = [
    ['RSA 1024', { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 1024 }, ['RS256', 'PS256']],
    ['P-521', { name: 'ECDSA', namedCurve: 'P-521', hash: 'SHA-512' } as webcrypto.EcKeyGenParams, ['ES512']],
  ];
  for (const [name, algorithm, algs] of cases) {
    const weak = await selfSigned(algorithm);
    if ('modulusLength' in algorithm) assert.equal(weak.cert.publicKey.asymmetricKeyDetails?.modulusLength, 1024);
    for (const alg of algs) {
      const proof = assemble(
        { typ: 'tls-binding-proof+jwt', alg, 'x5t#S256': certificateThumbprint(weak.cert) },
        { ath: Buffer.from(await webcrypto.subtle.digest('SHA-256', Buffer.from(TOKEN))).toString('base64url'), ekm: EKM.toString('base64url'), iat: IAT },
        { alg, key: weak.key },
      );
      await rejectsProof(verifySessionBindingProof(proof, { certificate: weak.cert, ekm: EKM, accessToken: TOKEN, now: IAT }), 'alg', `${name} ${alg}`);
    }
  }
});
