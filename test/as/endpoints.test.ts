import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { SignJWT, exportJWK } from 'jose';
import { EXPORTER_LABEL, SessionBoundClient } from '@tether/core';
import { JWT_BEARER_ASSERTION, type TokenRequestResult } from '@tether/as';
import { NAMES, TOKEN_EXCHANGE, claimsOf, clientWith, spiffe, standardClient, startTestAs, type TestAs } from './helpers/setup.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function assertError(r: TokenRequestResult, status: number, error: string, label: string): void {
  assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.json?.error, error, label);
}

describe('endpoints: metadata, JWKS, introspection, revocation, errors, operations', () => {
  let as: TestAs;
  const pkjKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  before(async () => {
    as = await startTestAs({
      plainTlsListen: { host: '127.0.0.1', port: 0 },
      clients: [
        ...NAMES.filter((n) => n !== 'd').map((n) => standardClient(n)),
        standardClient('d', { introspection: 'any' }),
        standardClient('narrow', { tls_client_auth_san_uri: spiffe('thief'), identifiers: [], audiences: ['https://open.example'], grant_types: ['client_credentials'], scope: 'read' }),
        {
          client_id: 'pkj',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...(await exportJWK(createPublicKey(pkjKey))), alg: 'ES256' }] },
          audiences: ['*'],
        },
      ],
    });
  });

  after(() => as.close());

  test('RFC 8414 metadata with mtls_endpoint_aliases for the mTLS listener', async () => {
    const plain = as.server.plainUrl as string;
    assert.ok(plain !== undefined && plain !== as.server.url);
    for (const base of [plain, as.server.url]) {
      const r = await clientWith(undefined, as.pki).get(`${base}/.well-known/oauth-authorization-server`);
      assert.equal(r.status, 200);
      const m = r.json as Record<string, unknown>;
      assert.equal(m.issuer, as.server.issuer);
      assert.equal(m.issuer, plain, 'the issuer is the plain-TLS origin when one is configured');
      assert.equal(m.token_endpoint, `${plain}/token`);
      assert.equal(m.jwks_uri, `${plain}/jwks`);
      assert.equal(m.introspection_endpoint, `${plain}/introspect`);
      assert.equal(m.revocation_endpoint, `${plain}/revoke`);
      assert.deepEqual(m.mtls_endpoint_aliases, { token_endpoint: `${as.server.url}/token`, introspection_endpoint: `${as.server.url}/introspect`, revocation_endpoint: `${as.server.url}/revoke` });
      assert.deepEqual(m.grant_types_supported, ['client_credentials', TOKEN_EXCHANGE]);
      assert.deepEqual(m.token_endpoint_auth_methods_supported, ['tls_client_auth', 'self_signed_tls_client_auth', 'private_key_jwt']);
      assert.equal(m.tls_client_certificate_bound_access_tokens, true);
      assert.equal(m.tls_session_bound_access_tokens_supported, true);
    }
  });

  test('the plain-TLS listener never sees a certificate: mTLS methods fail there, private_key_jwt works', async () => {
    const plain = as.server.plainUrl as string;
    const r = await as.client('a').post(`${plain}/token`, { grant_type: 'client_credentials', client_id: 'a', audience: 'https://open.example' });
    assertError(r, 401, 'invalid_client', 'tls_client_auth on the plain listener');
    const jwt = await new SignJWT({ iss: 'pkj', sub: 'pkj', aud: `${plain}/token`, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 }).setProtectedHeader({ alg: 'ES256' }).sign(pkjKey);
    const ok = await clientWith(undefined, as.pki).post(`${plain}/token`, { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: jwt, audience: 'https://open.example' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(claimsOf(ok.json?.access_token as string).iss, as.server.issuer);
  });

  test('JWKS publishes public keys only', async () => {
    const r = await clientWith(undefined, as.pki).get(as.server.jwksUri);
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /application\/jwk-set\+json/);
    const keys = (r.json as { keys: Array<Record<string, unknown>> }).keys;
    assert.equal(keys.length, 2, 'active and next');
    for (const k of keys) {
      assert.equal(k.d, undefined);
      assert.equal(k.alg, 'ES256');
      assert.equal(k.use, 'sig');
      assert.equal(typeof k.kid, 'string');
    }
  });

  test('introspection: active tokens with cnf (tls_exp) and act; anything else exactly {"active":false}', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    const t2 = (await as.exchange('b', t1, { audience: spiffe('c'), scope: 'read' })).json?.access_token as string;
    const intro = await as.post('c', '/introspect', { client_id: 'c', token: t2 });
    assert.equal(intro.status, 200);
    assert.equal(intro.headers['cache-control'], 'no-store');
    const body = intro.json as Record<string, unknown>;
    assert.equal(body.active, true);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.sub, 'a');
    assert.equal(body.client_id, 'b');
    assert.equal(body.scope, 'read');
    assert.equal(body.iss, as.server.issuer);
    assert.deepEqual(body.act, { sub: 'b', act: { sub: 'a' } });
    assert.equal((body.cnf as Record<string, unknown>).tls_exp, EXPORTER_LABEL);
    for (const k of ['exp', 'iat', 'jti', 'aud']) assert.ok(body[k] !== undefined, k);

    const foreign = await new SignJWT({ sub: 'a' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: claimsOf(t1).jti as string })
      .setIssuer(as.server.issuer)
      .setExpirationTime('5m')
      .setIssuedAt()
      .setJti('x')
      .sign(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const inactive = ['garbage', 'a.b.c', t1.slice(0, -3) + 'AAA', foreign, 'x'.repeat(15_000), t1.split('.').slice(0, 2).join('.') + '.', `${t1} `];
    for (const token of inactive) {
      const r = await as.post('c', '/introspect', { client_id: 'c', token });
      assert.equal(r.status, 200);
      assert.equal(r.text, '{"active":false}', token.slice(0, 20));
    }
    assert.equal((await as.post('b', '/introspect', { client_id: 'b', token: t1 })).json?.active, true, 'b, the audience, sees t1');
    assert.equal((await as.post('a', '/introspect', { client_id: 'a', token: t1 })).json?.active, true, 'a, its client, sees t1');
    assert.equal((await as.post('c', '/introspect', { client_id: 'c', token: t1 })).text, '{"active":false}', 'c is neither');
    assert.equal((await as.post('thief', '/introspect', { client_id: 'thief', token: t2 })).text, '{"active":false}', 'nor is the thief');
    assert.equal((await as.post('d', '/introspect', { client_id: 'd', token: t2 })).json?.active, true, "d has introspection: 'any'");
    as.skew.ms = 301_000;
    try {
      assert.equal((await as.post('b', '/introspect', { client_id: 'b', token: t1 })).text, '{"active":false}', 'expired');
    } finally {
      as.skew.ms = 0;
    }
    assertError(await as.post('c', '/introspect', { client_id: 'c' }), 400, 'invalid_request', 'no token');
  });

  test('revocation (RFC 7009): takes effect at introspection; only the token’s client may revoke it', async () => {
    const t = await as.token('a', { audience: spiffe('b') });
    const foreign = await as.post('b', '/revoke', { client_id: 'b', token: t });
    assertError(foreign, 400, 'unauthorized_client', 'revoking another client’s token');
    assert.equal((await as.post('b', '/introspect', { client_id: 'b', token: t })).json?.active, true);
    const r = await as.post('a', '/revoke', { client_id: 'a', token: t, token_type_hint: 'access_token' });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    assert.equal((await as.post('b', '/introspect', { client_id: 'b', token: t })).text, '{"active":false}');
    assert.equal((await as.post('a', '/revoke', { client_id: 'a', token: t })).status, 200, 'revoking twice is fine');
    assert.equal((await as.post('a', '/revoke', { client_id: 'a', token: 'garbage' })).status, 200, 'invalid tokens are not an error');
    assertError(await as.post('a', '/revoke', { client_id: 'a' }), 400, 'invalid_request', 'no token');
  });

  test('client_credentials policy: scope, audience, grant type', async () => {
    const cc = (name: string, extra: Record<string, string | string[]>) => as.post(name, '/token', { grant_type: 'client_credentials', client_id: name, ...extra });
    const thiefCert = as.client('thief'); // 'narrow' authenticates with thief's certificate
    const narrow = (extra: Record<string, string>) => thiefCert.post(`${as.server.url}/token`, { grant_type: 'client_credentials', client_id: 'narrow', ...extra });
    assert.equal((await narrow({ audience: 'https://open.example', scope: 'read' })).status, 200);
    assertError(await narrow({ audience: 'https://open.example', scope: 'write' }), 400, 'invalid_scope', 'scope not registered');
    assertError(await narrow({ audience: 'https://rs.example' }), 400, 'invalid_target', 'audience not allowed');
    const exchange = await thiefCert.post(`${as.server.url}/token`, { grant_type: TOKEN_EXCHANGE, client_id: 'narrow', subject_token: 'x', subject_token_type: 'x' });
    assertError(exchange, 400, 'unauthorized_client', 'grant type not registered');
    const pw = await as.post('a', '/token', { grant_type: 'password', client_id: 'a' });
    assertError(pw, 400, 'unsupported_grant_type', 'password grant');
    assertError(await cc('a', {}), 400, 'invalid_target', 'no audience and no default');
    assertError(await cc('a', { audience: 'https://open.example', scope: 'read  write' }), 400, 'invalid_scope', 'malformed scope');
    const ok = await cc('a', { audience: 'https://rs.example', scope: 'read' });
    const claims = claimsOf(ok.json?.access_token as string);
    assert.deepEqual(claims.cnf, { 'x5t#S256': (claims.cnf as Record<string, string>)['x5t#S256'], tls_exp: EXPORTER_LABEL });
    assert.equal(ok.json?.expires_in, 300);
    assert.equal(ok.headers['cache-control'], 'no-store');
    assert.equal(ok.headers.pragma, 'no-cache');
  });

  test('bad input is a 4xx OAuth error, never a 500', async () => {
    const c = as.client('a');
    const url = `${as.server.url}/token`;
    const json = await c.raw(url, 'POST', '{"grant_type":"client_credentials"}', { 'content-type': 'application/json' });
    assertError(json, 400, 'invalid_request', 'JSON body');
    const none = await c.raw(url, 'POST', 'grant_type=client_credentials', {});
    assertError(none, 400, 'invalid_request', 'no content type');
    const latin1 = await c.raw(url, 'POST', 'grant_type=client_credentials&client_id=a', { 'content-type': 'application/x-www-form-urlencoded; charset=iso-8859-1' });
    assertError(latin1, 400, 'invalid_request', 'latin1');
    const big = await c.raw(url, 'POST', `client_id=a&x=${'a'.repeat(17_000)}`, FORM);
    assertError(big, 413, 'invalid_request', 'body over 16 KiB');
    const get = await c.get(url);
    assertError(get, 405, 'invalid_request', 'GET /token');
    assert.equal(get.headers.allow, 'POST');
    const missing = await c.get(`${as.server.url}/nothing`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json?.error, 'not_found');
    const dupScope = await c.raw(url, 'POST', 'grant_type=client_credentials&client_id=a&audience=https%3A%2F%2Fopen.example&scope=read&scope=write', FORM);
    assertError(dupScope, 400, 'invalid_request', 'duplicate scope');
    const dupClient = await c.raw(url, 'POST', 'grant_type=client_credentials&client_id=a&client_id=b', FORM);
    assertError(dupClient, 400, 'invalid_request', 'duplicate client_id');
    const empty = await c.raw(url, 'POST', 'grant_type=client_credentials&client_id=a&audience=https%3A%2F%2Fopen.example&scope=', FORM);
    assert.equal(empty.status, 200, 'an empty parameter is as if omitted');
    const nul = await c.raw(url, 'POST', 'grant_type=client_credentials&client_id=a%00&audience=%ZZ', FORM);
    assertError(nul, 401, 'invalid_client', 'NUL in client_id');
    const proto = await c.raw(`${as.server.url}/introspect`, 'POST', '__proto__=x&constructor=y&client_id=a&token=t', FORM);
    assert.equal(proto.status, 200);

    const bodies = [
      randomBytes(200),
      Buffer.from('%'),
      Buffer.from('&&&=&=='),
      Buffer.from('a'.repeat(16_000)),
      Buffer.from(Array.from({ length: 70 }, (_, i) => `p${i}=1`).join('&')),
      Buffer.from('grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&client_id=b&subject_token=%FF%FE&subject_token_type=x'),
    ];
    const types = ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain', 'application/x-www-form-urlencoded; charset="utf-8"', ''];
    for (const path of ['/token', '/introspect', '/revoke']) {
      for (const body of bodies) {
        for (const type of types) {
          const r = await c.raw(`${as.server.url}${path}`, 'POST', body, type === '' ? {} : { 'content-type': type });
          assert.ok(r.status >= 400 && r.status < 500, `${path} ${type} ${r.status} ${r.text}`);
          assert.equal(typeof r.json?.error, 'string', `${path} ${type}: OAuth error body`);
        }
      }
    }
  });

  test('a request with a lying content-length is refused by the server, not answered with a 500', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const cred = as.pki.clients.a!;
      const req = httpsRequest(`${as.server.url}/token`, { method: 'POST', cert: cred.cert, key: cred.key, ca: as.pki.ca.cert, headers: { ...FORM, 'content-length': '100000' } });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('grant_type=client_credentials');
    });
    assert.equal(status, 413);
  });

  test('HTTP/2: client authentication and issuance work on a multiplexed session', async () => {
    const cred = as.pki.clients.b!;
    const h2 = new SessionBoundClient({ cert: cred.cert, key: cred.key, ca: as.pki.ca.cert, protocol: 'h2' });
    try {
      const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: 'b', audience: spiffe('c') }).toString();
      const responses = await Promise.all(Array.from({ length: 4 }, () => h2.request(`${as.server.url}/token`, { method: 'POST', headers: FORM, body })));
      for (const r of responses) assert.equal(r.status, 200, r.body.toString());
      assert.equal(new Set(responses.map((r) => r.connectionId)).size, 1, 'one HTTP/2 connection');
      const wrong = await h2.request(`${as.server.url}/token`, { method: 'POST', headers: FORM, body: body.replace('client_id=b', 'client_id=a') });
      assert.equal(wrong.status, 401);
    } finally {
      await h2.close();
    }
  });

  test('health and Prometheus metrics', async () => {
    const c = clientWith(undefined, as.pki);
    const health = await c.get(`${as.server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.json, { status: 'ok' });
    const metrics = await c.get(`${as.server.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /tether_as_tokens_issued_total\{grant="client_credentials",binding="session",deferred="false"\} \d+/);
    assert.match(metrics.text, /tether_as_tokens_issued_total\{grant="token_exchange",binding="session",deferred="false"\} \d+/);
    assert.match(metrics.text, /tether_as_request_failures_total\{endpoint="token",error="invalid_request",reason="body_too_large"\} \d+/);
    assert.match(metrics.text, /tether_as_signing_keys\{state="active"\} 1/);
    assert.match(metrics.text, /tether_as_introspections_total\{active="false"\} \d+/);
  });
});
