/**
 * RFC 9068 JWT access-token validation and JWKS key resolution. Remote JWKS tests run against a
 * real node:http server on 127.0.0.1:0 whose behaviour each test controls and whose requests are
 * counted; time for cooldown and max-age is an injected clock.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, type JWK, type JWTPayload } from 'jose';
import {
  ConfigurationError,
  InvalidTokenError,
  jwksFromFile,
  jwtAccessTokenValidator,
  localJwks,
  remoteJwks,
  type AccessTokenValidator,
  type RemoteJwksOptions,
} from '@tether/core';
import { testPki } from '../helpers/pki.js';
import { b64u } from './support/jws.js';
import { hang, json, reset, startServer, trickle, type TestServer } from './support/http.js';
import { rejectsToken } from './support/rejects.js';

const ISS = 'https://as.tether.test';
const AUD = 'https://rs.tether.test';

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: JWK;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

const K1 = await signingKey('k1');
const K2 = await signingKey('k2');
const ROGUE = await signingKey('k1');

/** An RFC 9068 access token; times default to the real clock. */
function mint(key: SigningKey, options: { kid?: string; typ?: string | null; claims?: JWTPayload; now?: number; exp?: number | null } = {}): Promise<string> {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const header: Record<string, unknown> = { alg: 'ES256', kid: options.kid ?? key.kid };
  if (options.typ !== null) header.typ = options.typ ?? 'at+jwt';
  const claims: JWTPayload = { iss: ISS, aud: AUD, sub: 'user-1', client_id: 'c', iat: now, jti: randomUUID(), ...options.claims };
  if (options.exp !== null) claims.exp = options.exp ?? now + 600;
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key.privateKey);
}


interface Rig {
  server: TestServer;
  jwks: ReturnType<typeof remoteJwks>;
  validator: AccessTokenValidator;
  clock: { ms: number };
  /** Requests the JWKS server has received so far. */
  hits(): number;
  /** Serve another key set from now on. */
  publish(keys: JWK[]): void;
}

async function rig(t: TestContext, keys: JWK[] = [K1.jwk], options: RemoteJwksOptions = {}): Promise<Rig> {
  let document: unknown = { keys };
  const server = await startServer((_req, res) => json(res, 200, document));
  t.after(() => server.close());
  const clock = { ms: 1_000_000 };
  const jwks = remoteJwks(`${server.url}/.well-known/jwks.json`, { cooldownMs: 1000, timeoutMs: 250, maxAgeMs: 60_000, now: () => clock.ms, ...options });
  // The validated-token cache is off so that every validation reaches the key resolver.
  const validator = jwtAccessTokenValidator({ keys: jwks, issuer: ISS, audience: AUD, cacheMaxEntries: 0 });
  return {
    server,
    jwks,
    validator,
    clock,
    hits: () => server.requests.length,
    publish(next) {
      document = { keys: next };
    },
  };
}

test('remote JWKS: a known kid verifies after one fetch; later verifications fetch nothing', async (t) => {
  const r = await rig(t);
  for (let i = 0; i < 5; i++) {
    const claims = await r.validator.validate(await mint(K1));
    assert.equal(claims.sub, 'user-1');
  }
  assert.equal(r.hits(), 1);
  assert.equal(r.server.requests[0]?.method, 'GET');
  assert.equal(r.server.requests[0]?.url, '/.well-known/jwks.json');
  assert.match(String(r.server.requests[0]?.headers.accept), /application\/jwk-set\+json/);
  assert.deepEqual(r.jwks.stats, { fetches: 1, failures: 0, keys: 1, lastError: undefined });
});

test('remote JWKS: the first fetch is single-flight for concurrent verifications', async (t) => {
  const r = await rig(t);
  const tokens = await Promise.all(Array.from({ length: 25 }, () => mint(K1)));
  const results = await Promise.all(tokens.map((tok) => r.validator.validate(tok)));
  assert.equal(results.length, 25);
  assert.equal(r.hits(), 1);
});

test('remote JWKS: an unknown kid costs exactly one refetch, none within the cooldown', async (t) => {
  const r = await rig(t);
  await r.validator.validate(await mint(K1));
  // Within the cooldown of the first fetch: no refetch at all.
  await rejectsToken(r.validator.validate(await mint(K1, { kid: 'unknown-1' })), 'unknown_key');
  assert.equal(r.hits(), 1);
  r.clock.ms += 1001;
  await rejectsToken(r.validator.validate(await mint(K1, { kid: 'unknown-2' })), 'unknown_key');
  assert.equal(r.hits(), 2);
  await rejectsToken(r.validator.validate(await mint(K1, { kid: 'unknown-3' })), 'unknown_key');
  assert.equal(r.hits(), 2, 'the refetch started a new cooldown');
  assert.equal(r.jwks.stats.fetches, 2);
  assert.equal(r.jwks.stats.failures, 0);
});

test('remote JWKS: concurrent verifications with unknown kids share one fetch', async (t) => {
  const r = await rig(t);
  await r.validator.validate(await mint(K1));
  r.clock.ms += 1001;
  const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => mint(K1, { kid: i % 2 === 0 ? 'same-unknown' : `unknown-${i}` })));
  const settled = await Promise.allSettled(tokens.map((tok) => r.validator.validate(tok)));
  assert.ok(settled.every((s) => s.status === 'rejected' && s.reason instanceof InvalidTokenError && s.reason.reason === 'unknown_key'));
  assert.equal(r.hits(), 2);
});

test('remote JWKS: a flood of 200 random kids costs at most one fetch per cooldown', async (t) => {
  const r = await rig(t);
  await r.validator.validate(await mint(K1));
  r.clock.ms += 1001;
  const flood = await Promise.all(Array.from({ length: 200 }, () => mint(K1, { kid: randomUUID() })));
  await Promise.allSettled(flood.map((tok) => r.validator.validate(tok)));
  assert.equal(r.hits(), 2);
  // Sequential flood, clock moving but inside the cooldown.
  for (const tok of flood.slice(0, 100)) {
    r.clock.ms += 5;
    await rejectsToken(r.validator.validate(tok), 'unknown_key');
  }
  assert.equal(r.hits(), 2);
  // Known keys kept working throughout.
  await r.validator.validate(await mint(K1));
  // With the default 30 s cooldown and the real clock, a whole flood costs nothing after the first fetch.
  const real = remoteJwks(`${r.server.url}/jwks`);
  const v = jwtAccessTokenValidator({ keys: real, issuer: ISS, audience: AUD });
  await v.validate(await mint(K1));
  const before = r.hits();
  await Promise.allSettled(flood.map((tok) => v.validate(tok)));
  assert.equal(r.hits(), before);
  assert.equal(real.stats.fetches, 1);
});

test('remote JWKS: key rotation is picked up after the cooldown; a removed key goes at the next refresh', async (t) => {
  const r = await rig(t);
  await r.validator.validate(await mint(K1));
  r.publish([K1.jwk, K2.jwk]);
  const k2Token = await mint(K2);
  await rejectsToken(r.validator.validate(k2Token), 'unknown_key', 'inside the cooldown');
  assert.equal(r.hits(), 1);
  r.clock.ms += 1001;
  const claims = await r.validator.validate(k2Token);
  assert.equal(claims.iss, ISS);
  assert.equal(r.hits(), 2);
  assert.equal(r.jwks.stats.keys, 2);
  await r.validator.validate(await mint(K1));
  // K1 retired: still in the cached set until max age, refused after the refresh.
  r.publish([K2.jwk]);
  await r.validator.validate(await mint(K1));
  r.clock.ms += 60_001;
  await rejectsToken(r.validator.validate(await mint(K1)), 'unknown_key');
  assert.equal(r.hits(), 3);
  await r.validator.validate(await mint(K2));
});

test('remote JWKS: a same-kid signature from another key is invalid, not a reason to refetch', async (t) => {
  const r = await rig(t);
  await r.validator.validate(await mint(K1));
  r.clock.ms += 1001;
  await rejectsToken(r.validator.validate(await mint(ROGUE)), 'invalid');
  assert.equal(r.hits(), 1);
});

const FAILURES: Array<[string, Parameters<TestServer['handle']>[0], RegExp]> = [
  ['connection reset', reset, /socket hang up|ECONNRESET/],
  ['HTTP 500', (_q, res) => json(res, 500, { keys: [K2.jwk] }), /answered 500/],
  ['HTTP 404', (_q, res) => json(res, 404, {}), /answered 404/],
  ['redirect', (_q, res) => res.writeHead(302, { location: 'http://127.0.0.1:1/' }).end(), /answered 302/],
  ['garbage body', (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json'), /not JSON/],
  ['JSON that is not a JWKS', (_q, res) => json(res, 200, { key: [] }), /not a JWK Set/],
  ['JWKS with private key material', (_q, res) => json(res, 200, { keys: [{ ...K2.jwk, d: 'AAAA' }] }), /private or symmetric/],
  ['JWKS with a symmetric key', (_q, res) => json(res, 200, { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'k1' }] }), /private or symmetric/],
  ['oversized document', (_q, res) => json(res, 200, { keys: [K2.jwk], pad: 'x'.repeat(4096) }), /too large/],
  ['no answer (timeout)', hang, /timed out/],
  ['body trickling forever', trickle(40), /timed out/],
];

for (const [name, handler, lastError] of FAILURES) {
  test(`remote JWKS after a good fetch, endpoint fails (${name}): known keys still verify, failure counted`, async (t) => {
    const r = await rig(t, [K1.jwk], { maxBytes: 2048 });
    await r.validator.validate(await mint(K1));
    r.server.handle(handler);
    r.clock.ms += 1001;
    const started = Date.now();
    await rejectsToken(r.validator.validate(await mint(K2)), 'unknown_key');
    assert.ok(Date.now() - started < 2000, 'the failed refetch is bounded by timeoutMs');
    assert.equal(r.hits(), 2);
    const stats = r.jwks.stats;
    assert.equal(stats.fetches, 2);
    assert.equal(stats.failures, 1);
    assert.equal(stats.keys, 1);
    assert.match(String(stats.lastError), lastError);
    // The last good set stays in use.
    await r.validator.validate(await mint(K1));
    assert.equal(await r.jwks.reload(), false);
    assert.equal(r.jwks.stats.failures, 2);
    await r.validator.validate(await mint(K1));
    // Recovery.
    r.server.handle((_q, res) => json(res, 200, { keys: [K1.jwk, K2.jwk] }));
    assert.equal(await r.jwks.reload(), true);
    assert.equal(r.jwks.stats.lastError, undefined);
    await r.validator.validate(await mint(K2));
  });
}

test('remote JWKS: a known kid does not wait for a slow refetch in progress', async (t) => {
  const r = await rig(t, [K1.jwk], { timeoutMs: 1500 });
  await r.validator.validate(await mint(K1));
  r.server.handle(hang);
  r.clock.ms += 1001;
  const unknown = r.validator.validate(await mint(K2));
  unknown.catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(r.hits(), 2, 'the refetch is in flight');
  const started = Date.now();
  await r.validator.validate(await mint(K1));
  assert.ok(Date.now() - started < 750, `known kid waited ${Date.now() - started} ms for the pending refetch`);
  await rejectsToken(unknown, 'unknown_key');
});

test('remote JWKS before any good fetch: fails closed, retries only after the cooldown', async (t) => {
  const r = await rig(t);
  r.server.handle((_q, res) => json(res, 503, {}));
  const token = await mint(K1);
  await rejectsToken(r.validator.validate(token), 'unknown_key');
  assert.deepEqual(r.jwks.stats, { fetches: 1, failures: 1, keys: 0, lastError: 'JWKS endpoint answered 503' });
  await rejectsToken(r.validator.validate(token), 'unknown_key');
  assert.equal(r.hits(), 1, 'no refetch inside the cooldown');
  // Concurrent callers before any keys share the failing fetch, too.
  r.clock.ms += 1001;
  r.server.handle(hang);
  const settled = await Promise.allSettled(Array.from({ length: 10 }, () => r.validator.validate(token)));
  assert.ok(settled.every((s) => s.status === 'rejected' && s.reason instanceof InvalidTokenError));
  assert.equal(r.hits(), 2);
  r.clock.ms += 1001;
  r.server.handle((_q, res) => json(res, 200, { keys: [K1.jwk] }));
  await r.validator.validate(token);
  assert.equal(r.hits(), 3);
});

test('remote JWKS: keys are refreshed after maxAgeMs even for a known kid', async (t) => {
  const r = await rig(t);
  await r.validator.validate(await mint(K1));
  r.clock.ms += 59_000;
  await r.validator.validate(await mint(K1));
  assert.equal(r.hits(), 1);
  r.clock.ms += 1_001;
  await r.validator.validate(await mint(K1));
  assert.equal(r.hits(), 2);
});

test('remote JWKS over https with a private CA; without the CA it fails closed', async (t) => {
  const pki = await testPki('p256');
  const server = await startServer((_q, res) => json(res, 200, { keys: [K1.jwk] }), { cert: pki.server.cert, key: pki.server.key });
  t.after(() => server.close());
  const trusted = remoteJwks(`${server.url}/jwks`, { ca: pki.ca.cert, timeoutMs: 2000 });
  await jwtAccessTokenValidator({ keys: trusted, issuer: ISS, audience: AUD }).validate(await mint(K1));
  const untrusted = remoteJwks(`${server.url}/jwks`, { timeoutMs: 2000 });
  await rejectsToken(jwtAccessTokenValidator({ keys: untrusted, issuer: ISS, audience: AUD }).validate(await mint(K1)), 'unknown_key');
  assert.match(String(untrusted.stats.lastError), /certificate/);
});

test('remote JWKS: only http(s) URLs', () => {
  for (const url of ['ftp://127.0.0.1/jwks', 'file:///etc/passwd', 'data:application/json,{}']) {
    assert.throws(() => remoteJwks(url), ConfigurationError, url);
  }
  assert.throws(() => remoteJwks('not a url'), TypeError);
});

// ---------------------------------------------------------------------------------------------
// Validator checks (RFC 9068, RFC 8725) with a local JWKS and a fixed clock.

const NOW = 1_800_000_000;
const local = localJwks({ keys: [K1.jwk] });
const strict = (extra: Partial<Parameters<typeof jwtAccessTokenValidator>[0]> = {}) =>
  jwtAccessTokenValidator({ keys: local, issuer: ISS, audience: AUD, now: () => NOW, cacheMaxEntries: 0, ...extra });

test('validator: typ must be at+jwt (application/at+jwt accepted)', async () => {
  const v = strict();
  await v.validate(await mint(K1, { now: NOW }));
  await v.validate(await mint(K1, { now: NOW, typ: 'application/at+jwt' }));
  await v.validate(await mint(K1, { now: NOW, typ: 'AT+JWT' }));
  for (const typ of ['JWT', 'jwt', 'dpop+jwt', 'tls-binding-proof+jwt', 'at+jwt+x', 'id_token+jwt', '']) {
    await rejectsToken(v.validate(await mint(K1, { now: NOW, typ })), 'claims', `typ ${typ}`);
  }
  await rejectsToken(v.validate(await mint(K1, { now: NOW, typ: null })), 'claims', 'no typ');
});

test('validator: iss and aud', async () => {
  const v = strict();
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { iss: 'https://evil.example' } })), 'claims');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { iss: `${ISS}/` } })), 'claims');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { iss: undefined } })), 'claims');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { aud: 'https://other-rs.example' } })), 'claims');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { aud: [] } })), 'claims');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { aud: undefined } })), 'claims');
  await v.validate(await mint(K1, { now: NOW, claims: { aud: ['https://other-rs.example', AUD] } }));
  const multi = strict({ audience: ['https://a.example', AUD] });
  await multi.validate(await mint(K1, { now: NOW }));
  await rejectsToken(multi.validate(await mint(K1, { now: NOW, claims: { aud: 'https://b.example' } })), 'claims');
});

test('validator: exp (required) and nbf with clockTolerance boundaries', async () => {
  const v = strict();
  await rejectsToken(v.validate(await mint(K1, { now: NOW - 600, exp: NOW - 30 })), 'expired', 'exp = now - tolerance');
  await v.validate(await mint(K1, { now: NOW - 600, exp: NOW - 29 }));
  await rejectsToken(v.validate(await mint(K1, { now: NOW, exp: null })), 'claims', 'no exp');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, exp: null, claims: { exp: String(NOW + 60) as unknown as number } })), 'claims', 'exp string');
  await v.validate(await mint(K1, { now: NOW, claims: { nbf: NOW + 30 } }));
  await rejectsToken(v.validate(await mint(K1, { now: NOW, claims: { nbf: NOW + 31 } })), 'claims', 'nbf beyond tolerance');
  const exact = strict({ clockTolerance: 0 });
  await rejectsToken(exact.validate(await mint(K1, { now: NOW - 600, exp: NOW })), 'expired');
  await exact.validate(await mint(K1, { now: NOW - 600, exp: NOW + 1 }));
  await exact.validate(await mint(K1, { now: NOW, claims: { nbf: NOW } }));
  await rejectsToken(exact.validate(await mint(K1, { now: NOW, claims: { nbf: NOW + 1 } })), 'claims');
});

test('validator: alg none, HS256 keyed with the public key, foreign signatures and algorithm restriction', async () => {
  const v = strict();
  const claims = { iss: ISS, aud: AUD, sub: 'attacker', iat: NOW, exp: NOW + 600 };
  const unsigned = `${b64u({ alg: 'none', typ: 'at+jwt', kid: 'k1' })}.${b64u(claims)}.`;
  await rejectsToken(v.validate(unsigned), 'invalid', 'alg none, empty signature');
  await rejectsToken(v.validate(`${unsigned}AAAA`), 'invalid', 'alg none, junk signature');
  for (const secret of [K1.publicKey.export({ type: 'spki', format: 'pem' }), K1.publicKey.export({ type: 'spki', format: 'der' }), JSON.stringify(K1.jwk)]) {
    const input = `${b64u({ alg: 'HS256', typ: 'at+jwt', kid: 'k1' })}.${b64u(claims)}`;
    const forged = `${input}.${b64u(createHmac('sha256', secret).update(input).digest())}`;
    await rejectsToken(v.validate(forged), 'invalid', 'HS256 key confusion');
  }
  await rejectsToken(v.validate(await mint(ROGUE, { now: NOW })), 'invalid', 'same kid, other key');
  await rejectsToken(v.validate(await mint(K1, { now: NOW, kid: 'nope' })), 'unknown_key');
  await rejectsToken(strict({ algorithms: ['PS256', 'EdDSA'] }).validate(await mint(K1, { now: NOW })), 'invalid', 'alg not allowed');
  // A token whose signature was altered, one bit.
  const good = await mint(K1, { now: NOW });
  const sig = Buffer.from(good.split('.')[2] as string, 'base64url');
  sig[5] = (sig[5] as number) ^ 1;
  await rejectsToken(v.validate(`${good.split('.').slice(0, 2).join('.')}.${b64u(sig)}`), 'invalid', 'altered signature');
  for (const junk of ['', 'abc', 'a.b', 'a.b.c', `${good}.x`]) await rejectsToken(v.validate(junk), 'invalid', JSON.stringify(junk));
});

test('validator: oversized tokens are refused before any parsing', async () => {
  const token = await mint(K1, { now: NOW });
  await strict({ maxTokenLength: token.length }).validate(token);
  await rejectsToken(strict({ maxTokenLength: token.length - 1 }).validate(token), 'too_large');
  await rejectsToken(strict().validate('a'.repeat(16_385)), 'too_large');
  const big = await mint(K1, { now: NOW, claims: { pad: 'x'.repeat(13_000) } });
  assert.ok(big.length > 16_384);
  await rejectsToken(strict().validate(big), 'too_large');
});

test('validator: configuration errors', () => {
  const base = { keys: local, issuer: ISS, audience: AUD };
  assert.throws(() => jwtAccessTokenValidator({ ...base, algorithms: ['HS256'] }), ConfigurationError);
  assert.throws(() => jwtAccessTokenValidator({ ...base, algorithms: ['ES256', 'HS512'] }), ConfigurationError);
  assert.throws(() => jwtAccessTokenValidator({ ...base, algorithms: ['none'] }), ConfigurationError);
  assert.throws(() => jwtAccessTokenValidator({ ...base, audience: [] }), ConfigurationError);
  assert.throws(() => jwtAccessTokenValidator({ ...base, audience: '' }), ConfigurationError);
  assert.throws(() => jwtAccessTokenValidator({ ...base, audience: [AUD, ''] }), ConfigurationError);
  assert.throws(() => jwtAccessTokenValidator({ ...base, issuer: '' }), ConfigurationError);
});

test('validator: a validated token is remembered no longer than exp + tolerance', async () => {
  let now = NOW;
  const v = jwtAccessTokenValidator({ keys: local, issuer: ISS, audience: AUD, now: () => now, clockTolerance: 10 });
  const token = await mint(K1, { now: NOW, exp: NOW + 100 });
  await v.validate(token);
  now = NOW + 109.5;
  await v.validate(token);
  now = NOW + 110;
  await rejectsToken(v.validate(token), 'expired');
  // The remembered entry is keyed on the whole string: a re-signed variant is verified in full.
  const [h, p] = token.split('.') as [string, string];
  now = NOW;
  await rejectsToken(v.validate(`${h}.${p}.${b64u(Buffer.alloc(64, 1))}`), 'invalid');
});

test('localJwks and jwksFromFile: bad key sets are configuration errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-jwks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  const good = jwksFromFile(write('good.json', JSON.stringify({ keys: [K1.jwk] })));
  await jwtAccessTokenValidator({ keys: good, issuer: ISS, audience: AUD }).validate(await mint(K1));
  const cases: Array<[string, string | undefined]> = [
    ['missing file', undefined],
    ['not JSON', 'keys: []'],
    ['empty file', ''],
    ['array', JSON.stringify([K1.jwk])],
    ['no keys member', JSON.stringify({ key: [K1.jwk] })],
    ['keys not an array', JSON.stringify({ keys: K1.jwk })],
    ['key not an object', JSON.stringify({ keys: ['k1'] })],
    ['private EC key', JSON.stringify({ keys: [{ ...(await exportJWK(K1.privateKey)), kid: 'k1' }] })],
    ['private RSA key', JSON.stringify({ keys: [await exportJWK(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)] })],
    ['symmetric key', JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] })],
  ];
  for (const [name, content] of cases) {
    const path = content === undefined ? join(dir, 'missing.json') : write(`${name.replace(/\W+/g, '-')}.json`, content);
    assert.throws(() => jwksFromFile(path), (e: unknown) => e instanceof ConfigurationError && e.code === 'ERR_TETHER_CONFIGURATION', name);
  }
  assert.throws(() => localJwks({ keys: [{ ...K1.jwk, d: 'x' }] }), ConfigurationError);
  assert.throws(() => localJwks(null), ConfigurationError);
});
