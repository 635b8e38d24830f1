/**
 * Token exchange of a person's token from a trusted external issuer (an IdP): a real HTTPS IdP
 * on 127.0.0.1 (its own CA, trusted through `caFiles`) serving discovery and JWK Sets, tokens
 * signed with jose, a real `tether as` and real mTLS token requests. Success for both token
 * types (sub, act, cnf bound to the requester's certificate, sub_id, allow-listed claims only,
 * exp capped), and every refusal with its status, `error` and private reason (from metrics).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync, createPublicKey, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK } from 'jose';
import { EXPORTER_LABEL, certificateThumbprint } from '@tether/core';
import { createDpopProof } from '@tether/core/dpop';
import { JWT_BEARER_ASSERTION, type TokenRequestResult } from '@tether/as';
import { ACCESS_TOKEN_TYPE, JWT_TYPE, TOKEN_EXCHANGE, claimsOf, clientWith, removeDir, standardClient, startTestAs, tempDir, type TestAs } from './helpers/setup.js';
import { closedPort, idpKey, mintIdpToken, silentServer, startTestIdp, type IdpKey, type SilentServer, type TestIdp } from './helpers/idp.js';

const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const AUD = 'mcp-client';
const now = () => Math.floor(Date.now() / 1000);

describe('token exchange of external (IdP) subject tokens', () => {
  let dir: string;
  let idp: TestIdp;
  let as: TestAs;
  let key: IdpKey;
  let key384: IdpKey;
  let impostor: IdpKey;
  let silent: SilentServer;
  const iss = { a: '', b: '', down: '', untrusted: '', mismatch: '', silent: '' };
  const pkjKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  before(async () => {
    dir = tempDir('tether-idp-');
    idp = await startTestIdp(dir);
    key = await idpKey('idp-1');
    key384 = await idpKey('idp-384', 'ES384');
    impostor = await idpKey('idp-1');
    const down = await closedPort();
    silent = await silentServer();
    iss.silent = `https://127.0.0.1:${silent.port}/silent`;
    iss.a = `${idp.url}/idp`;
    iss.b = `${idp.url}/b`;
    iss.down = `https://127.0.0.1:${down}/down`;
    iss.untrusted = `${idp.url}/untrusted`;
    iss.mismatch = `${idp.url}/mismatch`;
    idp.documents.set('/idp/.well-known/openid-configuration', { issuer: iss.a, jwks_uri: `${idp.url}/idp/jwks`, authorization_endpoint: `${idp.url}/idp/auth` });
    idp.documents.set('/idp/jwks', { keys: [key.jwk, key384.jwk] });
    idp.documents.set('/b/jwks', { keys: [key.jwk] });
    idp.documents.set('/mismatch/.well-known/openid-configuration', { issuer: `${idp.url}/other`, jwks_uri: `${idp.url}/b/jwks` });
    const common = { audiences: [AUD], caFiles: [idp.caFile] };
    as = await startTestAs({
      clients: [
        ...(['a', 'b', 'thief'] as const).map((n) => standardClient(n)),
        standardClient('d', { tls_session_bound_access_tokens: false, scope: 'read write' }),
      ],
      trustedIssuers: [
        { issuer: iss.a, discovery: true, ...common, audiences: [AUD, 'https://api.idp.example'], claims: ['email'], clients: ['a', 'd', 'pkj'] },
        { issuer: iss.b, jwksUri: `${idp.url}/b/jwks`, ...common, subjectTokenTypes: [ACCESS_TOKEN_TYPE], clients: ['a'] },
        { issuer: iss.down, jwksUri: `https://127.0.0.1:${down}/jwks`, ...common, clients: ['a'], fetchTimeoutMs: 2000 },
        { issuer: iss.untrusted, jwksUri: `${idp.url}/b/jwks`, audiences: [AUD], clients: ['a'] },
        { issuer: iss.mismatch, discovery: true, ...common, clients: ['a'] },
        { issuer: iss.silent, discovery: true, ...common, clients: ['a'], fetchTimeoutMs: 500 },
      ],
    });
    // A client registered at run time, listed for the IdP, that authenticates without mTLS.
    const pkjJwk = { ...(await exportJWK(createPublicKey(pkjKey))), kid: 'k', alg: 'ES256' };
    await as.server.registerClient({
      client_id: 'pkj',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [pkjJwk] },
      grant_types: [TOKEN_EXCHANGE],
      scope: 'read',
      audiences: ['*'],
    });
  });

  after(async () => {
    await as?.close();
    await idp?.close();
    await silent?.close();
    if (dir !== undefined) removeDir(dir);
  });

  /** A person's access token from `issuer` (RFC 9068 shape), overridable claim by claim. */
  const personToken = (claims: Record<string, unknown> = {}, options: { typ?: string | undefined; key?: IdpKey; issuer?: string } = {}) =>
    mintIdpToken(
      { iss: options.issuer ?? iss.a, sub: 'alice', aud: AUD, iat: now(), exp: now() + 120, email: 'alice@example.com', name: 'Alice', scope: 'openid read', ...claims },
      { key: options.key ?? key, typ: 'typ' in options ? options.typ : 'at+jwt' },
    );

  const failures = async (reason: string): Promise<number> => {
    const { values } = await as.server.metrics.failures.get();
    return values.filter((v) => v.labels.reason === reason && v.labels.endpoint === 'token').reduce((n, v) => n + v.value, 0);
  };

  /** Expect a refusal with `status`, `error` and (counted in metrics) `reason`. */
  async function refused(run: () => Promise<TokenRequestResult>, status: number, error: string, reason: string, label: string): Promise<void> {
    const before = await failures(reason);
    const r = await run();
    assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
    assert.equal(r.json?.error, error, `${label}: ${r.text}`);
    assert.equal(typeof r.json?.error_description, 'string', label);
    assert.equal(await failures(reason), before + 1, `${label}: reason ${reason}`);
  }

  const exchange = (client: string, token: string, params: Record<string, string | undefined> = {}) =>
    as.exchange(client, token, { audience: 'https://open.example', ...params });

  const thumb = (name: string) => certificateThumbprint(new X509Certificate(as.pki.clients[name]!.cert));

  test('access token: successor for the person, acted by the client, session-bound to its certificate', async () => {
    const subject = await personToken({ exp: now() + 90 });
    const r = await exchange('a', subject, { audience: 'https://rs.example' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.issued_token_type, ACCESS_TOKEN_TYPE);
    const c = claimsOf(r.json?.access_token as string);
    assert.equal(c.iss, as.server.issuer);
    assert.equal(c.sub, 'alice');
    assert.equal(c.client_id, 'a');
    assert.deepEqual(c.act, { sub: 'a' });
    assert.deepEqual(c.cnf, { 'x5t#S256': thumb('a'), tls_exp: EXPORTER_LABEL });
    assert.deepEqual(c.sub_id, { format: 'iss_sub', iss: iss.a, sub: 'alice' });
    assert.equal(c.email, 'alice@example.com');
    assert.equal(c.name, undefined, 'a claim not in the allow-list is not copied');
    assert.equal(c.aud, 'https://rs.example');
    assert.equal(c.scope, 'read', "the client's scopes within the token's");
    assert.ok((c.exp as number) <= now() + 90, `exp ${String(c.exp)} capped by the external token`);
    assert.ok((c.exp as number) >= now() + 80);
  });

  test('ID token: certificate-bound (never bearer) for a client without session binding', async () => {
    const subject = await personToken({ scope: undefined, nonce: 'n-1', azp: AUD }, { typ: undefined });
    const r = await as.exchange('d', subject, { audience: 'https://open.example' }, {});
    assert.equal(r.status, 400, 'declared as an access token, an ID token (no at+jwt) is refused');
    const ok = await as.post('d', '/token', {
      grant_type: TOKEN_EXCHANGE,
      client_id: 'd',
      subject_token: subject,
      subject_token_type: ID_TOKEN_TYPE,
      audience: 'https://open.example',
    });
    assert.equal(ok.status, 200, ok.text);
    const c = claimsOf(ok.json?.access_token as string);
    assert.equal(c.sub, 'alice');
    assert.deepEqual(c.act, { sub: 'd' });
    assert.deepEqual(c.cnf, { 'x5t#S256': thumb('d') }, 'certificate-bound although the audience asks for no binding');
    assert.deepEqual(c.sub_id, { format: 'iss_sub', iss: iss.a, sub: 'alice' });
    assert.equal(c.email, 'alice@example.com');
    assert.equal(c.nonce, undefined);
    assert.equal(c.azp, undefined);
    assert.equal(c.scope, 'read write', 'no scope in the ID token: the client’s own');
  });

  test('scope: never beyond the token’s scope nor the client’s', async () => {
    const subject = await personToken({ scope: 'openid read write' });
    assert.equal(claimsOf((await exchange('a', subject, { scope: 'write' })).json?.access_token as string).scope, 'write');
    await refused(async () => exchange('a', await personToken(), { scope: 'write' }), 400, 'invalid_scope', 'scope_exceeds_external', 'beyond the token');
    await refused(async () => exchange('d', subject, { scope: 'admin' }), 400, 'invalid_scope', 'scope_exceeds_external', 'beyond the client');
  });

  test('issuer, signature and claim refusals', async () => {
    const t = now();
    const cases: Array<[string, () => Promise<string>, string]> = [
      ['unlisted issuer', () => personToken({ iss: 'https://evil.example' }), 'subject_issuer_untrusted'],
      ['signed by another key with the same kid', () => personToken({}, { key: impostor }), 'external_signature'],
      ['a kid the IdP does not publish', () => mintIdpToken({ iss: iss.a, sub: 'alice', aud: AUD, iat: t, exp: t + 60 }, { key, kid: 'nope', typ: 'at+jwt' }), 'external_signature'],
      ['an algorithm not accepted (ES384)', () => personToken({}, { key: key384 }), 'external_alg'],
      ['expired beyond the clock skew', () => personToken({ iat: t - 600, exp: t - 60 }), 'external_expired'],
      ['nbf in the future', () => personToken({ nbf: t + 120 }), 'external_nbf'],
      ['iat in the future', () => personToken({ iat: t + 120, exp: t + 300 }), 'external_iat_future'],
      ['another audience', () => personToken({ aud: 'someone-else' }), 'external_audience'],
      ['no exp', () => personToken({ exp: undefined }), 'external_claims'],
      ['typ JWT declared as an access token', () => personToken({}, { typ: 'JWT' }), 'external_typ'],
      ['carries cnf', () => personToken({ cnf: { 'x5t#S256': thumb('a') } }), 'external_cnf'],
      ['carries act', () => personToken({ act: { sub: 'someone' } }), 'external_act'],
      ['not a JWT', () => Promise.resolve('not-a-jwt'), 'subject_malformed'],
      ['no iss', () => personToken({ iss: undefined }), 'subject_malformed'],
    ];
    for (const [label, make, reason] of cases) await refused(async () => exchange('a', await make()), 400, 'invalid_grant', reason, label);
    const idToken = await personToken({}, { typ: 'at+jwt' });
    await refused(() => as.exchange('a', idToken, { audience: 'https://open.example', subject_token_type: ID_TOKEN_TYPE }), 400, 'invalid_grant', 'external_typ', 'at+jwt declared as an ID token');
  });

  test('subject_token_type not accepted for the issuer: invalid_request', async () => {
    const onlyAccess = await personToken({ iss: iss.b }, { typ: undefined });
    await refused(() => as.exchange('a', onlyAccess, { audience: 'https://open.example', subject_token_type: ID_TOKEN_TYPE }), 400, 'invalid_request', 'external_token_type', 'ID token at an access-token-only issuer');
    await refused(async () => as.exchange('a', await personToken(), { audience: 'https://open.example', subject_token_type: JWT_TYPE }), 400, 'invalid_request', 'external_token_type', 'the generic jwt type');
    const ok = await exchange('a', await personToken({ iss: iss.b }));
    assert.equal(ok.status, 200, `the same issuer's access token (jwksUri, no discovery): ${ok.text}`);
  });

  test('T6: only listed clients, only over mTLS', async () => {
    const subject = await personToken();
    await refused(() => exchange('thief', subject), 400, 'invalid_grant', 'external_client_not_allowed', 'a registered mTLS client not listed');
    await refused(() => exchange('b', subject), 400, 'invalid_grant', 'external_client_not_allowed', 'another registered client');
    const assertion = await new SignJWT({ iss: 'pkj', sub: 'pkj', aud: as.server.issuer, jti: randomUUID(), exp: now() + 60 }).setProtectedHeader({ alg: 'ES256' }).sign(pkjKey);
    const noCert = clientWith(undefined, as.pki);
    try {
      const params = { grant_type: TOKEN_EXCHANGE, client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: assertion, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, audience: 'https://open.example' };
      await refused(() => noCert.post(`${as.server.url}/token`, params), 400, 'invalid_grant', 'external_not_mtls', 'a listed client authenticated by private_key_jwt');
    } finally {
      await noCert.close();
    }
  });

  test('no second actor, no deferred binding, no DPoP', async () => {
    const subject = await personToken();
    const actor = await as.token('a', { audience: 'https://open.example' });
    await refused(() => exchange('a', subject, { actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE }), 400, 'invalid_request', 'external_actor_token', 'actor_token');
    await refused(() => exchange('a', subject, { tmb: JSON.stringify({ 'x5t#S256': thumb('b') }) }), 400, 'invalid_request', 'external_tmb', 'tmb');
    const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const dpop = await createDpopProof({ privateKey: dpopKey, htm: 'POST', htu: `${as.server.url}/token` });
    await refused(
      () => as.exchange('d', subject, { audience: 'https://open.example' }, { headers: { dpop } }),
      400,
      'invalid_request',
      'dpop_with_certificate_binding',
      'a DPoP proof: the successor would not be bound to the certificate',
    );
  });

  test('the IdP cannot be read: 503 temporarily_unavailable, never 500', async () => {
    await refused(async () => exchange('a', await personToken({ iss: iss.down })), 503, 'temporarily_unavailable', 'external_issuer_unavailable', 'JWKS host down');
    await refused(async () => exchange('a', await personToken({ iss: iss.untrusted })), 503, 'temporarily_unavailable', 'external_issuer_unavailable', 'IdP certificate not trusted (no caFiles)');
    await refused(async () => exchange('a', await personToken({ iss: iss.mismatch })), 503, 'temporarily_unavailable', 'external_issuer_unavailable', 'discovery names another issuer');
    assert.equal(idp.hits.get('/mismatch/.well-known/openid-configuration'), 1);
    const started = Date.now();
    await refused(async () => exchange('a', await personToken({ iss: iss.silent })), 503, 'temporarily_unavailable', 'external_issuer_unavailable', 'IdP accepts the connection and never answers');
    assert.ok(Date.now() - started < 4000, `answered after ${Date.now() - started} ms (fetchTimeoutMs 500)`);
    assert.ok(silent.connections() >= 1, 'the fetch did reach the silent IdP');
  });

  test('a person whose IdP sub is the name of a client here is refused', async () => {
    await refused(async () => exchange('a', await personToken({ sub: 'b' })), 400, 'invalid_grant', 'external_sub_is_client', 'sub = a client_id');
    await refused(async () => exchange('a', await personToken({ sub: 'spiffe://tether.local/b' })), 400, 'invalid_grant', 'external_sub_is_client', 'sub = a client identifier');
  });

  test('the person stays named along the chain: a later exchange carries sub_id and the allowed claims', async () => {
    const first = await exchange('a', await personToken(), { audience: 'spiffe://tether.local/b' });
    assert.equal(first.status, 200, first.text);
    const r = await exchange('b', first.json?.access_token as string, { audience: 'https://open.example' });
    assert.equal(r.status, 200, r.text);
    const c = claimsOf(r.json?.access_token as string);
    assert.equal(c.sub, 'alice');
    assert.equal(c.client_id, 'b');
    assert.deepEqual(c.act, { sub: 'b', act: { sub: 'a' } });
    assert.deepEqual(c.sub_id, { format: 'iss_sub', iss: iss.a, sub: 'alice' });
    assert.equal(c.email, 'alice@example.com');
    assert.deepEqual(c.cnf, { 'x5t#S256': thumb('b'), tls_exp: EXPORTER_LABEL });
    const own = claimsOf(await as.token('a', { audience: 'spiffe://tether.local/b' }));
    assert.equal(own.sub_id, undefined);
  });

  test('keys are cached: one discovery and one JWKS fetch for many exchanges', () => {
    assert.equal(idp.hits.get('/idp/.well-known/openid-configuration'), 1);
    // The first fetch, and one refetch for the unknown kid (then the cooldown holds).
    assert.ok((idp.hits.get('/idp/jwks') ?? 0) <= 2, `JWKS fetched ${idp.hits.get('/idp/jwks')} times`);
  });

  test('own tokens still take the own-token path', async () => {
    const own = await as.token('a', { audience: 'spiffe://tether.local/b' });
    const r = await exchange('b', own, { audience: 'https://open.example' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(claimsOf(r.json?.access_token as string).act, { sub: 'b', act: { sub: 'a' } });
  });
});
