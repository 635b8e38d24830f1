/**
 * JOSE attacks (RFC 8725) at the authorization server's token endpoint: `subject_token` and
 * `actor_token` of an RFC 8693 token exchange, and `private_key_jwt` client assertions (RFC 7523).
 * Key attacks carry a valid signature by the attacker's key; attacks on one header or encoding rule
 * are signed by the AS's own active key (read from its store) or by the client's registered key, so
 * each case isolates one check. Every case asserts the HTTP status, the RFC 6749 `error`, and the
 * reason label the refusal added to `tether_as_request_failures_total`.
 *
 * Complements test/as/client-auth.test.ts ('every other assertion is invalid_client') and
 * test/as/exchange.test.ts (garbage, tampered, revoked and expired subject tokens, splicing).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { CompactEncrypt, calculateJwkThumbprint, exportJWK } from 'jose';
import { PROOF_TYP, createSessionBindingProof } from '@tether/core';
import { DPOP_TYP, createDpopProof } from '@tether/core/dpop';
import { JWT_BEARER_ASSERTION, type ClientMetadata, type TokenClient, type TokenRequestResult } from '@tether/as';
import { TestIssuer } from '../helpers/issuer.js';
import { assemble, b64u, rawSign, type RawAlg } from '../unit/support/jws.js';
import { json, startServer, type TestServer } from '../unit/support/http.js';
import { ACCESS_TOKEN_TYPE, NAMES, clientWith, makeCertificate, spiffe, standardClient, startTestAs, type TestAs } from './helpers/setup.js';

type Signer = { alg: RawAlg; key: KeyObject };
type Header = Record<string, unknown>;
type Claims = Record<string, unknown>;

const strip = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
const EKM = Buffer.alloc(32, 7);
const BODY_LIMIT = 65_536;
const OPEN = 'https://open.example';

const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ATTACKER_JWK = await exportJWK(attacker.publicKey);
const ATTACKER_KID = await calculateJwkThumbprint(ATTACKER_JWK);
const BY_ATTACKER: Signer = { alg: 'ES256', key: attacker.privateKey };
const RSA = generateKeyPairSync('rsa', { modulusLength: 2048 });
/** The attacker's self-signed certificate and its key. */
const selfSigned = await makeCertificate({ subject: 'CN=attacker' });
const SELF_SIGNED_X5C = [new X509Certificate(selfSigned.cert).raw.toString('base64')];
const SELF_SIGNED_KEY = createPrivateKey(selfSigned.key);

/** The private_key_jwt client's key: registered with kid and alg (`pkj`) and as a bare JWK (`pkj2`). */
const pkjKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const PKJ_JWK = { ...(await exportJWK(pkjKey.publicKey)), kid: 'pkj-1', alg: 'ES256' };
const BY_PKJ: Signer = { alg: 'ES256', key: pkjKey.privateKey };

/** A JSON header text with spaces added until its base64url form has spare low bits. */
function withSpareBits(value: object): string {
  let text = JSON.stringify(value);
  while (Buffer.from(text).toString('base64url').length % 4 === 0) text = text.replace('{', '{ ');
  return text;
}

/** Same bytes, different string: set the lowest spare bit of the final base64url character. */
function nonCanonical(segment: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  assert.ok(segment.length % 4 !== 0, 'segment has no spare bits');
  const variant = `${segment.slice(0, -1)}${alphabet[alphabet.indexOf(segment.at(-1) as string) | 1]}`;
  assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(segment, 'base64url'));
  return variant;
}

function signSegments(h: string, p: string, signer: Signer): string {
  return `${h}.${p}.${b64u(rawSign(signer.alg, signer.key, `${h}.${p}`))}`;
}

describe('JOSE attacks at the authorization server', () => {
  let as: TestAs;
  let foreign: TestAs;
  let host: TestServer;
  let noCert: TokenClient;
  /** The AS's active signing key (an insider's view, to isolate one check at a time). */
  let AS: Signer & { kid: string; publicKey: KeyObject };
  /** A real session-bound token of `a` for `b` (b is an intended recipient). */
  let t1: string;

  before(async () => {
    const extra: ClientMetadata[] = [
      { client_id: 'pkj', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [PKJ_JWK] }, audiences: ['*'] },
      { client_id: 'pkj2', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [await exportJWK(pkjKey.publicKey)] }, audiences: ['*'] },
    ];
    as = await startTestAs({ clients: [...NAMES.map((n) => standardClient(n)), ...extra], limits: { bodyBytes: BODY_LIMIT, requestTimeoutMs: 10_000 } });
    foreign = await startTestAs();
    host = await startServer((_req, res) => json(res, 200, { keys: [ATTACKER_JWK] }));
    noCert = clientWith(undefined, as.pki);
    const active = (await as.server.store.listKeys()).find((k) => k.state === 'active');
    assert.ok(active !== undefined);
    assert.equal(active.alg, 'ES256');
    const key = createPrivateKey({ key: active.privateJwk as never, format: 'jwk' });
    AS = { alg: 'ES256', key, kid: active.kid, publicKey: createPublicKey(key) };
    t1 = await as.token('a', { audience: spiffe('b') });
  });

  after(async () => {
    noCert.close();
    await host.close();
    await foreign.close();
    await as.close();
  });

  // -------------------------------------------------------------------------------------------
  // Helpers

  type Outcome = [status: number, error: string, reason: string];

  async function failureCounts(): Promise<Map<string, number>> {
    const metric = await as.server.metrics.failures.get();
    return new Map(metric.values.map((v) => [`${v.labels.endpoint} ${v.labels.error} ${v.labels.reason}`, v.value]));
  }

  /** Send, then require exactly `outcome` and exactly one new failure with that reason label. */
  async function refused(send: () => Promise<TokenRequestResult>, [status, error, reason]: Outcome, label: string): Promise<void> {
    const before = await failureCounts();
    const r = await send();
    assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error, error, `${label}: ${r.text}`);
    assert.equal(r.headers['cache-control'], 'no-store', label);
    const after = await failureCounts();
    const changed = [...after].filter(([k, n]) => n !== (before.get(k) ?? 0)).map(([k, n]) => `${k} +${n - (before.get(k) ?? 0)}`);
    assert.deepEqual(changed, [`token ${error} ${reason} +1`], `${label}: metrics`);
  }

  const now = () => Math.floor(Date.now() / 1000);

  /** Claims of a token the AS could have issued to `b` (bearer, its own). */
  const ownClaims = (sub = 'b'): Claims => ({
    iss: as.server.issuer,
    sub,
    client_id: sub,
    aud: OPEN,
    scope: 'read',
    iat: now(),
    exp: now() + 300,
    jti: randomUUID(),
  });

  /** A token in the AS's format with header/claims overrides (undefined deletes), signed by the AS unless told. */
  const forgeToken = (header: Header = {}, claims: Claims = {}, signer: Signer = AS): string =>
    assemble(strip({ alg: 'ES256', typ: 'at+jwt', kid: AS.kid, ...header }), strip({ ...ownClaims(), ...claims }), signer);
  const forgeTokenRaw = (header: string | Buffer, payload: string | Buffer = JSON.stringify(ownClaims())): string => assemble(Buffer.from(header), Buffer.from(payload), AS);

  const asSubject = (token: string) => () => as.exchange('b', token, { audience: OPEN });
  const asActor = (token: string) => () => as.exchange('b', t1, { audience: OPEN, actor_token: token, actor_token_type: ACCESS_TOKEN_TYPE });

  /** Run a table of own-token forgeries as subject_token and as actor_token: 400 invalid_grant each. */
  async function refuseAsSubjectAndActor(cases: ReadonlyArray<readonly [string, string, string]>): Promise<void> {
    for (const [label, token, reason] of cases) {
      await refused(asSubject(token), [400, 'invalid_grant', `subject_${reason}`], `subject_token: ${label}`);
      await refused(asActor(token), [400, 'invalid_grant', `actor_${reason}`], `actor_token: ${label}`);
    }
  }

  const assertionClaims = (clientId = 'pkj'): Claims => ({ iss: clientId, sub: clientId, aud: as.server.issuer, jti: randomUUID(), iat: now(), exp: now() + 60 });
  const forgeAssertion = (header: Header = {}, claims: Claims = {}, signer: Signer = BY_PKJ): string =>
    assemble(strip({ alg: 'ES256', kid: 'pkj-1', ...header }), strip({ ...assertionClaims(), ...claims }), signer);
  const authenticate = (assertion: string, clientId?: string) => () =>
    noCert.post(`${as.server.url}/token`, {
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
      ...(clientId === undefined ? {} : { client_id: clientId }),
      audience: OPEN,
    });
  const INVALID_CLIENT = (reason: string): Outcome => [401, 'invalid_client', reason];

  // -------------------------------------------------------------------------------------------
  // subject_token and actor_token

  test('baseline: an own token forged with the AS key is accepted as subject and as actor (the helpers are sound)', async () => {
    const subject = await asSubject(forgeToken())();
    assert.equal(subject.status, 200, subject.text);
    const actor = await asActor(forgeToken())();
    assert.equal(actor.status, 200, actor.text);
  });

  test('exchange: key injection through jwk, jku, x5u, x5c and kid is refused, and nothing is fetched', async () => {
    const jku = `${host.url}/jwks.json`;
    await refuseAsSubjectAndActor([
      ['attacker jwk, AS kid', forgeToken({ jwk: ATTACKER_JWK }, {}, BY_ATTACKER), 'header'],
      ['attacker jwk, no kid', forgeToken({ jwk: ATTACKER_JWK, kid: undefined }, {}, BY_ATTACKER), 'header'],
      ['attacker jku', forgeToken({ jku }, {}, BY_ATTACKER), 'header'],
      ['attacker jku, its own kid', forgeToken({ jku, kid: ATTACKER_KID }, {}, BY_ATTACKER), 'header'],
      ['attacker x5u', forgeToken({ x5u: `${host.url}/cert.pem` }, {}, BY_ATTACKER), 'header'],
      ['self-signed x5c', forgeToken({ x5c: SELF_SIGNED_X5C }, {}, { alg: 'ES256', key: SELF_SIGNED_KEY }), 'header'],
      ['jku signed by the AS key itself', forgeToken({ jku }), 'header'],
      ['kid of the attacker key', forgeToken({ kid: ATTACKER_KID }, {}, BY_ATTACKER), 'unknown_key'],
      ['path-traversal kid', forgeToken({ kid: `../../keys/${AS.kid}.json` }, {}, BY_ATTACKER), 'unknown_key'],
      ['SQL-ish kid', forgeToken({ kid: `${AS.kid}' OR '1'='1` }, {}, BY_ATTACKER), 'unknown_key'],
      ['kid with NUL', forgeToken({ kid: `${AS.kid}\u0000` }, {}, BY_ATTACKER), 'unknown_key'],
      ['kid a number', forgeToken({ kid: 1 }, {}, BY_ATTACKER), 'unknown_key'],
      ['kid an array', forgeToken({ kid: [AS.kid] }, {}, BY_ATTACKER), 'unknown_key'],
      ['no kid', forgeToken({ kid: undefined }, {}, BY_ATTACKER), 'unknown_key'],
      ['AS kid, attacker signature', forgeToken({}, {}, BY_ATTACKER), 'signature'],
    ]);
    assert.equal(host.requests.length, 0, 'no header URL was fetched');
  });

  test('exchange: crit, b64 and unencoded payloads are refused', async () => {
    const h = b64u({ alg: 'ES256', typ: 'at+jwt', kid: AS.kid, b64: false, crit: ['b64'] });
    await refuseAsSubjectAndActor([
      ['crit with an unknown extension', forgeToken({ crit: ['x-ext'], 'x-ext': 1 }), 'header'],
      ['crit ["b64"], b64 false', forgeToken({ crit: ['b64'], b64: false }), 'header'],
      ['crit ["b64"], b64 true', forgeToken({ crit: ['b64'], b64: true }), 'header'],
      ['crit []', forgeToken({ crit: [] }), 'header'],
      ['crit "b64" (not an array)', forgeToken({ crit: 'b64', b64: false }), 'header'],
      ['crit null', forgeToken({ crit: null }), 'header'],
      ['b64 false without crit', forgeToken({ b64: false }), 'header'],
      ['escaped crit', forgeTokenRaw(`{"alg":"ES256","typ":"at+jwt","kid":"${AS.kid}","\\u0063rit":["x"]}`), 'header'],
      ['unencoded payload', signSegments(h, JSON.stringify(ownClaims()), AS), 'malformed'],
    ]);
  });

  test('exchange: alg that does not match the AS key, odd case or missing is refused', async () => {
    const hs256 = (() => {
      const input = `${b64u({ alg: 'HS256', typ: 'at+jwt', kid: AS.kid })}.${b64u(ownClaims())}`;
      return `${input}.${b64u(createHmac('sha256', AS.publicKey.export({ type: 'spki', format: 'pem' })).update(input).digest())}`;
    })();
    await refuseAsSubjectAndActor([
      ['ES384 by the P-256 key', forgeToken({ alg: 'ES384' }, {}, { alg: 'ES384', key: AS.key }), 'alg'],
      ['ES512 by the P-256 key', forgeToken({ alg: 'ES512' }, {}, { alg: 'ES512', key: AS.key }), 'alg'],
      ['EdDSA header', forgeToken({ alg: 'EdDSA' }), 'alg'],
      ['RS256 header', forgeToken({ alg: 'RS256' }), 'alg'],
      ['PS256 header', forgeToken({ alg: 'PS256' }), 'alg'],
      ['RS256 by an RSA key under the AS kid', forgeToken({ alg: 'RS256' }, {}, { alg: 'RS256', key: RSA.privateKey }), 'alg'],
      ['alg "es256"', forgeToken({ alg: 'es256' }), 'alg'],
      ['alg missing', forgeToken({ alg: undefined }), 'alg'],
      ['alg none with a signature', forgeToken({ alg: 'none' }), 'alg'],
      ['alg none, empty signature', `${b64u({ alg: 'none', typ: 'at+jwt', kid: AS.kid })}.${b64u(ownClaims())}.`, 'malformed'],
      ['HS256 keyed with the AS public key', hs256, 'alg'],
    ]);
  });

  test('exchange: typ confusion and tokens of other issuers are refused', async () => {
    const cred = as.pki.clients.a!;
    const proof = await createSessionBindingProof({ privateKey: createPrivateKey(cred.key), certificate: new X509Certificate(cred.cert), accessToken: t1, ekm: EKM });
    const dpop = await createDpopProof({ privateKey: pkjKey.privateKey, htm: 'POST', htu: as.server.tokenEndpoint, accessToken: t1 });
    const assertion = forgeAssertion();
    const idToken = { ...ownClaims(), aud: 'b', azp: 'b', nonce: 'n-0S6', auth_time: now() - 5 };
    const otherIssuer = await TestIssuer.create(AS.kid);
    const foreignToken = await foreign.token('b', { audience: OPEN });
    await refuseAsSubjectAndActor([
      ['a Session-Binding Proof', proof, 'typ'],
      ['a DPoP proof', dpop, 'typ'],
      ['a client assertion', assertion, 'typ'],
      ['an ID token (typ JWT) signed by the AS key', forgeToken({ typ: 'JWT' }, idToken), 'typ'],
      ['an ID token without typ signed by the AS key', forgeToken({ typ: undefined }, idToken), 'typ'],
      ['proof typ signed by the AS key', forgeToken({ typ: PROOF_TYP }), 'typ'],
      ['dpop+jwt signed by the AS key', forgeToken({ typ: DPOP_TYP }), 'typ'],
      ['client-authentication+jwt signed by the AS key', forgeToken({ typ: 'client-authentication+jwt' }), 'typ'],
      ['typ an array', forgeToken({ typ: ['at+jwt'] }), 'typ'],
      ['a token of another tether AS', foreignToken, 'unknown_key'],
      ['another issuer, same kid, its own key', await otherIssuer.mint({}, { kid: AS.kid }), 'signature'],
      ['signed by the AS key for another issuer', forgeToken({}, { iss: foreign.server.issuer }), 'iss'],
    ]);
  });

  test('exchange: malformed compact serialization is refused', async () => {
    const good = forgeToken();
    const [h, p, s] = good.split('.') as [string, string, string];
    const header = { alg: 'ES256', typ: 'at+jwt', kid: AS.kid };
    const headerJson = JSON.stringify(header).slice(1, -1);
    const jwe = await new CompactEncrypt(Buffer.from(JSON.stringify(ownClaims())))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', typ: 'at+jwt', kid: AS.kid })
      .encrypt(AS.publicKey);
    await refuseAsSubjectAndActor([
      ['two segments', `${h}.${p}`, 'malformed'],
      ['four segments', `${good}.${s}`, 'malformed'],
      ['five segments (a real JWE)', jwe, 'malformed'],
      ['empty header', `.${p}.${s}`, 'malformed'],
      ['empty payload', `${h}..${s}`, 'malformed'],
      ['empty signature', `${h}.${p}.`, 'malformed'],
      ['"==" padding', `${good}==`, 'malformed'],
      ['"=" in the header', `${h}=.${p}.${s}`, 'malformed'],
      ['"+" in the signature', `${h}.${p}.${s.slice(0, -2)}+A`, 'malformed'],
      ['space in the signature', `${h}.${p}.${s.slice(0, 9)} ${s.slice(9)}`, 'malformed'],
      ['non-ASCII', `${h}.${p}.${s}é`, 'malformed'],
      ['non-canonical signature', `${h}.${p}.${nonCanonical(s)}`, 'malformed'],
      ['non-canonical header, signed as such', signSegments(nonCanonical(b64u(withSpareBits(header))), p, AS), 'malformed'],
      ['header a JSON array', forgeTokenRaw(JSON.stringify([header])), 'malformed'],
      ['header a JSON number', forgeTokenRaw('1'), 'malformed'],
      ['header JSON null', forgeTokenRaw('null'), 'malformed'],
      ['payload a JSON array', forgeTokenRaw(JSON.stringify(header), JSON.stringify([ownClaims()])), 'malformed'],
      ['payload JSON null', forgeTokenRaw(JSON.stringify(header), 'null'), 'malformed'],
      ['header not UTF-8', forgeTokenRaw(Buffer.concat([Buffer.from(`{${headerJson},"x":"`), Buffer.from([0xff]), Buffer.from('"}')])), 'malformed'],
      ['payload not UTF-8', forgeTokenRaw(JSON.stringify(header), Buffer.concat([Buffer.from(JSON.stringify(ownClaims()).slice(0, -1)), Buffer.from(',"x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])), 'malformed'],
      ['two alg members, the last none', forgeTokenRaw(`{${headerJson},"alg":"none"}`), 'alg'],
      ['two typ members, the last JWT', forgeTokenRaw(`{${headerJson},"typ":"JWT"}`), 'typ'],
      ['two kid members, the last unknown', forgeTokenRaw(`{${headerJson},"kid":"${ATTACKER_KID}"}`), 'unknown_key'],
    ]);
  });

  test('exchange: oversized tokens are a clean 400, and a body above the limit a clean 413', async () => {
    const big = forgeToken({}, { pad: 'p'.repeat(20_000) });
    assert.ok(big.length > 16_384 && big.length < BODY_LIMIT);
    await refuseAsSubjectAndActor([
      ['a 27 KB token', big, 'malformed'],
      ['40 000 base64url characters', 'A'.repeat(40_000), 'malformed'],
    ]);
    const huge = 'A'.repeat(BODY_LIMIT + 1);
    await refused(asSubject(huge), [413, 'invalid_request', 'body_too_large'], 'subject_token above the body limit');
    await refused(asActor(huge), [413, 'invalid_request', 'body_too_large'], 'actor_token above the body limit');
  });

  // -------------------------------------------------------------------------------------------
  // private_key_jwt client assertions

  test('baseline: a hand-assembled assertion authenticates (the helpers are sound)', async () => {
    const r = await authenticate(forgeAssertion())();
    assert.equal(r.status, 200, r.text);
    const bare = await authenticate(forgeAssertion({ kid: undefined }, assertionClaims('pkj2')))();
    assert.equal(bare.status, 200, bare.text);
  });

  test('client assertion: key injection through jwk, jku, x5u, x5c and kid is invalid_client, and nothing is fetched', async () => {
    const before = host.requests.length;
    const cases: Array<[string, string, string]> = [
      ['attacker jwk, client kid', forgeAssertion({ jwk: ATTACKER_JWK }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['attacker jwk, no kid', forgeAssertion({ jwk: ATTACKER_JWK, kid: undefined }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['attacker jwk, its own kid', forgeAssertion({ jwk: ATTACKER_JWK, kid: ATTACKER_KID }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['attacker jku', forgeAssertion({ jku: `${host.url}/jwks.json` }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['attacker jku, no kid', forgeAssertion({ jku: `${host.url}/jwks.json`, kid: undefined }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['attacker x5u', forgeAssertion({ x5u: `${host.url}/cert.pem` }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['self-signed x5c', forgeAssertion({ x5c: SELF_SIGNED_X5C, kid: undefined }, {}, { alg: 'ES256', key: SELF_SIGNED_KEY }), 'assertion_invalid'],
      ['kid of the attacker key', forgeAssertion({ kid: ATTACKER_KID }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['path-traversal kid', forgeAssertion({ kid: '../../../etc/passwd' }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['SQL-ish kid', forgeAssertion({ kid: "pkj-1' OR '1'='1" }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['kid a number', forgeAssertion({ kid: 1 }, {}, BY_ATTACKER), 'assertion_invalid'],
      ['jwk and kid of the bare-JWK client', forgeAssertion({ jwk: ATTACKER_JWK, kid: undefined }, assertionClaims('pkj2'), BY_ATTACKER), 'assertion_invalid'],
    ];
    for (const [label, assertion, reason] of cases) await refused(authenticate(assertion), INVALID_CLIENT(reason), label);
    assert.equal(host.requests.length, before, 'no header URL was fetched');
  });

  test('client assertion: crit, b64 and unencoded payloads are invalid_client', async () => {
    const h = b64u({ alg: 'ES256', kid: 'pkj-1', b64: false, crit: ['b64'] });
    const cases: Array<[string, string, string]> = [
      ['crit with an unknown extension', forgeAssertion({ crit: ['x-ext'], 'x-ext': 1 }), 'assertion_crit'],
      ['crit ["b64"], b64 false', forgeAssertion({ crit: ['b64'], b64: false }), 'assertion_crit'],
      ['crit ["b64"], b64 true', forgeAssertion({ crit: ['b64'], b64: true }), 'assertion_crit'],
      ['crit []', forgeAssertion({ crit: [] }), 'assertion_crit'],
      ['crit "b64" (not an array)', forgeAssertion({ crit: 'b64', b64: false }), 'assertion_crit'],
      ['b64 false without crit', forgeAssertion({ b64: false }), 'assertion_crit'],
      ['b64 true without crit', forgeAssertion({ b64: true }), 'assertion_crit'],
      ['unencoded payload', signSegments(h, JSON.stringify(assertionClaims()), BY_PKJ), 'assertion_malformed'],
    ];
    for (const [label, assertion, reason] of cases) await refused(authenticate(assertion), INVALID_CLIENT(reason), label);
  });

  test('client assertion: alg that does not match the client key, odd case or missing is invalid_client', async () => {
    const cases: Array<[string, string, string]> = [
      ['ES384 by the P-256 key', forgeAssertion({ alg: 'ES384' }, {}, { alg: 'ES384', key: pkjKey.privateKey }), 'assertion_invalid'],
      ['ES384 by the P-256 key, bare JWK', forgeAssertion({ alg: 'ES384', kid: undefined }, assertionClaims('pkj2'), { alg: 'ES384', key: pkjKey.privateKey }), 'assertion_invalid'],
      ['ES512 (not an accepted algorithm)', forgeAssertion({ alg: 'ES512' }, {}, { alg: 'ES512', key: pkjKey.privateKey }), 'assertion_alg'],
      ['EdDSA header', forgeAssertion({ alg: 'EdDSA' }), 'assertion_invalid'],
      ['RS256 header', forgeAssertion({ alg: 'RS256' }), 'assertion_invalid'],
      ['PS256 header', forgeAssertion({ alg: 'PS256' }), 'assertion_invalid'],
      ['RS256 by an RSA key under the client kid', forgeAssertion({ alg: 'RS256' }, {}, { alg: 'RS256', key: RSA.privateKey }), 'assertion_invalid'],
      ['PS256 by an RSA key, bare JWK', forgeAssertion({ alg: 'PS256', kid: undefined }, assertionClaims('pkj2'), { alg: 'PS256', key: RSA.privateKey }), 'assertion_invalid'],
      ['alg "es256"', forgeAssertion({ alg: 'es256' }), 'assertion_alg'],
      ['alg missing', forgeAssertion({ alg: undefined }), 'assertion_alg'],
      ['alg a number', forgeAssertion({ alg: 256 }), 'assertion_alg'],
      [
        'alg HS256 keyed with the registered public JWK',
        assemble({ alg: 'HS256', kid: 'pkj-1' }, assertionClaims(), (input) => createHmac('sha256', JSON.stringify(PKJ_JWK)).update(input).digest()),
        'assertion_alg',
      ],
    ];
    for (const [label, assertion, reason] of cases) await refused(authenticate(assertion), INVALID_CLIENT(reason), label);
  });

  test('client assertion: proofs and access tokens are not client assertions', async () => {
    const dpop = await createDpopProof({ privateKey: pkjKey.privateKey, htm: 'POST', htu: as.server.tokenEndpoint });
    const cases: Array<[string, string, string]> = [
      ['a DPoP proof made with the client key', dpop, 'assertion_typ'],
      ['dpop+jwt with assertion claims', forgeAssertion({ typ: DPOP_TYP }), 'assertion_typ'],
      ['a Session-Binding Proof typ with assertion claims', forgeAssertion({ typ: `application/${PROOF_TYP}` }), 'assertion_typ'],
      ['a real access token of the AS', t1, 'assertion_typ'],
      ['typ an array', forgeAssertion({ typ: ['JWT'] }), 'assertion_typ'],
      ['an ID-token-like JWT of another issuer', forgeAssertion({ typ: 'JWT', kid: undefined }, { nonce: 'n' }, BY_ATTACKER), 'assertion_invalid'],
    ];
    for (const [label, assertion, reason] of cases) await refused(authenticate(assertion), INVALID_CLIENT(reason), label);
  });

  test('client assertion: malformed compact serialization is invalid_client', async () => {
    const good = forgeAssertion();
    const [h, p, s] = good.split('.') as [string, string, string];
    const header = { alg: 'ES256', kid: 'pkj-1' };
    const headerJson = JSON.stringify(header).slice(1, -1);
    const byPkj = (hdr: string | Buffer, payload: string | Buffer = JSON.stringify(assertionClaims())) => assemble(Buffer.from(hdr), Buffer.from(payload), BY_PKJ);
    /** A fresh valid assertion (its own jti) whose signature segment is respelled. */
    const respelled = (respell: (signature: string) => string): string => {
      const [a, b, c] = forgeAssertion().split('.') as [string, string, string];
      return `${a}.${b}.${respell(c)}`;
    };
    const jwe = await new CompactEncrypt(Buffer.from(JSON.stringify(assertionClaims())))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM' })
      .encrypt(AS.publicKey);
    const cases: Array<[string, string, string]> = [
      ['two segments', `${h}.${p}`, 'assertion_malformed'],
      ['four segments', `${good}.${s}`, 'assertion_malformed'],
      ['five segments (a real JWE)', jwe, 'assertion_malformed'],
      ['empty header', `.${p}.${s}`, 'assertion_malformed'],
      ['empty payload', `${h}..${s}`, 'assertion_malformed'],
      ['empty signature', `${h}.${p}.`, 'assertion_malformed'],
      ['"==" padding on a valid assertion', respelled((sig) => `${sig}==`), 'assertion_malformed'],
      ['"=" in the header', `${h}=.${p}.${s}`, 'assertion_malformed'],
      ['"+" in the signature', `${h}.${p}.${s.slice(0, -2)}+A`, 'assertion_malformed'],
      ['space in the signature of a valid assertion', respelled((sig) => `${sig.slice(0, 9)} ${sig.slice(9)}`), 'assertion_malformed'],
      ['non-canonical signature of a valid assertion', respelled(nonCanonical), 'assertion_malformed'],
      ['non-canonical header, signed as such', signSegments(nonCanonical(b64u(withSpareBits(header))), b64u(assertionClaims()), BY_PKJ), 'assertion_malformed'],
      ['header a JSON array', byPkj(JSON.stringify([header])), 'assertion_malformed'],
      ['header JSON null', byPkj('null'), 'assertion_malformed'],
      ['payload a JSON array', byPkj(JSON.stringify(header), JSON.stringify([assertionClaims()])), 'assertion_malformed'],
      ['payload a JSON number', byPkj(JSON.stringify(header), '1'), 'assertion_malformed'],
      ['header not UTF-8', byPkj(Buffer.concat([Buffer.from(`{${headerJson},"x":"`), Buffer.from([0xff]), Buffer.from('"}')])), 'assertion_malformed'],
      ['payload not UTF-8', byPkj(JSON.stringify(header), Buffer.concat([Buffer.from(JSON.stringify(assertionClaims()).slice(0, -1)), Buffer.from(',"x":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])), 'assertion_malformed'],
      ['two alg members, the last none', byPkj(`{${headerJson},"alg":"none"}`), 'assertion_alg'],
      ['two typ members, the last at+jwt', byPkj(`{${headerJson},"typ":"JWT","typ":"at+jwt"}`), 'assertion_typ'],
      ['two iss members, the last another client', byPkj(JSON.stringify(header), `${JSON.stringify(assertionClaims()).slice(0, -1)},"iss":"a"}`), 'client_id_mismatch'],
    ];
    for (const [label, assertion, reason] of cases) {
      // The last case names pkj as client_id, so the spliced iss is caught as a mismatch.
      await refused(authenticate(assertion, reason === 'client_id_mismatch' ? 'pkj' : undefined), INVALID_CLIENT(reason), label);
    }
  });

  test('client assertion: oversized is invalid_client below the body limit and a clean 413 above it', async () => {
    const big = forgeAssertion({}, { pad: 'p'.repeat(9000) });
    await refused(authenticate(big), INVALID_CLIENT('assertion_malformed'), 'a 12 KB assertion');
    await refused(authenticate('A'.repeat(40_000)), INVALID_CLIENT('assertion_malformed'), '40 000 characters');
    await refused(authenticate('A'.repeat(BODY_LIMIT + 1)), [413, 'invalid_request', 'body_too_large'], 'above the body limit');
  });
});
