/**
 * JOSE attacks on RFC 9068 access tokens at the resource server (RFC 8725 sections 2.1-2.8, 3.1,
 * 3.7, 3.10, 3.11): `jwtAccessTokenValidator` with a local (and, for key-fetching headers, a remote)
 * JWKS, and end to end through `createSessionBoundVerifier`, whose per-reason counter must show
 * exactly the refusals. Tokens are hand-assembled with node:crypto. Attacks on the key carry a valid
 * signature by the attacker's key; attacks on one header or encoding rule are signed by the issuer's
 * own key, so each case isolates one check. Every case asserts the exact `InvalidTokenError.reason`.
 *
 * Complements test/unit/jwks.test.ts ('validator: ...'), which covers typ strings, iss/aud, exp/nbf,
 * alg none, HS256 with the public key, foreign signatures, one bit flip, junk and the size limit.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { CompactEncrypt, SignJWT, calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import { createDevPki } from '@tether/pki';
import {
  InvalidRequestError,
  PROOF_TYP,
  createSessionBindingProof,
  createSessionBoundVerifier,
  jwtAccessTokenValidator,
  localJwks,
  remoteJwks,
  sessionBoundConfirmation,
} from '@tether/core';
import { DPOP_TYP, createDpopProof } from '@tether/core/dpop';
import { EKM, assemble, b64u, identities, rawSign, type RawAlg } from './support/jws.js';
import { json, startServer, type TestServer } from './support/http.js';
import { rejectsToken } from './support/rejects.js';
import { FakeConnection } from './support/connection.js';

const ISS = 'https://as.tether.test';
const AUD = 'https://rs.tether.test';
const NOW = 1_800_000_000;

interface Key {
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: JWK;
}

async function ecKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

/** The issuer's signing key (the only key in the resource server's JWKS). */
const ISSUER = await ecKey('k1');
/** The attacker's own key pair. */
const ATTACKER = await ecKey('attacker');
const ATTACKER_KID = await calculateJwkThumbprint(ATTACKER.jwk);
const RSA = generateKeyPairSync('rsa', { modulusLength: 2048 });
const { client } = await identities('p256');
/** A CA certificate the attacker made for itself (self-signed, its key in the attacker's hands). */
const rogue = await createDevPki({ clients: [] });
const ROGUE_CERT = new X509Certificate(rogue.ca.cert);
const ROGUE_KEY = createPrivateKey(rogue.ca.key);

const HEADER = { alg: 'ES256', typ: 'at+jwt', kid: 'k1' };
const CLAIMS = {
  iss: ISS,
  aud: AUD,
  sub: 'user-1',
  client_id: 'client',
  scope: 'read',
  iat: NOW,
  exp: NOW + 600,
  jti: 'jti-1',
  cnf: sessionBoundConfirmation(client.cert),
};
const HEADER_JSON = JSON.stringify(HEADER).slice(1, -1);
const CLAIMS_JSON = JSON.stringify(CLAIMS).slice(1, -1);

type Signer = { alg: RawAlg; key: KeyObject };
const BY_ISSUER: Signer = { alg: 'ES256', key: ISSUER.privateKey };
const BY_ATTACKER: Signer = { alg: 'ES256', key: ATTACKER.privateKey };

const strip = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

/** A token with header/claims overrides (undefined deletes), signed by the issuer unless told. */
function forge(header: Record<string, unknown> = {}, claims: Record<string, unknown> = {}, signer: Signer = BY_ISSUER): string {
  return assemble(strip({ ...HEADER, ...header }), strip({ ...CLAIMS, ...claims }), signer);
}

/** A token from raw header/payload bytes (duplicate members, escapes, non-UTF-8), signed by the issuer. */
function forgeRaw(header: string | Buffer, payload: string | Buffer = JSON.stringify(CLAIMS)): string {
  return assemble(Buffer.from(header), Buffer.from(payload), BY_ISSUER);
}

/** Sign `header.payload` as given, however non-canonical its segments. */
function signSegments(h: string, p: string, signer: Signer = BY_ISSUER): string {
  return `${h}.${p}.${b64u(rawSign(signer.alg, signer.key, `${h}.${p}`))}`;
}

const validator = (extra: Partial<Parameters<typeof jwtAccessTokenValidator>[0]> = {}) =>
  jwtAccessTokenValidator({ keys: localJwks({ keys: [ISSUER.jwk] }), issuer: ISS, audience: AUD, now: () => NOW, cacheMaxEntries: 0, ...extra });
const v = validator();

/** A loopback server standing in for the attacker's jku/x5u host; it counts every request. */
async function attackerHost(t: TestContext): Promise<TestServer> {
  const server = await startServer((_req, res) => json(res, 200, { keys: [ATTACKER.jwk] }));
  t.after(() => server.close());
  return server;
}

/** Same bytes, different string: set the lowest spare bit of the final base64url character. */
function nonCanonical(segment: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  assert.ok(segment.length % 4 !== 0, 'segment has no spare bits');
  const variant = `${segment.slice(0, -1)}${alphabet[alphabet.indexOf(segment.at(-1) as string) | 1]}`;
  assert.notEqual(variant, segment);
  assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(segment, 'base64url'));
  return variant;
}

/** JSON text of `value` with spaces added until its base64url form has spare bits. */
function withSpareBits(value: object): string {
  let text = JSON.stringify(value);
  while (Buffer.from(text).toString('base64url').length % 4 === 0) text = text.replace('{', '{ ');
  return text;
}

test('baseline: the hand-assembled token validates (the forging helpers are sound)', async () => {
  const claims = await v.validate(forge());
  assert.equal(claims.sub, 'user-1');
  await v.validate(forgeRaw(JSON.stringify(HEADER)));
});

test('jwk header: a token signed by the attacker with its key embedded is refused (the key comes from the JWKS only)', async () => {
  const jwk = { ...ATTACKER.jwk, kid: undefined };
  await rejectsToken(v.validate(forge({ jwk }, {}, BY_ATTACKER)), 'invalid', 'jwk, kid of the issuer key');
  await rejectsToken(v.validate(forge({ jwk, kid: undefined }, {}, BY_ATTACKER)), 'invalid', 'jwk, no kid');
  await rejectsToken(v.validate(forge({ jwk, kid: ATTACKER_KID }, {}, BY_ATTACKER)), 'unknown_key', 'jwk, kid = its thumbprint');
  // Even the issuer's own public key in the header does not make an attacker signature valid.
  await rejectsToken(v.validate(forge({ jwk: ISSUER.jwk }, {}, BY_ATTACKER)), 'invalid', 'issuer jwk, attacker signature');
});

test('jku and x5u headers pointing at an attacker host are never fetched', async (t) => {
  const host = await attackerHost(t);
  // A JWKS server of the issuer's, to show the remote resolver also ignores the header URLs.
  const issuerJwks = await startServer((_req, res) => json(res, 200, { keys: [ISSUER.jwk] }));
  t.after(() => issuerJwks.close());
  const remote = jwtAccessTokenValidator({
    keys: remoteJwks(`${issuerJwks.url}/jwks`, { cooldownMs: 60_000, timeoutMs: 1000 }),
    issuer: ISS,
    audience: AUD,
    now: () => NOW,
    cacheMaxEntries: 0,
  });
  await remote.validate(forge());
  assert.equal(issuerJwks.requests.length, 1);
  const forged: Array<[string, string, string]> = [
    ['jku, kid k1', forge({ jku: `${host.url}/jwks.json` }, {}, BY_ATTACKER), 'invalid'],
    ['jku, kid of the attacker key', forge({ jku: `${host.url}/jwks.json`, kid: ATTACKER_KID }, {}, BY_ATTACKER), 'unknown_key'],
    ['jku, no kid', forge({ jku: `${host.url}/jwks.json`, kid: undefined }, {}, BY_ATTACKER), 'invalid'],
    ['x5u, kid k1', forge({ x5u: `${host.url}/cert.pem` }, {}, BY_ATTACKER), 'invalid'],
    ['x5u, no kid', forge({ x5u: `${host.url}/cert.pem`, kid: undefined }, {}, BY_ATTACKER), 'invalid'],
    ['jku and jwk together', forge({ jku: `${host.url}/jwks.json`, jwk: ATTACKER.jwk, kid: ATTACKER_KID }, {}, BY_ATTACKER), 'unknown_key'],
  ];
  for (const [name, token, reason] of forged) {
    await rejectsToken(v.validate(token), reason, `local: ${name}`);
    await rejectsToken(remote.validate(token), reason, `remote: ${name}`);
  }
  assert.equal(host.requests.length, 0, 'nothing was fetched from a header URL');
  // Inside the 60 s cooldown an unknown kid causes no refetch either: one fetch, of the configured URL.
  assert.deepEqual(
    issuerJwks.requests.map((r) => r.url),
    ['/jwks'],
  );
});

test('x5c header: the attacker certificate (self-signed, or issued by the trusted dev CA) is refused', async () => {
  const selfSigned = [ROGUE_CERT.raw.toString('base64')];
  const caIssued = [Buffer.from((await identities('p256')).attacker.cert.raw).toString('base64')];
  const attackerKey = (await identities('p256')).attacker.key;
  await rejectsToken(v.validate(forge({ x5c: selfSigned }, {}, { alg: 'ES256', key: ROGUE_KEY })), 'invalid', 'self-signed x5c, kid k1');
  await rejectsToken(v.validate(forge({ x5c: selfSigned, kid: undefined }, {}, { alg: 'ES256', key: ROGUE_KEY })), 'invalid', 'self-signed x5c, no kid');
  await rejectsToken(v.validate(forge({ x5c: caIssued, kid: undefined }, {}, { alg: 'ES256', key: attackerKey })), 'invalid', 'CA-issued x5c, no kid');
  await rejectsToken(v.validate(forge({ x5c: caIssued, 'x5t#S256': 'x', kid: 'attacker' }, {}, { alg: 'ES256', key: attackerKey })), 'unknown_key', 'CA-issued x5c, own kid');
});

test('kid naming the attacker key, path traversal, SQL-ish and non-string kids are unknown keys, and never reach a URL', async (t) => {
  const kids: unknown[] = [
    ATTACKER_KID,
    'attacker',
    '../../../../../../etc/passwd',
    '..%2F..%2F..%2Fjwks.json',
    '/dev/null',
    "k1' OR '1'='1",
    'k1" OR 1=1 --',
    'k1; DROP TABLE keys',
    '*',
    'k1\u0000',
    ' k1',
    'K1',
    'k1 ',
    '',
    'x'.repeat(4000),
    1,
    null,
    true,
    ['k1'],
    { kid: 'k1' },
  ];
  for (const kid of kids) {
    await rejectsToken(v.validate(forge({ kid }, {}, BY_ATTACKER)), 'unknown_key', `attacker-signed, kid ${JSON.stringify(kid).slice(0, 40)}`);
    await rejectsToken(v.validate(forge({ kid })), 'unknown_key', `issuer-signed, kid ${JSON.stringify(kid).slice(0, 40)}`);
  }
  // A remote JWKS asks only its configured URL (kid is never part of a path), once per cooldown.
  const jwks = await startServer((_req, res) => json(res, 200, { keys: [ISSUER.jwk] }));
  t.after(() => jwks.close());
  let clock = 1_000_000;
  const remote = jwtAccessTokenValidator({
    keys: remoteJwks(`${jwks.url}/jwks`, { cooldownMs: 1000, timeoutMs: 1000, now: () => clock }),
    issuer: ISS,
    audience: AUD,
    now: () => NOW,
    cacheMaxEntries: 0,
  });
  for (const kid of kids) await rejectsToken(remote.validate(forge({ kid }, {}, BY_ATTACKER)), 'unknown_key');
  clock += 1001;
  for (const kid of kids) await rejectsToken(remote.validate(forge({ kid }, {}, BY_ATTACKER)), 'unknown_key');
  assert.deepEqual(
    jwks.requests.map((r) => r.url),
    ['/jwks', '/jwks'],
  );
});

test('crit: unknown extensions, b64 (listed or not), empty and non-array values are refused', async () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['crit with an unknown extension', { crit: ['x-tether-ext'], 'x-tether-ext': 1 }],
    ['crit naming a registered claim', { crit: ['exp'], exp: NOW + 60 }],
    ['crit naming an absent member', { crit: ['x-absent'] }],
    ['crit ["b64"], b64 true', { crit: ['b64'], b64: true }],
    ['crit ["b64"], b64 false', { crit: ['b64'], b64: false }],
    ['crit ["b64"], b64 missing', { crit: ['b64'] }],
    ['crit ["b64","b64"]', { crit: ['b64', 'b64'], b64: true }],
    ['crit []', { crit: [] }],
    ['crit "b64" (a string)', { crit: 'b64', b64: true }],
    ['crit {}', { crit: {} }],
    ['crit null', { crit: null }],
    ['crit [1]', { crit: [1] }],
    ['crit [""]', { crit: [''] }],
    ['b64 false without crit', { b64: false }],
    ['b64 true without crit', { b64: true }],
  ];
  for (const [name, header] of cases) await rejectsToken(v.validate(forge(header)), 'invalid', name);
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"\\u0063rit":["b64"],"b64":true}`)), 'invalid', 'escaped crit');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"b\\u0036\\u0034":false}`)), 'invalid', 'escaped b64');
  // RFC 7797 unencoded payload: the payload segment is the raw JSON, signed as such.
  const h = b64u({ ...HEADER, b64: false, crit: ['b64'] });
  const raw = JSON.stringify(CLAIMS);
  await rejectsToken(v.validate(signSegments(h, raw)), 'invalid', 'unencoded payload');
  // ... and the same with the attacker's key.
  await rejectsToken(v.validate(signSegments(h, raw, BY_ATTACKER)), 'invalid', 'unencoded payload, attacker');
});

test('alg that does not match the P-256 key is refused, however validly signed', async () => {
  // Key selection is by kid AND alg: no JWK in the set serves these, hence unknown_key.
  await rejectsToken(v.validate(forge({ alg: 'ES384' }, {}, { alg: 'ES384', key: ISSUER.privateKey })), 'unknown_key', 'ES384 by the P-256 key');
  // ES512 is not among the default algorithms at all.
  await rejectsToken(v.validate(forge({ alg: 'ES512' }, {}, { alg: 'ES512', key: ISSUER.privateKey })), 'invalid', 'ES512 by the P-256 key');
  for (const alg of ['EdDSA', 'Ed25519', 'RS256', 'PS256']) {
    await rejectsToken(v.validate(forge({ alg })), 'unknown_key', `${alg} header over an ES256 signature`);
  }
  await rejectsToken(v.validate(forge({ alg: 'RS256' }, {}, { alg: 'RS256', key: RSA.privateKey })), 'unknown_key', 'RS256 by an RSA key under kid k1');
  await rejectsToken(v.validate(forge({ alg: 'PS256' }, {}, { alg: 'PS256', key: RSA.privateKey })), 'unknown_key', 'PS256 by an RSA key under kid k1');
  // A JWK without an alg member: the key type and curve still decide.
  const { alg: _alg, ...bare } = ISSUER.jwk;
  const loose = validator({ keys: localJwks({ keys: [bare] }) });
  await loose.validate(forge());
  await rejectsToken(loose.validate(forge({ alg: 'ES384' }, {}, { alg: 'ES384', key: ISSUER.privateKey })), 'unknown_key', 'ES384, JWK without alg');
  await rejectsToken(loose.validate(forge({ alg: 'RS256' }, {}, { alg: 'RS256', key: RSA.privateKey })), 'unknown_key', 'RS256, JWK without alg');
  // Names that are not exactly an allowed algorithm never reach key selection.
  for (const alg of ['es256', 'Es256', 'ES256 ', ' ES256', 'ES-256', 'ES256\u0000', 'ES256K', 'ES512', 'HS256', 'none']) {
    await rejectsToken(v.validate(forge({ alg })), 'invalid', `alg ${JSON.stringify(alg)}`);
  }
  for (const alg of [undefined, null, 256, ['ES256'], { alg: 'ES256' }, '']) {
    await rejectsToken(v.validate(forge({ alg })), 'invalid', `alg ${JSON.stringify(alg)}`);
  }
  // A narrowed algorithm list refuses ES384 before any key lookup.
  await rejectsToken(validator({ algorithms: ['ES256'] }).validate(forge({ alg: 'ES384' }, {}, { alg: 'ES384', key: ISSUER.privateKey })), 'invalid');
});

test('typ confusion: proofs, client assertions and ID tokens are not access tokens', async () => {
  // Real artifacts, signed by the keys that make them.
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: forge(), ekm: EKM });
  await rejectsToken(v.validate(proof), 'invalid', 'a Session-Binding Proof');
  const dpop = await createDpopProof({ privateKey: client.key, htm: 'GET', htu: `${AUD}/api`, accessToken: forge() });
  await rejectsToken(v.validate(dpop), 'invalid', 'a DPoP proof');
  const assertion = await new SignJWT({ iss: 'client', sub: 'client', aud: ISS, jti: randomUUID(), exp: NOW + 60 }).setProtectedHeader({ alg: 'ES256' }).sign(client.key);
  await rejectsToken(v.validate(assertion), 'invalid', 'a client assertion');
  // The same types signed by the issuer's own key, with access-token claims: refused on typ alone.
  const idToken = { ...CLAIMS, aud: AUD, azp: 'client', nonce: 'n-0S6_WzA2Mj', auth_time: NOW - 5, cnf: undefined };
  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
    ['Session-Binding Proof typ', { typ: PROOF_TYP, 'x5t#S256': 'x' }, {}],
    ['DPoP typ', { typ: DPOP_TYP, jwk: ATTACKER.jwk }, {}],
    ['client assertion typ', { typ: 'client-authentication+jwt' }, { iss: ISS, sub: ISS }],
    ['ID token (typ JWT)', { typ: 'JWT' }, idToken],
    ['ID token (no typ)', { typ: undefined }, idToken],
    ['application/jwt', { typ: 'application/jwt' }, {}],
    ['typ array', { typ: ['at+jwt'] }, {}],
    ['typ number', { typ: 1 }, {}],
  ];
  for (const [name, header, claims] of cases) await rejectsToken(v.validate(forge(header, claims)), 'claims', name);
});

test('malformed compact serialization is refused: segments, padding, alphabet, whitespace', async () => {
  const good = forge();
  await v.validate(good);
  const [h, p, s] = good.split('.') as [string, string, string];
  const cases: Array<[string, string]> = [
    ['two segments', `${h}.${p}`],
    ['two segments, trailing dot', `${h}.${p}.`],
    ['four segments', `${good}.${s}`],
    ['four segments, empty last', `${good}.`],
    ['five segments (JWE shape)', `${h}.${p}.${s}.${s}.${s}`],
    ['only dots', '..'],
    ['empty header', `.${p}.${s}`],
    ['empty payload', `${h}..${s}`],
    ['empty signature', `${h}.${p}.`],
    ['"=" padding on the signature', `${good}=`],
    ['"==" padding on the signature', `${good}==`],
    ['"=" padding on the header', `${h}=.${p}.${s}`],
    ['"=" padding on the payload', `${h}.${p}=.${s}`],
    ['"+" in the signature', `${h}.${p}.${s.slice(0, -2)}+A`],
    ['"/" in the signature', `${h}.${p}.${s.slice(0, -2)}/A`],
    ['standard base64 signature', `${h}.${p}.${Buffer.from(s, 'base64url').toString('base64')}`],
    ['space inside the signature', `${h}.${p}.${s.slice(0, 20)} ${s.slice(20)}`],
    ['tab inside the signature', `${h}.${p}.${s.slice(0, 20)}\t${s.slice(20)}`],
    ['trailing space', `${good} `],
    ['leading space', ` ${good}`],
    ['trailing newline', `${good}\n`],
    ['CRLF inside the signature', `${h}.${p}.${s.slice(0, 20)}\r\n${s.slice(20)}`],
    ['percent-encoded character', `${h}.${p}.${s.slice(0, -3)}%41`],
    ['non-ASCII character', `${h}.${p}.${s}é`],
    ['full-width letter', `${h}.${p}.${s.slice(0, -1)}Ａ`],
    ['NUL', `${h}.${p}.${s}\u0000`],
    ['signature length % 4 == 1', `${h}.${p}.${s}A`],
    ['non-canonical signature (stray low bits)', `${h}.${p}.${nonCanonical(s)}`],
    ['quoted', `"${good}"`],
    ['Bearer prefix', `Bearer ${good}`],
  ];
  for (const [name, token] of cases) await rejectsToken(v.validate(token), 'invalid', name);
  // Header and payload in a non-canonical spelling, signed as such by the issuer's own key.
  const hNc = nonCanonical(b64u(withSpareBits(HEADER)));
  await rejectsToken(v.validate(signSegments(hNc, p)), 'invalid', 'non-canonical header');
  const pNc = nonCanonical(b64u(withSpareBits(CLAIMS)));
  await rejectsToken(v.validate(signSegments(h, pNc)), 'invalid', 'non-canonical payload');
  // A real JWE (ECDH-ES to the issuer key) is not a JWS.
  const jwe = await new CompactEncrypt(Buffer.from(JSON.stringify(CLAIMS))).setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', typ: 'at+jwt', kid: 'k1' }).encrypt(ISSUER.publicKey);
  assert.equal(jwe.split('.').length, 5);
  await rejectsToken(v.validate(jwe), 'invalid', 'JWE');
});

test('header and payload that are not UTF-8 JSON objects are refused, even signed by the issuer', async () => {
  const headerWith = (bytes: Buffer) => Buffer.concat([Buffer.from(`{${HEADER_JSON},"x":"`), bytes, Buffer.from('"}')]);
  const claimsWith = (bytes: Buffer) => Buffer.concat([Buffer.from(`{${CLAIMS_JSON},"x":"`), bytes, Buffer.from('"}')]);
  const headers: Array<[string, Buffer]> = [
    ['invalid UTF-8 byte 0xff', headerWith(Buffer.from([0xff]))],
    ['overlong "/" (0xc0 0xaf)', headerWith(Buffer.from([0xc0, 0xaf]))],
    ['lone surrogate', headerWith(Buffer.from([0xed, 0xa0, 0x80]))],
    ['UTF-16LE JSON', Buffer.from(JSON.stringify(HEADER), 'utf16le')],
    ['JSON array', Buffer.from(JSON.stringify([HEADER]))],
    ['JSON string', Buffer.from(JSON.stringify(JSON.stringify(HEADER)))],
    ['JSON number', Buffer.from('1')],
    ['JSON null', Buffer.from('null')],
    ['JSON true', Buffer.from('true')],
    ['not JSON', Buffer.from('alg=ES256')],
    ['trailing garbage', Buffer.from(`${JSON.stringify(HEADER)}x`)],
  ];
  for (const [name, header] of headers) await rejectsToken(v.validate(forgeRaw(header)), 'invalid', `header: ${name}`);
  const payloads: Array<[string, Buffer]> = [
    ['invalid UTF-8 byte 0xff', claimsWith(Buffer.from([0xff]))],
    ['overlong encoding', claimsWith(Buffer.from([0xc0, 0xaf]))],
    ['UTF-16LE JSON', Buffer.from(JSON.stringify(CLAIMS), 'utf16le')],
    ['JSON array', Buffer.from(JSON.stringify([CLAIMS]))],
    ['JSON number', Buffer.from('1')],
    ['JSON null', Buffer.from('null')],
    ['JSON string', Buffer.from('"claims"')],
    ['not JSON', Buffer.from('iss=x')],
  ];
  for (const [name, payload] of payloads) await rejectsToken(v.validate(forgeRaw(JSON.stringify(HEADER), payload)), 'invalid', `payload: ${name}`);
});

test('duplicate member names: the lexically last one counts, for the checks and the signature alike', async () => {
  // RFC 7515 section 4 allows "use the lexically last"; jose and the checks read one JSON.parse
  // result, so there is no parser differential. A bad last value is refused on its own check.
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"alg":"none"}`)), 'invalid', 'alg none last');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"alg":"HS256"}`)), 'invalid', 'alg HS256 last');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"\\u0061lg":"ES384"}`)), 'unknown_key', 'escaped alg ES384 last');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"typ":"JWT"}`)), 'claims', 'typ JWT last');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"typ":"${PROOF_TYP}"}`)), 'claims', 'proof typ last');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"kid":"${ATTACKER_KID}"}`)), 'unknown_key', 'kid last');
  await rejectsToken(v.validate(forgeRaw(`{${HEADER_JSON},"crit":["b64"],"b64":true}`)), 'invalid', 'crit last');
  const header = JSON.stringify(HEADER);
  await rejectsToken(v.validate(forgeRaw(header, `{${CLAIMS_JSON},"aud":"https://other.example"}`)), 'claims', 'aud last');
  await rejectsToken(v.validate(forgeRaw(header, `{${CLAIMS_JSON},"iss":"https://evil.example"}`)), 'claims', 'iss last');
  await rejectsToken(v.validate(forgeRaw(header, `{${CLAIMS_JSON},"exp":${NOW - 3600}}`)), 'expired', 'exp last');
  // With an attacker's signature nothing about member order helps.
  const attackerSigned = assemble(Buffer.from(`{"alg":"none",${HEADER_JSON}}`), Buffer.from(JSON.stringify(CLAIMS)), BY_ATTACKER);
  await rejectsToken(v.validate(attackerSigned), 'invalid', 'attacker, alg none first');
});

test('oversized tokens are refused before any parsing, at any size', async () => {
  const cases: Array<[string, string]> = [
    ['1 MiB of base64url', 'A'.repeat(1 << 20)],
    ['1 MiB of dots', '.'.repeat(1 << 20)],
    ['valid token + 1 MiB of padding', `${forge()}${'='.repeat(1 << 20)}`],
    ['20 KiB header', forge({ x: 'h'.repeat(20_000) })],
    ['20 KiB payload', forge({}, { pad: 'p'.repeat(20_000) })],
    ['10 000 segments', 'e30.'.repeat(10_000)],
  ];
  for (const [name, token] of cases) {
    const started = performance.now();
    await rejectsToken(v.validate(token), 'too_large', name);
    assert.ok(performance.now() - started < 250, `${name}: refused in ${Math.round(performance.now() - started)} ms`);
  }
  const small = validator({ maxTokenLength: 1024 });
  await rejectsToken(small.validate(forge({}, { pad: 'p'.repeat(1024) })), 'too_large', 'above a configured limit');
});

test('end to end: createSessionBoundVerifier refuses each forgery with the same reason and counts it once', async () => {
  const verifier = createSessionBoundVerifier({
    tokens: validator({ maxTokenLength: 4096 }),
    now: () => NOW,
  });
  const connection = new FakeConnection(EKM, { certificate: client.cert });
  const proofFor = (token: string) => createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: EKM, iat: NOW });
  const send = async (token: string) => {
    // A genuine proof over exactly the presented string, so only the token can be at fault (a
    // string that is no b64token cannot even be proven; it goes with the proof of another token).
    const proof = await proofFor(token).catch(() => proofFor(forge()));
    return verifier.verify({
      method: 'GET',
      scheme: 'https',
      authority: 'rs.tether.test',
      path: '/api',
      authorization: [`Bearer ${token}`],
      sessionBindingProof: [proof],
      connection,
    });
  };
  const good = forge();
  const principal = await send(good);
  assert.equal(principal.binding, 'session');
  const [h, p, s] = good.split('.') as [string, string, string];
  const cases: Array<[string, string, string]> = [
    ['attacker jwk', forge({ jwk: ATTACKER.jwk }, {}, BY_ATTACKER), 'invalid'],
    ['attacker jku', forge({ jku: 'http://127.0.0.1:9/jwks' }, {}, BY_ATTACKER), 'invalid'],
    ['attacker x5c', forge({ x5c: [ROGUE_CERT.raw.toString('base64')] }, {}, { alg: 'ES256', key: ROGUE_KEY }), 'invalid'],
    ['kid of the attacker key', forge({ kid: ATTACKER_KID }, {}, BY_ATTACKER), 'unknown_key'],
    ['path-traversal kid', forge({ kid: '../../../etc/passwd' }, {}, BY_ATTACKER), 'unknown_key'],
    ['crit unknown', forge({ crit: ['x-ext'], 'x-ext': 1 }), 'invalid'],
    ['crit b64', forge({ crit: ['b64'], b64: true }), 'invalid'],
    ['b64 false', forge({ b64: false }), 'invalid'],
    ['ES384 by the P-256 key', forge({ alg: 'ES384' }, {}, { alg: 'ES384', key: ISSUER.privateKey }), 'unknown_key'],
    ['RS256 by an RSA key', forge({ alg: 'RS256' }, {}, { alg: 'RS256', key: RSA.privateKey }), 'unknown_key'],
    ['alg es256', forge({ alg: 'es256' }), 'invalid'],
    ['no alg', forge({ alg: undefined }), 'invalid'],
    ['typ of a Session-Binding Proof', forge({ typ: PROOF_TYP }), 'claims'],
    ['typ dpop+jwt', forge({ typ: DPOP_TYP }), 'claims'],
    ['typ JWT (ID token)', forge({ typ: 'JWT' }, { nonce: 'n' }), 'claims'],
    ['"==" padding', `${good}==`, 'invalid'],
    ['non-canonical signature', `${h}.${p}.${nonCanonical(s)}`, 'invalid'],
    ['two alg members, last none', forgeRaw(`{${HEADER_JSON},"alg":"none"}`), 'invalid'],
    ['payload a JSON array', forgeRaw(JSON.stringify(HEADER), JSON.stringify([CLAIMS])), 'invalid'],
    ['above maxTokenLength', forge({}, { pad: 'p'.repeat(4096) }), 'too_large'],
  ];
  const expected: Record<string, number> = {};
  for (const [name, token, reason] of cases) {
    await rejectsToken(send(token), reason, name);
    expected[reason] = (expected[reason] ?? 0) + 1;
  }
  // What the Authorization header grammar (RFC 6750 b64token) refuses never reaches the validator.
  const unparsable: Array<[string, string]> = [
    ['space inside', `${h}.${p}.${s.slice(0, 10)} ${s.slice(10)}`],
    ['"=" inside', `${h}=.${p}.${s}`],
    ['non-ASCII', `${h}.${p}.${s}é`],
    ['1 MiB', 'A'.repeat(1 << 20)],
  ];
  for (const [name, token] of unparsable) {
    const error = await send(token).then(
      () => assert.fail(`${name}: accepted`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof InvalidRequestError, `${name}: ${String(error)}`);
    assert.equal(error.reason, 'malformed_authorization', name);
    assert.equal(error.statusCode, 400);
    expected.malformed_authorization = (expected.malformed_authorization ?? 0) + 1;
  }
  assert.deepEqual(verifier.stats.failures, expected);
  assert.equal(verifier.stats.accepted, 1);
  assert.equal(verifier.stats.requests, 1 + cases.length + unparsable.length);
  assert.ok(!('internal' in verifier.stats.failures));
});
