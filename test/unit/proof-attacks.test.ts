/**
 * JOSE attacks on Session-Binding Proofs (RFC 8725 sections 2.1, 2.6, 2.8, 3.1, 3.7, 3.10, 3.11;
 * draft sections 2.3 and 3.3 steps e-h). Every forged proof is hand-assembled and, unless the
 * attack is on the signature itself, carries a valid signature by the key it claims, so each
 * case isolates one check. Each case asserts the exact InvalidProofError reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { exportJWK } from 'jose';
import {
  InvalidProofError,
  MAX_PROOF_LENGTH,
  accessTokenHash,
  certificateThumbprint,
  createSessionBindingProof,
  verifySessionBindingProof,
  type VerifyProofOptions,
} from '@tether/core';
import { EKM, IAT, OTHER_EKM, assemble, b64u, identities, rawSign, rejectsProof, spkiDer, type RawAlg, type TestIdentity } from './support/jws.js';

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl';
const OTHER_TOKEN = 'a-different-access-token';
const TYP = 'tls-binding-proof+jwt';

const ids = await identities('p256');
const client = ids.client;
const attacker = ids.attacker;
const X5T = certificateThumbprint(client.cert);

const HEADER = { typ: TYP, alg: 'ES256', 'x5t#S256': X5T };
const CLAIMS = { ath: accessTokenHash(TOKEN), ekm: EKM.toString('base64url'), iat: IAT };
const HEADER_JSON = JSON.stringify(HEADER).slice(1, -1);
const CLAIMS_JSON = JSON.stringify(CLAIMS).slice(1, -1);

function verify(proof: string, options: Partial<VerifyProofOptions> = {}) {
  return verifySessionBindingProof(proof, { certificate: client.cert, ekm: EKM, accessToken: TOKEN, now: IAT, ...options });
}

/** A proof signed by the client's own key with header/claims overrides (undefined deletes). */
function forge(header: Record<string, unknown> = {}, claims: Record<string, unknown> = {}, signer: { alg: RawAlg; key: TestIdentity['key'] } = { alg: 'ES256', key: client.key }): string {
  const strip = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  return assemble(strip({ ...HEADER, ...header }), strip({ ...CLAIMS, ...claims }), signer);
}

/** A proof whose header and payload are given as raw JSON text (for duplicate or escaped members). */
function forgeRaw(headerJson: string | Buffer, payloadJson: string | Buffer = JSON.stringify(CLAIMS)): string {
  return assemble(Buffer.from(headerJson), Buffer.from(payloadJson), { alg: 'ES256', key: client.key });
}

function replaceSignature(proof: string, signature: Buffer): string {
  const [h, p] = proof.split('.') as [string, string];
  return `${h}.${p}.${b64u(signature)}`;
}

function signatureOf(proof: string): Buffer {
  return Buffer.from(proof.split('.')[2] as string, 'base64url');
}

test('baseline: the hand-assembled proof verifies (the forging helpers are sound)', async () => {
  const verified = await verify(forge());
  assert.deepEqual(verified.claims, CLAIMS);
  assert.deepEqual(verified.header, HEADER);
  await verify(forgeRaw(JSON.stringify(HEADER)));
});

test('alg "none": unsigned (empty signature) is malformed; with any signature bytes it is refused on alg', async () => {
  const unsigned = `${b64u({ ...HEADER, alg: 'none' })}.${b64u(CLAIMS)}.`;
  await rejectsProof(verify(unsigned), 'malformed');
  await rejectsProof(verify(`${unsigned}AAAA`), 'alg');
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    await rejectsProof(verify(forge({ alg })), 'alg', alg);
  }
});

test('HS256 keyed with the certificate public key bytes (RFC 8725 2.1 key confusion) is refused on alg', async () => {
  const rsa = (await identities('rsa')).client;
  for (const id of [client, rsa]) {
    const x5t = certificateThumbprint(id.cert);
    const secrets = [
      spkiDer(id.cert.publicKey),
      Buffer.from(id.cert.publicKey.export({ type: 'spki', format: 'pem' })),
      Buffer.from(id.cert.raw),
      Buffer.from(id.pem.cert),
    ];
    for (const secret of secrets) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        const hash = `sha${alg.slice(2)}`;
        const proof = assemble({ ...HEADER, alg, 'x5t#S256': x5t }, CLAIMS, (input) => createHmac(hash, secret).update(input).digest());
        await rejectsProof(verify(proof, { certificate: id.cert }), 'alg', `${alg} with ${secret.length}-byte secret`);
      }
    }
  }
});

test('alg that does not match the certificate key type is refused before any signature check', async () => {
  // P-256 certificate. ES384 is even signed over SHA-384 with the P-256 key, i.e. a signature that
  // a key-type-blind verifier could accept.
  await rejectsProof(verify(forge({ alg: 'ES384' }, {}, { alg: 'ES384', key: client.key })), 'alg', 'ES384 on P-256');
  await rejectsProof(verify(forge({ alg: 'ES512' }, {}, { alg: 'ES512', key: client.key })), 'alg', 'ES512 on P-256');
  for (const alg of ['RS256', 'PS256', 'EdDSA', 'Ed25519', 'ES256K', 'es256', 'ES 256', '']) {
    await rejectsProof(verify(forge({ alg })), 'alg', `${alg} on P-256`);
  }
  for (const alg of [undefined, null, 256, ['ES256'], { alg: 'ES256' }]) {
    await rejectsProof(verify(forge({ alg })), 'alg', `alg ${JSON.stringify(alg)}`);
  }
  // Ed25519 and RSA certificates refuse the other families (each signed by the right key).
  const ed = (await identities('ed25519')).client;
  const rsa = (await identities('rsa')).client;
  const p384 = (await identities('p384')).client;
  const cases: Array<[TestIdentity, string, RawAlg]> = [
    [ed, 'ES256', 'EdDSA'],
    [ed, 'RS256', 'EdDSA'],
    [rsa, 'ES256', 'RS256'],
    [rsa, 'EdDSA', 'RS256'],
    [rsa, 'RS384', 'RS256'],
    [rsa, 'PS512', 'PS256'],
    [p384, 'ES256', 'ES384'],
    [p384, 'ES512', 'ES384'],
  ];
  for (const [id, alg, signAlg] of cases) {
    const proof = assemble({ ...HEADER, alg, 'x5t#S256': certificateThumbprint(id.cert) }, CLAIMS, { alg: signAlg, key: id.key });
    await rejectsProof(verify(proof, { certificate: id.cert }), 'alg', `${alg} on ${id.cert.publicKey.asymmetricKeyType}`);
  }
  // `algorithms` narrows what the key allows.
  const rs256 = await createSessionBindingProof({ privateKey: rsa.key, certificate: rsa.cert, accessToken: TOKEN, ekm: EKM, iat: IAT, alg: 'RS256' });
  await verify(rs256, { certificate: rsa.cert });
  await rejectsProof(verify(rs256, { certificate: rsa.cert, algorithms: ['PS256'] }), 'alg');
  await rejectsProof(verify(forge(), { algorithms: ['EdDSA', 'PS256'] }), 'alg');
});

test('key-carrying header parameters (jwk, jku, x5c, x5u) are refused even with a valid signature', async () => {
  const attackerJwk = await exportJWK(attacker.cert.publicKey);
  const clientJwk = await exportJWK(client.cert.publicKey);
  // Attacker embeds its own key and signs with it; the x5t names the victim's certificate.
  await rejectsProof(verify(forge({ jwk: attackerJwk }, {}, { alg: 'ES256', key: attacker.key })), 'header_key', 'attacker jwk');
  await rejectsProof(verify(forge({ jwk: attackerJwk, 'x5t#S256': certificateThumbprint(attacker.cert) }, {}, { alg: 'ES256', key: attacker.key })), 'header_key');
  // Even the certificate's own key, correctly signed, is not accepted in a header.
  await rejectsProof(verify(forge({ jwk: clientJwk })), 'header_key', 'own jwk');
  await rejectsProof(verify(forge({ jku: 'https://attacker.example/jwks.json' }, {}, { alg: 'ES256', key: attacker.key })), 'header_key', 'jku');
  await rejectsProof(verify(forge({ x5c: [Buffer.from(attacker.cert.raw).toString('base64')] }, {}, { alg: 'ES256', key: attacker.key })), 'header_key', 'x5c');
  await rejectsProof(verify(forge({ x5c: [Buffer.from(client.cert.raw).toString('base64')] })), 'header_key', 'own x5c');
  await rejectsProof(verify(forge({ x5u: 'https://attacker.example/cert.pem' })), 'header_key', 'x5u');
  // The check sees decoded member names: a JSON-escaped "jwk" is still "jwk".
  await rejectsProof(verify(forgeRaw(`{${HEADER_JSON},"jw\\u006b":${JSON.stringify(attackerJwk)}}`)), 'header_key', 'escaped jwk');
  // Empty or null values do not slip through either.
  await rejectsProof(verify(forge({ jku: '' })), 'header_key');
  await rejectsProof(verify(forge({ x5c: null })), 'header_key');
});

test('crit and b64 (RFC 7797 unencoded payload) are refused', async () => {
  await rejectsProof(verify(forge({ crit: ['exp'], exp: IAT + 60 })), 'crit');
  await rejectsProof(verify(forge({ crit: [] })), 'crit');
  await rejectsProof(verify(forge({ crit: ['b64'], b64: false })), 'crit');
  await rejectsProof(verify(forge({ b64: false })), 'crit');
  await rejectsProof(verify(forge({ b64: true })), 'crit');
  await rejectsProof(verify(forgeRaw(`{${HEADER_JSON},"\\u0063rit":["x"]}`)), 'crit', 'escaped crit');
  // An unencoded-payload JWS: the payload segment is raw JSON (its "{" is not base64url).
  const input = `${b64u({ ...HEADER, b64: false, crit: ['b64'] })}.${JSON.stringify(CLAIMS)}`;
  await rejectsProof(verify(`${input}.${b64u(rawSign('ES256', client.key, input))}`), 'malformed');
});

test('typ confusion (RFC 8725 3.11): other JWT types and a missing typ are refused; media-type forms accepted', async () => {
  for (const typ of ['at+jwt', 'application/at+jwt', 'dpop+jwt', 'JWT', 'jwt', 'wit+jwt', 'secevent+jwt', '', 'tls-binding-proof', 'tls-binding-proof+jwt ', ' tls-binding-proof+jwt', 'application/tls-binding-proof+jwt+jwt', 'x-tls-binding-proof+jwt', 'EVIL']) {
    const error = await rejectsProof(verify(forge({ typ })), 'typ', `typ ${JSON.stringify(typ)}`);
    assert.equal(error.description, 'Session-Binding Proof verification failed: wrong typ');
    assert.ok(!error.challenge.includes('EVIL'));
  }
  for (const typ of [undefined, null, 1, true, [TYP], { typ: TYP }]) {
    await rejectsProof(verify(forge({ typ })), 'typ', `typ ${JSON.stringify(typ)}`);
  }
  // RFC 7515 4.1.9: the "application/" prefix may be present; media types are case-insensitive.
  for (const typ of ['application/tls-binding-proof+jwt', 'TLS-Binding-Proof+JWT', 'Application/TLS-BINDING-PROOF+JWT']) {
    const verified = await verify(forge({ typ }));
    assert.equal(verified.header.typ, typ);
  }
});

test('x5t#S256 that does not name this connection certificate is refused', async () => {
  const other = ids.other;
  await rejectsProof(verify(forge({ 'x5t#S256': certificateThumbprint(other.cert) })), 'x5t_mismatch', 'other cert');
  await rejectsProof(verify(forge({ 'x5t#S256': undefined })), 'x5t_mismatch', 'missing');
  await rejectsProof(verify(forge({ 'x5t#S256': undefined, x5t: createHash('sha1').update(client.cert.raw).digest('base64url') })), 'x5t_mismatch', 'SHA-1 x5t only');
  await rejectsProof(verify(forge({ 'x5t#S256': `${X5T}=` })), 'x5t_mismatch', 'padded');
  await rejectsProof(verify(forge({ 'x5t#S256': X5T.toUpperCase() })), 'x5t_mismatch', 'case changed');
  await rejectsProof(verify(forge({ 'x5t#S256': createHash('sha256').update(client.cert.raw).digest('base64') })), 'x5t_mismatch', 'standard base64');
  await rejectsProof(verify(forge({ 'x5t#S256': createHash('sha256').update(client.pem.cert).digest('base64url') })), 'x5t_mismatch', 'hash of PEM');
  await rejectsProof(verify(forge({ 'x5t#S256': createHash('sha256').update(client.cert.raw).digest('hex') })), 'x5t_mismatch', 'hex');
  await rejectsProof(verify(forge({ 'x5t#S256': undefined, 'X5T#S256': X5T })), 'x5t_mismatch', 'member name case');
  await rejectsProof(verify(forge({ 'x5t#S256': [X5T] })), 'x5t_mismatch', 'array');
});

test('stolen proofs and foreign signatures (draft 3.3: checked against THIS connection certificate)', async () => {
  // Signed by the attacker's key but naming the victim certificate.
  await rejectsProof(verify(forge({}, {}, { alg: 'ES256', key: attacker.key })), 'signature');
  await rejectsProof(verify(forge({}, {}, { alg: 'ES256', key: ids.other.key })), 'signature');
  // The attacker's own well-formed proof presented on the victim's connection.
  const attackerProof = await createSessionBindingProof({ privateKey: attacker.key, certificate: attacker.cert, accessToken: TOKEN, ekm: EKM, iat: IAT });
  await rejectsProof(verify(attackerProof), 'x5t_mismatch');
  // The victim's proof (and token) replayed on the attacker's connection: another certificate and exporter.
  const victimProof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: TOKEN, ekm: EKM, iat: IAT });
  await rejectsProof(verify(victimProof, { certificate: attacker.cert, ekm: OTHER_EKM }), 'x5t_mismatch');
  // ... and on another connection of the victim's own certificate (T1: cross-connection replay).
  await rejectsProof(verify(victimProof, { ekm: OTHER_EKM }), 'ekm_mismatch');
});

test('altered ECDSA signatures: bit flips, out-of-range scalars, wrong lengths, DER instead of r||s', async () => {
  const proof = forge();
  const sig = signatureOf(proof);
  assert.equal(sig.length, 64);
  for (const [byte, bit] of [[0, 0], [0, 7], [31, 0], [32, 0], [47, 3], [63, 0], [63, 7]] as const) {
    const flipped = Buffer.from(sig);
    flipped[byte] = (flipped[byte] as number) ^ (1 << bit);
    await rejectsProof(verify(replaceSignature(proof, flipped)), 'signature', `flip byte ${byte} bit ${bit}`);
  }
  const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
  const r = sig.subarray(0, 32);
  const s = sig.subarray(32);
  const zero = Buffer.alloc(32);
  for (const [name, bad] of [
    ['r = 0', Buffer.concat([zero, s])],
    ['s = 0', Buffer.concat([r, zero])],
    ['r = s = 0', Buffer.alloc(64)],
    ['r = n', Buffer.concat([n, s])],
    ['s = n', Buffer.concat([r, n])],
    ['all ones', Buffer.alloc(64, 0xff)],
    ['r and s swapped', Buffer.concat([s, r])],
  ] as const) {
    await rejectsProof(verify(replaceSignature(proof, bad)), 'signature', name);
  }
  for (const [name, bad] of [
    ['63 bytes', sig.subarray(0, 63)],
    ['65 bytes', Buffer.concat([sig, Buffer.alloc(1)])],
    ['leading zero', Buffer.concat([Buffer.alloc(1), sig])],
    ['32 bytes', sig.subarray(0, 32)],
    ['1 byte', sig.subarray(0, 1)],
    ['96 bytes (ES384 length)', Buffer.concat([sig, sig.subarray(0, 32)])],
    ['128 bytes', Buffer.concat([sig, sig])],
  ] as const) {
    await rejectsProof(verify(replaceSignature(proof, bad)), 'signature', name);
  }
  // The same ECDSA signature in ASN.1 DER (what a naive signer emits) is not a JWS signature.
  const [h, p] = proof.split('.') as [string, string];
  const der = cryptoSign('sha256', Buffer.from(`${h}.${p}`), { key: client.key, dsaEncoding: 'der' });
  assert.notEqual(der.length, 64);
  await rejectsProof(verify(replaceSignature(proof, der)), 'signature', 'DER signature');
});

test('ECDSA malleability: (r, n - s) is mathematically valid, so it verifies with the same claims', async () => {
  // ECDSA accepts both s and n - s; OpenSSL, Go and WebCrypto signers emit high-s values half the
  // time, so a verifier cannot refuse them without refusing honest proofs. What matters is that the
  // twin carries exactly the signed claims: it grants nothing the original did not (the binding
  // cache keys on the exact proof string, so the twin is verified in full, and jti replay detection
  // keys on the claim, not the signature).
  const proof = forge({}, { jti: 'one-time' });
  const sig = signatureOf(proof);
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  const twin = replaceSignature(proof, Buffer.concat([sig.subarray(0, 32), Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex')]));
  assert.notEqual(twin, proof);
  const [a, b] = await Promise.all([verify(proof), verify(twin)]);
  assert.deepEqual(b, a);
  assert.equal(b.claims.jti, 'one-time');
});

test('altered Ed25519 and RSA signatures are refused, including non-canonical Ed25519 S (S + L)', async () => {
  const ed = (await identities('ed25519')).client;
  const edProof = await createSessionBindingProof({ privateKey: ed.key, certificate: ed.cert, accessToken: TOKEN, ekm: EKM, iat: IAT });
  const edSig = signatureOf(edProof);
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  const sLe = Buffer.from(edSig.subarray(32)).reverse();
  const sPlusL = BigInt(`0x${sLe.toString('hex')}`) + L;
  assert.ok(sPlusL < 1n << 256n);
  const malleated = Buffer.concat([edSig.subarray(0, 32), Buffer.from(sPlusL.toString(16).padStart(64, '0'), 'hex').reverse()]);
  await rejectsProof(verify(replaceSignature(edProof, malleated), { certificate: ed.cert }), 'signature', 'Ed25519 S + L');
  const edFlip = Buffer.from(edSig);
  edFlip[10] = (edFlip[10] as number) ^ 1;
  await rejectsProof(verify(replaceSignature(edProof, edFlip), { certificate: ed.cert }), 'signature', 'Ed25519 bit flip');
  await rejectsProof(verify(replaceSignature(edProof, edSig.subarray(0, 63)), { certificate: ed.cert }), 'signature', 'Ed25519 63 bytes');

  const rsa = (await identities('rsa')).client;
  for (const alg of ['PS256', 'RS256'] as const) {
    const proof = await createSessionBindingProof({ privateKey: rsa.key, certificate: rsa.cert, accessToken: TOKEN, ekm: EKM, iat: IAT, alg });
    const sig = signatureOf(proof);
    const flipped = Buffer.from(sig);
    flipped[128] = (flipped[128] as number) ^ 0x10;
    await rejectsProof(verify(replaceSignature(proof, flipped), { certificate: rsa.cert }), 'signature', `${alg} flip`);
    await rejectsProof(verify(replaceSignature(proof, sig.subarray(1)), { certificate: rsa.cert }), 'signature', `${alg} 255 bytes`);
    await rejectsProof(verify(replaceSignature(proof, Buffer.concat([Buffer.alloc(1), sig])), { certificate: rsa.cert }), 'signature', `${alg} 257 bytes`);
  }
  // A PKCS#1 v1.5 signature under a PS256 header (and the reverse) is refused.
  const [h, p] = (await createSessionBindingProof({ privateKey: rsa.key, certificate: rsa.cert, accessToken: TOKEN, ekm: EKM, iat: IAT, alg: 'PS256' })).split('.') as [string, string];
  await rejectsProof(verify(`${h}.${p}.${b64u(rawSign('RS256', rsa.key, `${h}.${p}`))}`, { certificate: rsa.cert }), 'signature', 'RS256 bytes under PS256');
});

test('malformed compact serialization is refused as malformed', async () => {
  const good = forge();
  const [h, p, s] = good.split('.') as [string, string, string];
  const cases: Array<[string, string]> = [
    ['empty', ''],
    ['one part', h],
    ['two parts', `${h}.${p}`],
    ['two parts, trailing dot', `${h}.${p}.`],
    ['four parts', `${good}.${s}`],
    ['four parts, empty last', `${good}.`],
    ['five parts (JWE shape)', `${h}.${p}.${s}.${s}.${s}`],
    ['only dots', '..'],
    ['empty header', `.${p}.${s}`],
    ['empty payload', `${h}..${s}`],
    ['leading space', ` ${good}`],
    ['trailing space', `${good} `],
    ['trailing newline', `${good}\n`],
    ['CRLF inside', `${h}.${p}\r\n.${s}`],
    ['"+" in signature', `${h}.${p}.${s.slice(0, -2)}+A`],
    ['"/" in header', `${h.slice(0, -1)}/.${p}.${s}`],
    ['"=" padding on payload', `${h}.${p}=.${s}`],
    ['"==" padding on signature', `${h}.${p}.${s}==`],
    ['percent-encoded char', `${h}.${p}.${s.slice(0, -3)}%41`],
    ['non-ASCII char', `${h}.${p}é.${s}`],
    ['full-width letter', `${h}.${p}.${s.slice(0, -1)}Ａ`],
    ['NUL', `${h}.${p}\u0000.${s}`],
    ['header length % 4 == 1', `${h}A.${p}.${s}`],
    ['header "e30" + junk', `e30x.${p}.${s}`],
    ['quoted', `"${good}"`],
    ['Bearer prefix', `Bearer ${good}`],
  ];
  for (const [name, proof] of cases) await rejectsProof(verify(proof), 'malformed', name);
});

test('non-canonical base64url (stray low bits in the last character) is refused in every segment', async () => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  /** Same bytes, different string: set the lowest spare bit of the final character. */
  const nonCanonical = (segment: string): string => {
    const spareBits = [0, 0, 4, 2][segment.length % 4] as number;
    assert.ok(spareBits > 0, 'segment has no spare bits');
    const last = alphabet.indexOf(segment[segment.length - 1] as string);
    const variant = `${segment.slice(0, -1)}${alphabet[last | 1]}`;
    assert.notEqual(variant, segment);
    assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(segment, 'base64url'));
    return variant;
  };
  // Header: pad the JSON so the segment has spare bits, then sign the non-canonical form.
  let headerJson = JSON.stringify(HEADER);
  while (Buffer.from(headerJson).toString('base64url').length % 4 === 0) headerJson = headerJson.replace('{', '{ ');
  const hNc = nonCanonical(b64u(headerJson));
  const pOk = b64u(CLAIMS);
  await rejectsProof(verify(`${hNc}.${pOk}.${b64u(rawSign('ES256', client.key, `${hNc}.${pOk}`))}`), 'malformed', 'header');

  // Payload, correctly signed over its non-canonical form (a signer-side malleability).
  let claimsJson = JSON.stringify(CLAIMS);
  while (Buffer.from(claimsJson).toString('base64url').length % 4 === 0) claimsJson = claimsJson.replace('{', '{ ');
  const hOk = b64u(HEADER);
  const pNc = nonCanonical(b64u(claimsJson));
  await rejectsProof(verify(`${hOk}.${pNc}.${b64u(rawSign('ES256', client.key, `${hOk}.${pNc}`))}`), 'malformed', 'payload');

  // Signature: 64 bytes encode to 86 characters with 4 spare bits; a third party can flip them to
  // mint a different proof string carrying the same signature.
  const good = forge();
  const [h, p, s] = good.split('.') as [string, string, string];
  await rejectsProof(verify(`${h}.${p}.${nonCanonical(s)}`), 'malformed', 'signature');
});

test('header and payload that are not UTF-8 JSON objects (RFC 8725 3.7) are refused as malformed', async () => {
  const headerWith = (bytes: Buffer) => Buffer.concat([Buffer.from(`{${HEADER_JSON},"x":"`), bytes, Buffer.from('"}')]);
  for (const [name, header] of [
    ['invalid UTF-8 byte 0xff', headerWith(Buffer.from([0xff]))],
    ['overlong "/" (0xc0 0xaf)', headerWith(Buffer.from([0xc0, 0xaf]))],
    ['lone surrogate (0xed 0xa0 0x80)', headerWith(Buffer.from([0xed, 0xa0, 0x80]))],
    ['truncated sequence', headerWith(Buffer.from([0xe2, 0x82]))],
    ['UTF-16LE JSON', Buffer.from(JSON.stringify(HEADER), 'utf16le')],
    ['JSON array', Buffer.from(JSON.stringify([HEADER]))],
    ['JSON string', Buffer.from(JSON.stringify(JSON.stringify(HEADER)))],
    ['JSON null', Buffer.from('null')],
    ['JSON number', Buffer.from('1')],
    ['not JSON', Buffer.from('typ=tls-binding-proof+jwt')],
    ['trailing garbage', Buffer.from(`${JSON.stringify(HEADER)}x`)],
    ['two objects', Buffer.from(`${JSON.stringify(HEADER)}{}`)],
  ] as const) {
    await rejectsProof(verify(forgeRaw(header)), 'malformed', `header: ${name}`);
  }
  const claimsWith = (bytes: Buffer) => Buffer.concat([Buffer.from(`{${CLAIMS_JSON},"x":"`), bytes, Buffer.from('"}')]);
  for (const [name, payload] of [
    ['invalid UTF-8 byte 0xff', claimsWith(Buffer.from([0xff]))],
    ['overlong encoding', claimsWith(Buffer.from([0xc0, 0xaf]))],
    ['UTF-16LE JSON', Buffer.from(JSON.stringify(CLAIMS), 'utf16le')],
    ['JSON array', Buffer.from(JSON.stringify([CLAIMS]))],
    ['JSON null', Buffer.from('null')],
    ['JSON string', Buffer.from('"claims"')],
    ['not JSON', Buffer.from('ath=x&ekm=y')],
    ['empty', Buffer.alloc(0)],
  ] as const) {
    // An empty payload encodes to an empty segment, which the serialization check catches first.
    await rejectsProof(verify(forgeRaw(JSON.stringify(HEADER), payload)), 'malformed', `payload: ${name}`);
  }
});

test('duplicate and look-alike members: the lexically last duplicate counts, consistently with the signature check', async () => {
  // RFC 7515 section 4: a parser MUST reject duplicates or use the lexically last one. The checks
  // and jose read the same JSON.parse result, so there is no parser differential to exploit.
  const lastWins = await verify(forgeRaw(`{"typ":"${TYP}","alg":"none","alg":"ES256","x5t#S256":"${X5T}"}`));
  assert.equal(lastWins.header.alg, 'ES256');
  await rejectsProof(verify(forgeRaw(`{${HEADER_JSON},"alg":"none"}`)), 'alg', 'alg none last');
  await rejectsProof(verify(forgeRaw(`{${HEADER_JSON},"\\u0061lg":"HS256"}`)), 'alg', 'escaped alg last');
  await rejectsProof(verify(forgeRaw(`{${HEADER_JSON},"typ":"at+jwt"}`)), 'typ', 'typ at+jwt last');
  await rejectsProof(verify(forgeRaw(`{${HEADER_JSON},"x5t#S256":"${certificateThumbprint(attacker.cert)}"}`)), 'x5t_mismatch', 'x5t last');
  await rejectsProof(verify(forgeRaw(JSON.stringify(HEADER), `{${CLAIMS_JSON},"ekm":"${OTHER_EKM.toString('base64url')}"}`)), 'ekm_mismatch', 'ekm last');
  await rejectsProof(verify(forgeRaw(JSON.stringify(HEADER), `{${CLAIMS_JSON},"ath":"${accessTokenHash(OTHER_TOKEN)}"}`)), 'ath_mismatch', 'ath last');
  await rejectsProof(verify(forgeRaw(JSON.stringify(HEADER), `{${CLAIMS_JSON},"iat":"${IAT}"}`)), 'claims', 'iat string last');
  const ekmLast = await verify(forgeRaw(JSON.stringify(HEADER), `{"ekm":"${OTHER_EKM.toString('base64url')}",${CLAIMS_JSON}}`));
  assert.equal(ekmLast.claims.ekm, CLAIMS.ekm);
  // Look-alike names are other, unknown members and are ignored (RFC 7515 4: unknown parameters).
  const lookAlike = await verify(forge({ ALG: 'none', Alg: 'HS256', JWK: {}, Crit: ['x'], kid: 'k', 'typ ': 'JWT' }));
  assert.equal(lookAlike.header.alg, 'ES256');
  // "__proto__" from JSON is plain data: it neither changes the prototype nor hides a check.
  const proto = await verify(forgeRaw(`{"__proto__":{"alg":"none","crit":["x"],"jwk":{}},${HEADER_JSON}}`));
  assert.equal(proto.header.alg, 'ES256');
  assert.equal(Object.getPrototypeOf(proto.header), Object.prototype);
});

test('size limit: a proof of exactly MAX_PROOF_LENGTH characters verifies, one more is malformed', async () => {
  assert.equal(MAX_PROOF_LENGTH, 8192);
  const b64len = (n: number) => Math.ceil((4 * n) / 3);
  const build = (target: number): string => {
    for (let hp = 0; hp < 4; hp++) {
      const headerJson = JSON.stringify({ ...HEADER, kid: 'k'.repeat(hp) });
      const fixed = b64len(Buffer.byteLength(headerJson)) + 1 + 1 + 86;
      for (let pad = 0; pad < target; pad++) {
        const claimsJson = JSON.stringify({ ...CLAIMS, pad: 'p'.repeat(pad) });
        const total = fixed + b64len(Buffer.byteLength(claimsJson));
        if (total === target) return forgeRaw(headerJson, claimsJson);
        if (total > target) break;
      }
    }
    throw new Error(`cannot build a proof of ${target} characters`);
  };
  const exact = build(MAX_PROOF_LENGTH);
  assert.equal(exact.length, MAX_PROOF_LENGTH);
  await verify(exact);
  const over = build(MAX_PROOF_LENGTH + 1);
  assert.equal(over.length, MAX_PROOF_LENGTH + 1);
  await rejectsProof(verify(over), 'malformed');
  await rejectsProof(verify(`${forge()}${'A'.repeat(100_000)}`), 'malformed');
  await rejectsProof(verify('.'.repeat(MAX_PROOF_LENGTH + 1)), 'malformed');
});

test('claim types and encodings: each invalid value is refused on claims', async () => {
  const long = 'j'.repeat(2049);
  const cases: Array<[string, Record<string, unknown>]> = [
    ['iat string', { iat: String(IAT) }],
    ['iat negative', { iat: -1 }],
    ['iat missing', { iat: undefined }],
    ['iat null', { iat: null }],
    ['iat boolean', { iat: true }],
    ['iat array', { iat: [IAT] }],
    ['ath missing', { ath: undefined }],
    ['ath 31 bytes', { ath: b64u(Buffer.alloc(31, 1)) }],
    ['ath 33 bytes', { ath: b64u(Buffer.alloc(33, 1)) }],
    ['ath hex', { ath: createHash('sha256').update(TOKEN).digest('hex') }],
    ['ath standard base64 with padding', { ath: createHash('sha256').update(TOKEN).digest('base64') }],
    ['ath number', { ath: 1 }],
    ['ekm missing', { ekm: undefined }],
    ['ekm 31 bytes', { ekm: b64u(EKM.subarray(0, 31)) }],
    ['ekm 33 bytes', { ekm: b64u(Buffer.concat([EKM, Buffer.alloc(1)])) }],
    ['ekm empty', { ekm: '' }],
    ['ekm standard base64 alphabet', { ekm: Buffer.alloc(32, 0xfb).toString('base64').replace(/=+$/, '') }],
    ['ekm padded', { ekm: `${EKM.toString('base64url')}=` }],
    ['ekm hex', { ekm: EKM.toString('hex') }],
    ['ekm with whitespace', { ekm: ` ${EKM.toString('base64url')}` }],
    ['ekm array', { ekm: [...EKM] }],
    ['ekm object', { ekm: { value: EKM.toString('base64url') } }],
    ['jti empty', { jti: '' }],
    ['jti number', { jti: 7 }],
    ['jti too long', { jti: long }],
    ['htm with space', { htm: 'PO ST' }],
    ['htm empty', { htm: '' }],
    ['htm with CRLF', { htm: 'GET\r\n' }],
    ['htm with slash', { htm: 'GET/' }],
    ['htm array', { htm: ['GET'] }],
    ['htu empty', { htu: '' }],
    ['htu number', { htu: 443 }],
    ['htu too long', { htu: `/${'a'.repeat(2048)}` }],
  ];
  for (const [name, claims] of cases) await rejectsProof(verify(forge({}, claims)), 'claims', name);
  // Raw JSON forms JSON.stringify cannot produce.
  for (const [name, iat] of [['iat 1e400 (Infinity)', '1e400'], ['iat -0.5', '-0.5']] as const) {
    await rejectsProof(verify(forgeRaw(JSON.stringify(HEADER), `{"ath":"${CLAIMS.ath}","ekm":"${CLAIMS.ekm}","iat":${iat}}`)), 'claims', name);
  }
  // Boundaries that are valid.
  const ok = await verify(forge({}, { jti: 'j'.repeat(2048), htm: 'get', htu: 'https://rs.example/x' }));
  assert.equal(ok.claims.jti?.length, 2048);
  assert.equal(ok.claims.htm, 'get');
  const fractional = await verify(forge({}, { iat: IAT + 0.5 }));
  assert.equal(fractional.claims.iat, IAT + 0.5);
});

test('iat window: exact boundaries with the default and with custom maxAge/clockSkew', async () => {
  const at = (iat: number) => forge({}, { iat });
  // Defaults: clockSkew 30, maxAge 300.
  await verify(at(IAT + 30));
  await rejectsProof(verify(at(IAT + 31)), 'iat_future');
  await rejectsProof(verify(at(IAT + 30.001)), 'iat_future');
  await verify(at(IAT - 330));
  await rejectsProof(verify(at(IAT - 331)), 'iat_stale');
  await rejectsProof(verify(at(IAT - 330.001)), 'iat_stale');
  await rejectsProof(verify(at(0)), 'iat_stale');
  await rejectsProof(verify(at(IAT + 86_400 * 365)), 'iat_future');
  // Custom window, skew 5 and maxAge 60.
  const opts = { maxAge: 60, clockSkew: 5 };
  await verify(at(IAT + 5), opts);
  await rejectsProof(verify(at(IAT + 6), opts), 'iat_future');
  await verify(at(IAT - 65), opts);
  await rejectsProof(verify(at(IAT - 66), opts), 'iat_stale');
  // Fractional now (the verifier's default clock is Date.now() / 1000).
  await verify(at(IAT), { now: IAT + 330.5, maxAge: 300, clockSkew: 30.5 });
  await rejectsProof(verify(at(IAT), { now: IAT + 330.5 }), 'iat_stale');
  const err = await rejectsProof(verify(at(IAT + 31)), 'iat_future');
  assert.equal(err.description, 'Session-Binding Proof verification failed: iat is in the future');
  const stale = await rejectsProof(verify(at(IAT - 331)), 'iat_stale');
  assert.equal(stale.description, 'Session-Binding Proof verification failed: iat is too old');
});

test('exporter and token-hash mismatches', async () => {
  const err = await rejectsProof(verify(forge({}, { ekm: OTHER_EKM.toString('base64url') })), 'ekm_mismatch');
  assert.equal(err.description, 'Session-Binding Proof verification failed: exporter mismatch');
  const oneBit = Buffer.from(EKM);
  oneBit[31] = (oneBit[31] as number) ^ 1;
  await rejectsProof(verify(forge({}, { ekm: oneBit.toString('base64url') })), 'ekm_mismatch', 'one bit off');
  // A connection value of the wrong size never matches.
  await rejectsProof(verify(forge(), { ekm: EKM.subarray(0, 31) }), 'ekm_mismatch', 'short connection ekm');
  await rejectsProof(verify(forge(), { ekm: Buffer.alloc(0) }), 'ekm_mismatch', 'empty connection ekm');

  const ath = await rejectsProof(verify(forge(), { accessToken: OTHER_TOKEN }), 'ath_mismatch');
  assert.equal(ath.description, 'Session-Binding Proof verification failed: access token hash mismatch');
  await rejectsProof(verify(forge(), { accessToken: undefined, ath: accessTokenHash(OTHER_TOKEN) }), 'ath_mismatch', 'precomputed ath');
  await rejectsProof(verify(forge(), { accessToken: undefined, ath: 'not base64url!' }), 'ath_mismatch', 'garbage expected ath');
  await rejectsProof(verify(forge(), { accessToken: `${TOKEN}=` }), 'ath_mismatch', 'token with padding appended');
  // A proof for one token does not cover another token on the same connection (draft 3.3.2).
  const proofB = forge({}, { ath: accessTokenHash(OTHER_TOKEN) });
  await verify(proofB, { accessToken: OTHER_TOKEN });
  await rejectsProof(verify(proofB), 'ath_mismatch');
});

test('every failure is an InvalidProofError whose public text never echoes proof content', async () => {
  const marker = 'INJECTED"\r\nX-Evil: 1';
  const attempts = [
    forge({ typ: marker }),
    forge({ alg: marker }),
    forge({ 'x5t#S256': marker }),
    forge({}, { ekm: marker }),
    forge({}, { jti: '' , htm: marker }),
    `${b64u(marker)}.${b64u(marker)}.${b64u(marker)}`,
    marker,
  ];
  for (const proof of attempts) {
    const error = await verify(proof).then(
      () => assert.fail('verified'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof InvalidProofError);
    assert.ok(!error.challenge.includes('INJECTED') && !error.description.includes('INJECTED'));
    assert.deepEqual(Object.keys(error.toJSON()), ['error', 'error_description']);
  }
});

test('a second key pair with the same public key type but not in the certificate never verifies', async () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await rejectsProof(verify(forge({}, {}, { alg: 'ES256', key: privateKey })), 'signature');
});
