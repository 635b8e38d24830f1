import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { certificateThumbprint } from '@tether/core';
import { JWT_BEARER_ASSERTION, type ClientMetadata, type TokenClient, type TokenRequestResult } from '@tether/as';
import type { IssuedCertificate } from '@tether/pki';
import { NAMES, claimsOf, clientWith, devCaIssuer, makeCertificate, makeRogueCa, spiffe, standardClient, startTestAs, type TestAs } from './helpers/setup.js';

function assertInvalidClient(r: TokenRequestResult, label: string): void {
  assert.equal(r.status, 401, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.json?.error, 'invalid_client', label);
  assert.equal(r.json?.error_description, 'Client authentication failed', `${label}: no detail leaks`);
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.match(String(r.headers['content-type']), /application\/json/);
}

function jwkWithX5c(cert: IssuedCertificate): Record<string, unknown> {
  const x = new X509Certificate(cert.cert);
  return { ...(createPublicKey(cert.cert).export({ format: 'jwk' }) as Record<string, unknown>), x5c: [x.raw.toString('base64')] };
}

describe('client authentication (RFC 8705, RFC 7523) over real mTLS', () => {
  let as: TestAs;
  const certs: Record<string, IssuedCertificate> = {};
  const clients: TokenClient[] = [];
  let pkjKey: KeyObject;
  let otherKey: KeyObject;
  const DN = 'UID=svc-1+CN=Billing Service,OU=Payments  Team,O=Example\\, Inc.,C=US';

  const tokenRequest = (c: TokenClient, clientId: string, extra: Record<string, string> = {}) =>
    c.post(`${as.server.url}/token`, { grant_type: 'client_credentials', client_id: clientId, ...extra });
  const withCert = (cred: IssuedCertificate | undefined) => {
    const c = clientWith(cred, as.pki);
    clients.push(c);
    return c;
  };

  before(async () => {
    const ca = await devCaIssuer();
    const rogue = await makeRogueCa();
    certs.dn = await makeCertificate({
      issuer: ca,
      subject: [{ C: ['US'] }, { O: ['Example, Inc.'] }, { OU: ['Payments Team'] }, { CN: ['billing service'], '0.9.2342.19200300.100.1.1': ['svc-1'] }],
    });
    certs.dnRogue = await makeCertificate({
      issuer: rogue.issuer,
      subject: [{ C: ['US'] }, { O: ['Example, Inc.'] }, { OU: ['Payments Team'] }, { CN: ['billing service'], '0.9.2342.19200300.100.1.1': ['svc-1'] }],
    });
    certs.dns = await makeCertificate({ issuer: ca, subject: 'CN=dns', san: [{ type: 'dns', value: 'svc.example.test' }] });
    certs.ip = await makeCertificate({ issuer: ca, subject: 'CN=ip', san: [{ type: 'ip', value: '10.9.8.7' }] });
    certs.email = await makeCertificate({ issuer: ca, subject: 'CN=mail', san: [{ type: 'email', value: 'svc@example.test' }] });
    certs.rogueA = await makeCertificate({ issuer: rogue.issuer, subject: 'CN=a', san: [{ type: 'url', value: spiffe('a') }] });
    certs.expiredA = await makeCertificate({
      issuer: ca,
      subject: 'CN=a',
      san: [{ type: 'url', value: spiffe('a') }],
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    certs.self = await makeCertificate({ subject: 'CN=self', san: [{ type: 'url', value: 'spiffe://elsewhere/self' }] });
    certs.selfOther = await makeCertificate({ subject: 'CN=self', san: [{ type: 'url', value: 'spiffe://elsewhere/self' }] });
    pkjKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const pkjJwk = { ...(await exportJWK(createPublicKey(pkjKey))), kid: 'pkj-1', alg: 'ES256' };
    const extra: ClientMetadata[] = [
      { client_id: 'dn', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: DN, audiences: ['*'] },
      { client_id: 'dns', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_dns: 'SVC.example.test', audiences: ['*'] },
      { client_id: 'ip', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_ip: '10.9.8.7', audiences: ['*'] },
      { client_id: 'email', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_email: 'svc@example.test', audiences: ['*'] },
      {
        client_id: 'self',
        token_endpoint_auth_method: 'self_signed_tls_client_auth',
        jwks: { keys: [jwkWithX5c(certs.self)] },
        tls_client_certificate_bound_access_tokens: true,
        audiences: ['*'],
      },
      { client_id: 'pkj', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [pkjJwk] }, audiences: ['*'] },
    ];
    as = await startTestAs({ clients: [...NAMES.map((n) => standardClient(n)), ...extra] });
  });

  after(async () => {
    for (const c of clients) c.close();
    await as.close();
  });

  test('tls_client_auth by SPIFFE URI SAN: the right certificate only', async () => {
    const ok = await tokenRequest(as.client('a'), 'a', { audience: spiffe('b') });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(claimsOf(ok.json?.access_token as string).sub, 'a');
    assertInvalidClient(await tokenRequest(as.client('b'), 'a'), "b's certificate as a");
    assertInvalidClient(await tokenRequest(withCert(undefined), 'a'), 'no certificate');
    assertInvalidClient(await tokenRequest(withCert(certs.rogueA), 'a'), 'same SAN from another CA');
    assertInvalidClient(await tokenRequest(withCert(certs.expiredA), 'a'), 'expired certificate');
    assertInvalidClient(await tokenRequest(withCert(certs.self), 'a'), 'self-signed certificate');
  });

  test('tls_client_auth by subject DN (RFC 4514 comparison)', async () => {
    const ok = await tokenRequest(withCert(certs.dn), 'dn', { audience: 'https://rs.example' });
    assert.equal(ok.status, 200, ok.text);
    assertInvalidClient(await tokenRequest(withCert(certs.dnRogue), 'dn'), 'same DN from another CA');
    assertInvalidClient(await tokenRequest(as.client('a'), 'dn'), 'another DN');
  });

  test('tls_client_auth by SAN DNS, IP and email', async () => {
    for (const name of ['dns', 'ip', 'email']) {
      const ok = await tokenRequest(withCert(certs[name]), name, { audience: 'https://rs.example' });
      assert.equal(ok.status, 200, `${name}: ${ok.text}`);
      assertInvalidClient(await tokenRequest(as.client('a'), name), `${name} with a's certificate`);
      const other = name === 'dns' ? certs.ip : certs.dns;
      assertInvalidClient(await tokenRequest(withCert(other), name), `${name} with another SAN`);
    }
  });

  test('self_signed_tls_client_auth: the registered certificate only; the token is bound to it', async () => {
    const ok = await tokenRequest(withCert(certs.self), 'self', { audience: 'https://rs.example' });
    assert.equal(ok.status, 200, ok.text);
    const cnf = claimsOf(ok.json?.access_token as string).cnf as Record<string, string>;
    assert.equal(cnf['x5t#S256'], certificateThumbprint(new X509Certificate(certs.self!.cert)));
    assertInvalidClient(await tokenRequest(withCert(certs.selfOther), 'self'), 'another self-signed certificate with the same name');
    assertInvalidClient(await tokenRequest(as.client('a'), 'self'), 'a CA-issued certificate');
    assertInvalidClient(await tokenRequest(withCert(undefined), 'self'), 'no certificate');
  });

  describe('private_key_jwt', () => {
    const assertion = async (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, key: KeyObject = pkjKey) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: 'pkj', sub: 'pkj', aud: as.server.issuer, jti: randomUUID(), iat: now, exp: now + 60, ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'pkj-1', ...header })
        .sign(key);
    };
    const send = (jwt: string, extra: Record<string, string> = {}, c: TokenClient = withCert(undefined)) =>
      c.post(`${as.server.url}/token`, {
        grant_type: 'client_credentials',
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: jwt,
        audience: 'https://open.example',
        ...extra,
      });

    test('a valid assertion authenticates (aud = issuer, token endpoint; typ absent, JWT, client-authentication+jwt)', async () => {
      for (const [claims, header] of [
        [{}, {}],
        [{ aud: `${as.server.url}/token` }, { typ: 'JWT' }],
        [{ aud: [as.server.issuer, 'https://elsewhere'] }, { typ: 'client-authentication+jwt' }],
      ] as const) {
        const r = await send(await assertion(claims, header), { client_id: 'pkj' });
        assert.equal(r.status, 200, r.text);
        assert.equal(claimsOf(r.json?.access_token as string).client_id, 'pkj');
        assert.equal(claimsOf(r.json?.access_token as string).cnf, undefined, 'no certificate, no binding');
      }
    });

    test('every other assertion is invalid_client', async () => {
      const now = Math.floor(Date.now() / 1000);
      const cases: Array<[string, Promise<string> | string, Record<string, string>?]> = [
        ['signed by another key', assertion({}, {}, otherKey)],
        ['wrong aud', assertion({ aud: 'https://other.example' })],
        ['iss differs from sub', assertion({ sub: 'a' })],
        ['iss names another client', assertion({ iss: 'a', sub: 'a' })],
        ['expired', assertion({ exp: now - 120, iat: now - 180 })],
        ['exp too far ahead', assertion({ exp: now + 3600 })],
        ['no exp', assertion({ exp: undefined })],
        ['no jti', assertion({ jti: undefined })],
        ['typ at+jwt', assertion({}, { typ: 'at+jwt' })],
        ['typ of a Session-Binding-Proof', assertion({}, { typ: 'tls-binding-proof+jwt' })],
        ['iat in the future', assertion({ iat: now + 600, exp: now + 660 })],
        ['client_id parameter mismatch', assertion(), { client_id: 'a' }],
        ['garbage', 'not.a.jwt'],
        ['HS256', new SignJWT({ iss: 'pkj', sub: 'pkj', aud: as.server.issuer, jti: randomUUID(), exp: now + 60 }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('x'.repeat(32)))],
        ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'pkj', sub: 'pkj', aud: as.server.issuer, jti: 'n', exp: now + 60 })).toString('base64url')}.`],
      ];
      for (const [label, jwt, extra] of cases) assertInvalidClient(await send(await jwt, extra), label);
      assertInvalidClient(
        await withCert(undefined).post(`${as.server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: 'urn:other', client_assertion: await assertion() }),
        'wrong client_assertion_type',
      );
      assertInvalidClient(await tokenRequest(withCert(undefined), 'pkj'), 'private_key_jwt client without an assertion');
    });

    test('a jti is accepted once', async () => {
      const jwt = await assertion();
      const first = await send(jwt);
      assert.equal(first.status, 200, first.text);
      assertInvalidClient(await send(jwt), 'replayed assertion');
    });

    test('a bound token for a private_key_jwt client needs a certificate on the connection', async () => {
      const r = await send(await assertion(), { audience: 'https://rs.example' });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json?.error, 'invalid_request');
      const bound = await send(await assertion(), { audience: 'https://rs.example' }, as.client('c'));
      assert.equal(bound.status, 200, bound.text);
      const cnf = claimsOf(bound.json?.access_token as string).cnf as Record<string, string>;
      assert.equal(cnf['x5t#S256'], certificateThumbprint(new X509Certificate(as.pki.clients.c!.cert)), "bound to the connection's certificate");
      assert.equal(cnf.tls_exp, undefined, 'certificate-bound only (the resource asks for certificate binding)');
    });

    test('an assertion cannot authenticate an mTLS client', async () => {
      const jwt = await new SignJWT({ iss: 'a', sub: 'a', aud: as.server.issuer, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 })
        .setProtectedHeader({ alg: 'ES256' })
        .sign(pkjKey);
      assertInvalidClient(await send(jwt, {}, as.client('a')), 'assertion for a tls_client_auth client');
    });

    test('introspection accepts aud = the introspection endpoint', async () => {
      const r = await withCert(undefined).post(`${as.server.url}/introspect`, {
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: await assertion({ aud: `${as.server.url}/introspect` }),
        token: 'x',
      });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { active: false });
    });
  });

  test('HTTP authentication, client secrets and unknown clients are invalid_client', async () => {
    const c = as.client('a');
    const basic = await c.post(`${as.server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: `Basic ${Buffer.from('a:secret').toString('base64')}` } });
    assertInvalidClient(basic, 'Basic');
    assert.match(String(basic.headers['www-authenticate']), /^Basic realm="/);
    assertInvalidClient(await tokenRequest(c, 'a', { client_secret: 'x' }), 'client_secret');
    assertInvalidClient(await tokenRequest(c, 'nobody'), 'unknown client');
    assertInvalidClient(await c.post(`${as.server.url}/token`, { grant_type: 'client_credentials' }), 'no client_id');
    assertInvalidClient(await c.post(`${as.server.url}/introspect`, { token: 'x' }), 'introspection without client authentication');
    assertInvalidClient(await c.post(`${as.server.url}/revoke`, { token: 'x', client_id: 'b' }), 'revocation as another client');
  });

  test('failures are counted by reason in the metrics', async () => {
    const text = await as.server.metrics.registry.metrics();
    assert.match(text, /tether_as_request_failures_total\{endpoint="token",error="invalid_client",reason="certificate_mismatch"\} \d+/);
    assert.match(text, /tether_as_client_authentications_total\{method="tls_client_auth",result="success"\} \d+/);
  });
});
