import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, generateKeyPairSync, createPublicKey, randomUUID } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { once } from 'node:events';
import { SignJWT, exportJWK } from 'jose';
import {
  EXPORTER_LABEL,
  SessionBoundClient,
  certificateThumbprint,
  createSessionBindingProof,
  createSessionBoundVerifier,
  deriveSessionExporter,
  jwtAccessTokenValidator,
  remoteJwks,
} from '@tether/core';
import { JWT_BEARER_ASSERTION, type TokenRequestResult } from '@tether/as';
import type { DevPki } from '@tether/pki';
import { startEchoServer, type RunningServer } from '../helpers/servers.js';
import { JWT_TYPE, NAMES, TOKEN_EXCHANGE, ACCESS_TOKEN_TYPE, claimsOf, spiffe, standardClient, startTestAs, type TestAs } from './helpers/setup.js';

const thumb = (pki: DevPki, name: string) => certificateThumbprint(new X509Certificate(pki.clients[name]!.cert));

function assertError(r: TokenRequestResult, error: string, label: string): void {
  assert.equal(r.json?.error, error, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.status, error === 'invalid_client' ? 401 : 400, label);
}

function assertOk(r: TokenRequestResult, label: string): string {
  assert.equal(r.status, 200, `${label}: ${r.text}`);
  return r.json?.access_token as string;
}

/** A Session-Binding-Proof for `token` signed by `name`, built on a separate TLS connection to the AS. */
async function proofFromAnotherConnection(as: TestAs, name: string, token: string): Promise<string> {
  const cred = as.pki.clients[name]!;
  const url = new URL(as.server.url);
  const socket = tlsConnect({ host: url.hostname, port: Number(url.port), cert: cred.cert, key: cred.key, ca: as.pki.ca.cert, minVersion: 'TLSv1.3' });
  await once(socket, 'secureConnect');
  try {
    return await createSessionBindingProof({
      privateKey: createPrivateKey(cred.key),
      certificate: new X509Certificate(cred.cert),
      accessToken: token,
      ekm: deriveSessionExporter(socket),
    });
  } finally {
    socket.destroy();
  }
}

describe('token exchange: A -> B -> C -> D chain, T6 and splicing', () => {
  let as: TestAs;
  const resources: Record<string, RunningServer> = {};
  const callers: Record<string, SessionBoundClient> = {};
  const pkjKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  before(async () => {
    const pkjJwk = { ...(await exportJWK(createPublicKey(pkjKey))), kid: 'k', alg: 'ES256' };
    as = await startTestAs({
      tokenExchange: { maxDelegationDepth: 3 },
      clients: [
        ...NAMES.filter((n) => n !== 'c' && n !== 'd').map((n) => standardClient(n)),
        standardClient('c', { may_act: 'd' }),
        standardClient('d', { tls_session_bound_access_tokens: false }),
        {
          client_id: 'pkjb',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [pkjJwk] },
          identifiers: ['https://pkjb.example'],
          grant_types: ['client_credentials', TOKEN_EXCHANGE],
          audiences: ['*'],
        },
      ],
    });
    for (const name of ['b', 'c', 'd']) {
      const verifier = createSessionBoundVerifier({
        tokens: jwtAccessTokenValidator({ keys: remoteJwks(as.server.jwksUri, { ca: as.pki.ca.cert }), issuer: as.server.issuer, audience: spiffe(name) }),
      });
      resources[name] = await startEchoServer(as.pki, verifier);
    }
    for (const name of NAMES) {
      const cred = as.pki.clients[name]!;
      callers[name] = new SessionBoundClient({ cert: cred.cert, key: cred.key, ca: as.pki.ca.cert });
    }
  });

  after(async () => {
    for (const c of Object.values(callers)) await c.close();
    for (const r of Object.values(resources)) await r.close();
    await as.close();
  });

  const call = async (caller: string, resource: string, token: string) => {
    const r = await callers[caller]!.request(`${resources[resource]!.url}/echo`, { token });
    return { status: r.status, body: r.status === 200 ? (JSON.parse(r.body.toString()) as { principal: Record<string, unknown> }) : undefined };
  };

  test('each hop is bound to its presenter and accepted by the core verifier; act nests the chain', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    const c1 = claimsOf(t1);
    assert.deepEqual(c1.cnf, { 'x5t#S256': thumb(as.pki, 'a'), tls_exp: EXPORTER_LABEL });
    assert.equal((await call('a', 'b', t1)).status, 200);
    assert.equal((await call('b', 'b', t1)).status, 401, 'hop 1 token is useless on B’s own connection');

    const r2 = await as.exchange('b', t1, { audience: spiffe('c') });
    const t2 = assertOk(r2, 'B exchanges A’s token');
    assert.equal(r2.json?.issued_token_type, ACCESS_TOKEN_TYPE);
    assert.equal(r2.json?.token_type, 'Bearer');
    const c2 = claimsOf(t2);
    assert.equal(c2.sub, 'a');
    assert.equal(c2.client_id, 'b');
    assert.equal(c2.aud, spiffe('c'));
    assert.deepEqual(c2.act, { sub: 'b', act: { sub: 'a' } });
    assert.deepEqual(c2.cnf, { 'x5t#S256': thumb(as.pki, 'b'), tls_exp: EXPORTER_LABEL });
    assert.ok((c2.exp as number) <= (c1.exp as number), 'a successor never outlives its subject token');
    const atC = await call('b', 'c', t2);
    assert.equal(atC.status, 200);
    assert.deepEqual(atC.body?.principal.act, { sub: 'b', act: { sub: 'a' } });
    assert.equal(atC.body?.principal.binding, 'session');
    assert.equal((await call('a', 'c', t2)).status, 401, 'A cannot use B’s token');

    const t3 = assertOk(await as.exchange('c', t2, { audience: spiffe('d') }), 'C exchanges B’s token');
    const atD = await call('c', 'd', t3);
    assert.equal(atD.status, 200);
    assert.deepEqual(atD.body?.principal.act, { sub: 'c', act: { sub: 'b', act: { sub: 'a' } } });
    assert.equal(atD.body?.principal.sub, 'a');
    assert.equal((await call('b', 'd', t3)).status, 401);

    // Depth limit (3 here): a fourth actor is refused.
    const t4 = await as.exchange('d', t3, { audience: spiffe('b') });
    assertError(t4, 'invalid_grant', 'delegation depth');
  });

  test('T6: a thief with its own certificate cannot extend the chain', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    assertError(await as.exchange('thief', t1, { audience: spiffe('c') }), 'invalid_grant', 'thief, own audience');
    assertError(await as.exchange('thief', t1, { audience: spiffe('b') }), 'invalid_grant', 'thief, same audience');
    // A proof that A made for the token, replayed by the thief on its own connection.
    const stolenProof = await proofFromAnotherConnection(as, 'a', t1);
    assertError(await as.exchange('thief', t1, { audience: spiffe('c') }, { proof: stolenProof }), 'invalid_grant', 'thief with A’s proof');
  });

  test('T6: the holder must prove possession on its own connection to the AS', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    assertError(await as.exchange('a', t1, { audience: spiffe('c') }), 'invalid_grant', 'holder without proof');
    const other = await proofFromAnotherConnection(as, 'a', t1);
    assertError(await as.exchange('a', t1, { audience: spiffe('c') }, { proof: other }), 'invalid_grant', 'proof from another connection');
    const t1b = await as.token('a', { audience: spiffe('b') });
    assertError(await as.exchange('a', t1, { audience: spiffe('c') }, { proof: await proofFromAnotherConnection(as, 'a', t1b) }), 'invalid_grant', 'proof for another token');
    assertError(await as.exchange('a', t1, { audience: spiffe('c') }, { proof: 'garbage' }), 'invalid_grant', 'garbage proof');
    const dup = await as.client('a').raw(
      `${as.server.url}/token`,
      'POST',
      new URLSearchParams({ grant_type: TOKEN_EXCHANGE, client_id: 'a', subject_token: t1, subject_token_type: ACCESS_TOKEN_TYPE, audience: spiffe('c') }).toString(),
      { 'content-type': 'application/x-www-form-urlencoded', 'session-binding-proof': 'x' },
    );
    assertError(dup, 'invalid_grant', 'a single bad proof header');

    // The positive control: a proof made on this very connection (optionally with per-request claims).
    for (const perRequestClaims of [false, true]) {
      const ok = await as.exchange('a', t1, { audience: spiffe('c'), scope: 'read' }, { proveSubjectToken: true, perRequestClaims });
      const t = assertOk(ok, `holder with proof (perRequestClaims ${perRequestClaims})`);
      const c = claimsOf(t);
      assert.equal(c.act, undefined, 'a holder exchanging its own token adds no actor');
      assert.deepEqual(c.cnf, { 'x5t#S256': thumb(as.pki, 'a'), tls_exp: EXPORTER_LABEL });
      assert.equal(c.scope, 'read');
    }
  });

  test('T6 (b): a recipient must authenticate with mTLS', async () => {
    const t = await as.token('a', { audience: 'https://pkjb.example' });
    const now = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({ iss: 'pkjb', sub: 'pkjb', aud: as.server.issuer, jti: randomUUID(), exp: now + 60 }).setProtectedHeader({ alg: 'ES256' }).sign(pkjKey);
    const r = await as.client('b').post(`${as.server.url}/token`, {
      grant_type: TOKEN_EXCHANGE,
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
      subject_token: t,
      subject_token_type: ACCESS_TOKEN_TYPE,
      audience: spiffe('c'),
    });
    assertError(r, 'invalid_grant', 'recipient authenticated by private_key_jwt');
  });

  test('splicing: the actor token must represent and be held by the requester', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    const bActor = await as.token('b', { audience: 'https://open.example' });
    const cActor = await as.token('c', { audience: 'https://open.example' });
    const thiefActor = await as.token('thief', { audience: 'https://open.example' });
    const actor = (token: string) => ({ audience: spiffe('c'), actor_token: token, actor_token_type: ACCESS_TOKEN_TYPE });
    assertError(await as.exchange('b', t1, actor(cActor)), 'invalid_grant', "B with C's actor token");
    assertError(await as.exchange('thief', t1, actor(thiefActor)), 'invalid_grant', 'thief with its own actor token');
    assertError(await as.exchange('c', t1, actor(cActor)), 'invalid_grant', 'C, not a recipient, with its own actor token');
    assertError(await as.exchange('b', t1, { audience: spiffe('c'), actor_token: bActor }), 'invalid_request', 'actor_token without its type');
    assertError(await as.exchange('b', t1, actor('garbage')), 'invalid_grant', 'garbage actor token');
    const ok = assertOk(await as.exchange('b', t1, actor(bActor)), "B with its own actor token");
    assert.deepEqual(claimsOf(ok).act, { sub: 'b', act: { sub: 'a' } });
  });

  test('may_act lets a named party exchange a token it is not the audience of', async () => {
    const t = await as.token('c', { audience: 'https://rs.example' });
    assert.deepEqual(claimsOf(t).may_act, { sub: 'd' });
    const ok = assertOk(await as.exchange('d', t, { audience: 'https://open.example' }), 'd via may_act');
    assert.deepEqual(claimsOf(ok).act, { sub: 'd', act: { sub: 'c' } });
    assertError(await as.exchange('thief', t, { audience: 'https://open.example' }), 'invalid_grant', 'thief, not in may_act');
  });

  test('a bound subject token always yields a bound successor (NOTES decision 5)', async () => {
    const own = await as.token('d', { audience: 'https://open.example' });
    assert.equal(claimsOf(own).cnf, undefined, 'd is not a session-bound client');
    const t = await as.token('a', { audience: spiffe('d') });
    const successor = claimsOf(assertOk(await as.exchange('d', t, { audience: 'https://open.example' }), 'd exchanges a bound token'));
    assert.deepEqual(successor.cnf, { 'x5t#S256': thumb(as.pki, 'd'), tls_exp: EXPORTER_LABEL });
  });

  test('scope, audience, token types and subject token validity', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    assert.equal(claimsOf(t1).scope, 'read write admin');
    assert.equal(claimsOf(assertOk(await as.exchange('b', t1, { audience: spiffe('c'), scope: 'read' }), 'down-scope')).scope, 'read');
    assertError(await as.exchange('b', t1, { audience: spiffe('c'), scope: 'read delete' }), 'invalid_scope', 'up-scope');
    assertError(await as.exchange('b', t1, { audience: 'https://unknown.example' }), 'invalid_target', 'unknown audience');
    assertError(await as.exchange('b', t1, {}), 'invalid_target', 'no audience');
    const viaResource = assertOk(await as.exchange('b', t1, { resource: 'https://rs.example', scope: 'read' }), 'resource parameter');
    assert.equal(claimsOf(viaResource).aud, 'https://rs.example');
    assertError(await as.exchange('b', t1, { resource: 'https://rs.example', scope: 'admin' }), 'invalid_scope', 'scope the resource does not accept');
    const multi = assertOk(await as.exchange('b', t1, { audience: [spiffe('c'), spiffe('d')] }), 'two audiences');
    assert.deepEqual(claimsOf(multi).aud, [spiffe('c'), spiffe('d')]);
    const jwt = await as.exchange('b', t1, { audience: spiffe('c'), requested_token_type: JWT_TYPE });
    assertOk(jwt, 'requested_token_type jwt');
    assert.equal(jwt.json?.issued_token_type, JWT_TYPE);
    assertError(await as.exchange('b', t1, { audience: spiffe('c'), requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), 'invalid_request', 'refresh_token');
    assertError(await as.exchange('b', t1, { audience: spiffe('c'), subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }), 'invalid_request', 'saml2');
    assertError(await as.exchange('b', 'garbage', { audience: spiffe('c') }), 'invalid_grant', 'garbage subject token');
    assertError(await as.exchange('b', t1.slice(0, -4) + 'AAAA', { audience: spiffe('c') }), 'invalid_grant', 'tampered subject token');

    const revoked = await as.token('a', { audience: spiffe('b') });
    assert.equal((await as.post('a', '/revoke', { client_id: 'a', token: revoked })).status, 200);
    assertError(await as.exchange('b', revoked, { audience: spiffe('c') }), 'invalid_grant', 'revoked subject token');

    const old = await as.token('a', { audience: spiffe('b') });
    as.skew.ms = 400_000;
    try {
      assertError(await as.exchange('b', old, { audience: spiffe('c') }), 'invalid_grant', 'expired subject token');
    } finally {
      as.skew.ms = 0;
    }
    const r = await as.post('b', '/token', { grant_type: TOKEN_EXCHANGE, client_id: 'b', subject_token_type: ACCESS_TOKEN_TYPE });
    assertError(r, 'invalid_request', 'no subject_token');
  });
});

describe('deferred key binding (tmb)', () => {
  let as: TestAs;
  const tmb = (pki: DevPki, name: string, session = false) => JSON.stringify({ 'x5t#S256': thumb(pki, name), ...(session ? { tls_exp: EXPORTER_LABEL } : {}) });
  let echo: RunningServer;
  let bCaller: SessionBoundClient;
  let aCaller: SessionBoundClient;

  before(async () => {
    const { asPki } = await import('./helpers/setup.js');
    const pki = await asPki();
    as = await startTestAs({
      clients: [
        standardClient('a', { tmb: { thumbprints: [thumb(pki, 'b')], clients: ['c', 'd'] } }),
        standardClient('b', { tmb: { thumbprints: [], clients: ['d'] } }),
        standardClient('c'),
        standardClient('d', { certificate_thumbprints: [thumb(pki, 'd')], tls_session_bound_access_tokens: false, tmb: { thumbprints: [thumb(pki, 'c')], clients: [] } }),
        standardClient('thief', { introspection: 'any' }),
      ],
    });
    echo = await startEchoServer(
      as.pki,
      createSessionBoundVerifier({
        tokens: jwtAccessTokenValidator({ keys: remoteJwks(as.server.jwksUri, { ca: as.pki.ca.cert }), issuer: as.server.issuer, audience: 'https://rs.example' }),
      }),
    );
    bCaller = new SessionBoundClient({ cert: pki.clients.b!.cert, key: pki.clients.b!.key, ca: pki.ca.cert });
    aCaller = new SessionBoundClient({ cert: pki.clients.a!.cert, key: pki.clients.a!.key, ca: pki.ca.cert });
  });

  after(async () => {
    await bCaller.close();
    await aCaller.close();
    await echo.close();
    await as.close();
  });

  test('a requester trusted for a key holder gets a token bound to that key; only the holder can use it', async () => {
    const r = await as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'a', audience: 'https://rs.example', scope: 'read', tmb: tmb(as.pki, 'b') });
    const token = assertOk(r, 'tmb for b');
    const cnf = { 'x5t#S256': thumb(as.pki, 'b'), tls_exp: EXPORTER_LABEL };
    assert.deepEqual(claimsOf(token).cnf, cnf, 'session binding still applies (a is a session-bound client)');
    const intro = await as.post('thief', '/introspect', { client_id: 'thief', token });
    assert.deepEqual(intro.json?.cnf, cnf, 'introspection returns the deferred cnf');
    assert.equal((await bCaller.request(`${echo.url}/x`, { token })).status, 200, 'the key holder presents it');
    assert.equal((await aCaller.request(`${echo.url}/x`, { token })).status, 401, 'the requester cannot');
    assert.equal((await as.server.metrics.registry.getSingleMetricAsString('tether_as_tokens_issued_total')).includes('deferred="true"'), true);
  });

  test('key holders by client id: registered thumbprints, and certificates the client authenticated with', async () => {
    assertOk(await as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'a', audience: 'https://rs.example', tmb: tmb(as.pki, 'd') }), 'registered thumbprint of d');
    const before = await as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'a', audience: 'https://rs.example', tmb: tmb(as.pki, 'c') });
    assertError(before, 'invalid_grant', 'c has not authenticated yet');
    await as.token('c', { audience: 'https://open.example' });
    assertOk(await as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'a', audience: 'https://rs.example', tmb: tmb(as.pki, 'c') }), 'c seen');
  });

  test('certificate or session binding as asked, for a client that is not session-bound', async () => {
    const cert = claimsOf(assertOk(await as.post('d', '/token', { grant_type: 'client_credentials', client_id: 'd', audience: 'https://open.example', tmb: tmb(as.pki, 'c') }), 'x5t only'));
    assert.deepEqual(cert.cnf, { 'x5t#S256': thumb(as.pki, 'c') });
    const session = claimsOf(assertOk(await as.post('d', '/token', { grant_type: 'client_credentials', client_id: 'd', audience: 'https://open.example', tmb: tmb(as.pki, 'c', true) }), 'with tls_exp'));
    assert.deepEqual(session.cnf, { 'x5t#S256': thumb(as.pki, 'c'), tls_exp: EXPORTER_LABEL });
  });

  test('refused: holders outside the policy (invalid_grant), malformed values (invalid_request)', async () => {
    const cc = (name: string, value: string) => as.post(name, '/token', { grant_type: 'client_credentials', client_id: name, audience: 'https://rs.example', tmb: value });
    assertError(await cc('a', tmb(as.pki, 'thief')), 'invalid_grant', 'a for thief');
    assertError(await cc('thief', tmb(as.pki, 'a')), 'invalid_grant', 'thief for a');
    assertError(await cc('b', tmb(as.pki, 'a')), 'invalid_grant', 'b for a');
    for (const bad of ['not json', '[]', '{}', '{"x5t#S256":"short"}', JSON.stringify({ 'x5t#S256': thumb(as.pki, 'b'), jkt: 'x' }), JSON.stringify({ 'x5t#S256': thumb(as.pki, 'b'), tls_exp: 'EXPORTER-other' })]) {
      assertError(await cc('a', bad), 'invalid_request', `malformed tmb ${bad}`);
    }
  });

  test('tmb in a token exchange: the T6 rules still apply to the requester', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    const ok = claimsOf(assertOk(await as.exchange('b', t1, { audience: 'https://rs.example', tmb: tmb(as.pki, 'd') }), 'b exchanges for d'));
    assert.deepEqual(ok.cnf, { 'x5t#S256': thumb(as.pki, 'd'), tls_exp: EXPORTER_LABEL }, 'session binding inherited from the subject token');
    assert.deepEqual(ok.act, { sub: 'b', act: { sub: 'a' } });
    assertError(await as.exchange('thief', t1, { audience: 'https://rs.example', tmb: tmb(as.pki, 'thief') }), 'invalid_grant', 'thief');
  });
});
