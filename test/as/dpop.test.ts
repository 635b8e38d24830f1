/**
 * DPoP-bound access tokens from the authorization server (RFC 9449 sections 5, 6 and 5.2), over
 * real mTLS on 127.0.0.1:0: a client gets a token with `cnf.jkt` of its DPoP key and token_type
 * DPoP; the core resource-server verifier accepts it with that key (DpopClient) and refuses it
 * with another key or under the Bearer scheme; bad proofs at the token endpoint are refused with
 * 400 invalid_dpop_proof; DPoP never mixes with certificate/session binding (400 invalid_request,
 * no token); dpop_bound_access_tokens clients must send DPoP; token exchange keeps the binding;
 * a DPoP-bound actor token is held by its key; a replay store that cannot answer fails closed;
 * metadata, introspection and metrics show DPoP.
 */
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createSessionBoundVerifier, jwtAccessTokenValidator, remoteJwks } from '@tether/core';
import { DPOP_ALGORITHMS, DpopClient, createDpopProof, jwkThumbprint, publicJwkOf, type CreateDpopProofOptions } from '@tether/core/dpop';
import { ConfigError, SqlStore, SqliteDriver, type TokenRequestResult } from '@tether/as';
import { startEchoServer, type RunningServer } from '../helpers/servers.js';
import { ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, claimsOf, removeDir, spiffe, standardClient, startTestAs, tempDir, type TestAs } from './helpers/setup.js';

const OPEN = 'https://open.example';
const CERT_RS = 'https://rs.example';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function assertError(r: TokenRequestResult, status: number, error: string, label: string): void {
  assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.json?.error, error, `${label}: ${r.text}`);
  assert.equal(r.json?.access_token, undefined, `${label}: no token`);
}

function assertOk(r: TokenRequestResult, label: string): Record<string, unknown> {
  assert.equal(r.status, 200, `${label}: ${r.status} ${r.text}`);
  return r.json as Record<string, unknown>;
}

const newKey = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

describe('DPoP-bound access tokens (RFC 9449)', () => {
  let as: TestAs;
  let rs: RunningServer;
  let tokenUrl: string;
  const keyB = newKey();
  const keyC = newKey();
  const dpopClients: DpopClient[] = [];

  before(async () => {
    as = await startTestAs({
      // The plain listener makes the mTLS listener an alias (RFC 8705 section 5): proofs must name
      // the URL the client actually called.
      plainTlsListen: { host: '127.0.0.1', port: 0 },
      clients: [
        standardClient('a'),
        standardClient('b', { tls_session_bound_access_tokens: false, dpop_bound_access_tokens: true }),
        standardClient('c', { tls_session_bound_access_tokens: false }),
        standardClient('d', { tls_session_bound_access_tokens: false, introspection: 'any' }),
        standardClient('thief', { tls_session_bound_access_tokens: false, tls_client_certificate_bound_access_tokens: true }),
      ],
    });
    tokenUrl = `${as.server.url}/token`;
    rs = await startEchoServer(
      as.pki,
      createSessionBoundVerifier({
        tokens: jwtAccessTokenValidator({ keys: remoteJwks(as.server.jwksUri, { ca: as.pki.ca.cert }), issuer: as.server.issuer, audience: OPEN }),
        minimumBinding: 'certificate',
      }),
    );
  });

  after(async () => {
    for (const c of dpopClients) await c.close();
    await rs.close();
    await as.close();
  });

  /** A DpopClient with `name`'s mTLS identity (for the token endpoint) and the DPoP key `key`. */
  const dpopClient = (name: string, key: KeyObject): DpopClient => {
    const cred = as.pki.clients[name]!;
    const c = new DpopClient({ privateKey: key, ca: as.pki.ca.cert, cert: cred.cert, key: cred.key });
    dpopClients.push(c);
    return c;
  };

  const proof = (key: KeyObject, over: Partial<CreateDpopProofOptions> = {}) => createDpopProof({ privateKey: key, htm: 'POST', htu: tokenUrl, ...over });

  /** client_credentials for `name` with an explicit DPoP header (or none). */
  const cc = (name: string, dpop: string | string[] | undefined, extra: Record<string, string> = {}) =>
    as.post(name, '/token', { grant_type: 'client_credentials', client_id: name, audience: OPEN, ...extra }, dpop === undefined ? {} : { headers: { dpop: dpop as string } });

  const issuedTotal = async (binding: string) => {
    const values = (await as.server.metrics.tokensIssued.get()).values;
    return values.filter((v) => v.labels.binding === binding).reduce((n, v) => n + v.value, 0);
  };

  /** Internal refusal reasons counted so far at the token endpoint (they show why each request failed). */
  const reasons = async () =>
    new Set((await as.server.metrics.failures.get()).values.filter((v) => v.labels.endpoint === 'token' && v.value > 0).map((v) => String(v.labels.reason)));

  test('a client gets a DPoP-bound token; the core verifier accepts it with that key only, never as Bearer', async () => {
    const c = dpopClient('b', keyB);
    const res = await c.request(tokenUrl, { method: 'POST', headers: FORM, body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'b', audience: OPEN, scope: 'read' }).toString() });
    assert.equal(res.status, 200, res.body.toString());
    const body = JSON.parse(res.body.toString()) as Record<string, unknown>;
    assert.equal(body.token_type, 'DPoP');
    const token = body.access_token as string;
    const jkt = await jwkThumbprint(publicJwkOf(keyB));
    assert.equal(await c.thumbprint(), jkt);
    assert.deepEqual(claimsOf(token).cnf, { jkt }, 'cnf carries jkt only: no x5t#S256, no tls_exp');

    // The resource server (remote JWKS of this AS, minimumBinding certificate) accepts it with the key...
    const ok = await c.request(`${rs.url}/echo`, { token });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal((JSON.parse(ok.body.toString()) as { principal: { binding: string } }).principal.binding, 'dpop');

    // ...refuses it with another DPoP key (same TLS identity, so only the key differs)...
    const other = dpopClient('b', newKey());
    const stolen = await other.request(`${rs.url}/echo`, { token });
    assert.equal(stolen.status, 401, stolen.body.toString());

    // ...and under the Bearer scheme (no downgrade).
    const bearer = await as.client('b').get(`${rs.url}/echo`, { authorization: `Bearer ${token}` });
    assert.equal(bearer.status, 401, bearer.text);
    assert.equal(bearer.json?.error, 'invalid_token', bearer.text);

    assert.ok((await issuedTotal('dpop')) >= 1, 'tokens issued with binding="dpop" are counted');
  });

  test('introspection returns cnf.jkt and token_type DPoP (RFC 9449 section 6.2)', async () => {
    const r = await cc('c', await proof(keyC));
    const body = assertOk(r, 'optional DPoP client');
    assert.equal(body.token_type, 'DPoP');
    const jkt = await jwkThumbprint(publicJwkOf(keyC));
    const intro = await as.post('d', '/introspect', { client_id: 'd', token: body.access_token as string });
    assert.equal(intro.status, 200, intro.text);
    assert.equal(intro.json?.active, true);
    assert.equal(intro.json?.token_type, 'DPoP');
    assert.deepEqual(intro.json?.cnf, { jkt });
    // Without DPoP the same client still gets a Bearer token (dpop_bound_access_tokens is false).
    const plain = assertOk(await cc('c', undefined), 'bearer');
    assert.equal(plain.token_type, 'Bearer');
    assert.equal(claimsOf(plain.access_token as string).cnf, undefined);
  });

  test('metadata lists dpop_signing_alg_values_supported', async () => {
    const r = await as.client('a').get(as.server.metadataUrl);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json?.dpop_signing_alg_values_supported, [...DPOP_ALGORITHMS]);
    assert.deepEqual(as.server.metadata().dpop_signing_alg_values_supported, [...DPOP_ALGORITHMS]);
  });

  test('bad DPoP proofs at the token endpoint -> 400 invalid_dpop_proof', async () => {
    const now = Math.floor(Date.now() / 1000);
    assertError(await cc('c', await proof(keyC, { htu: `${as.server.url}/introspect` })), 400, 'invalid_dpop_proof', 'wrong htu (path)');
    assertError(await cc('c', await proof(keyC, { htu: as.server.tokenEndpoint })), 400, 'invalid_dpop_proof', 'wrong htu (the plain endpoint, sent to the mTLS alias)');
    assertError(await cc('c', await proof(keyC, { htm: 'GET' })), 400, 'invalid_dpop_proof', 'wrong htm');
    assertError(await cc('c', await proof(keyC, { iat: now - 3600 })), 400, 'invalid_dpop_proof', 'stale iat');
    assertError(await cc('c', await proof(keyC, { iat: now + 3600 })), 400, 'invalid_dpop_proof', 'future iat');

    const once = await proof(keyC);
    assertOk(await cc('c', once), 'first use');
    assertError(await cc('c', once), 400, 'invalid_dpop_proof', 'replayed jti');

    const [h, p] = (await proof(keyC)).split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    const none = `${Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url')}.${p}.AAAA`;
    assertError(await cc('c', none), 400, 'invalid_dpop_proof', 'alg none');
    assertError(await cc('c', 'not-a-jwt'), 400, 'invalid_dpop_proof', 'malformed');
    assertError(await cc('c', [await proof(keyC), await proof(keyC)]), 400, 'invalid_dpop_proof', 'two DPoP headers');
    const seen = await reasons();
    for (const reason of ['dpop_htu_mismatch', 'dpop_htm_mismatch', 'dpop_iat_stale', 'dpop_iat_future', 'dpop_jti_replay', 'dpop_alg', 'dpop_malformed', 'dpop_duplicate']) {
      assert.ok(seen.has(reason), `${reason} in ${[...seen].join(', ')}`);
    }
  });

  test('no mixing: a session- or certificate-bound client, a bound audience or tmb with DPoP -> 400 invalid_request, no token', async () => {
    const before = await issuedTotal('dpop');
    const keyA = newKey();
    const session = await cc('a', await proof(keyA));
    assertError(session, 400, 'invalid_request', 'session-bound client');
    assert.equal(session.json?.error_description, 'DPoP cannot be combined with certificate/session binding for this client');
    assertError(await cc('thief', await proof(newKey())), 400, 'invalid_request', 'certificate-bound client');
    assertError(await cc('c', await proof(keyC), { audience: CERT_RS, scope: 'read' }), 400, 'invalid_request', 'audience requires certificate binding');
    const tmb = JSON.stringify({ 'x5t#S256': 'A'.repeat(43) });
    assertError(await cc('c', await proof(keyC), { tmb }), 400, 'invalid_request', 'tmb with DPoP');
    assert.equal(await issuedTotal('dpop'), before, 'no DPoP token issued');
    const seen = await reasons();
    for (const reason of ['dpop_with_session_binding', 'dpop_with_certificate_binding', 'dpop_with_tmb']) assert.ok(seen.has(reason), `${reason} in ${[...seen].join(', ')}`);
  });

  test('dpop_bound_access_tokens: a request without DPoP is refused (RFC 9449 section 5.2)', async () => {
    assertError(await cc('b', undefined), 400, 'invalid_request', 'no DPoP header');
    assert.ok((await reasons()).has('dpop_required'));
    assertOk(await cc('b', await proof(keyB)), 'with DPoP');
  });

  test('dpop_bound_access_tokens with tls_session_bound_access_tokens is a configuration error', async () => {
    await assert.rejects(
      startTestAs({ clients: [standardClient('a', { dpop_bound_access_tokens: true })] }),
      (error: unknown) => error instanceof ConfigError && error.issues.some((i) => i.includes('dpop_bound_access_tokens')),
    );
  });

  test('token exchange: a DPoP-bound subject token stays DPoP-bound; only a proof with its key exchanges it', async () => {
    const subject = assertOk(await cc('c', await proof(keyC)), 'subject').access_token as string;
    const jkt = await jwkThumbprint(publicJwkOf(keyC));
    const exchange = (name: string, dpop: string | undefined, extra: Record<string, string> = {}) =>
      as.post(
        name,
        '/token',
        { grant_type: TOKEN_EXCHANGE, client_id: name, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, audience: OPEN, ...extra },
        dpop === undefined ? {} : { headers: { dpop } },
      );

    const ok = assertOk(await exchange('c', await proof(keyC)), 'holder with its key');
    assert.equal(ok.token_type, 'DPoP');
    assert.deepEqual(claimsOf(ok.access_token as string).cnf, { jkt }, 'the successor is bound to the same key');

    assertError(await exchange('c', undefined), 400, 'invalid_grant', 'no proof: binding would drop');
    assertError(await exchange('d', undefined), 400, 'invalid_grant', 'another client without proof');
    assertError(await exchange('d', await proof(newKey())), 400, 'invalid_grant', 'another key');
    assertError(await exchange('c', await proof(keyC), { audience: CERT_RS, scope: 'read' }), 400, 'invalid_request', 'successor would need certificate binding');

    // A certificate-bound subject token (c holds it: the audience required certificate binding),
    // exchanged by its holder with DPoP, would mix bindings.
    const bound = await as.token('c', { audience: CERT_RS, scope: 'read' });
    assert.equal(typeof (claimsOf(bound).cnf as Record<string, unknown>)['x5t#S256'], 'string');
    const mixed = await as.post(
      'c',
      '/token',
      { grant_type: TOKEN_EXCHANGE, client_id: 'c', subject_token: bound, subject_token_type: ACCESS_TOKEN_TYPE, audience: OPEN },
      { headers: { dpop: await proof(keyC) } },
    );
    assertError(mixed, 400, 'invalid_request', 'certificate-bound subject with DPoP');
    const seen = await reasons();
    assert.ok(seen.has('dpop_with_certificate_binding'));
    for (const reason of ['dpop_subject_without_proof', 'dpop_subject_key_mismatch']) assert.ok(seen.has(reason), `${reason} in ${[...seen].join(', ')}`);
  });

  test('a DPoP-bound actor_token is held when the request proof is made with its key', async () => {
    const subject = await as.token('d', { audience: spiffe('c') });
    const actor = assertOk(await cc('c', await proof(keyC)), 'actor').access_token as string;
    const params = { grant_type: TOKEN_EXCHANGE, client_id: 'c', subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE, audience: OPEN };
    const ok = assertOk(await as.post('c', '/token', params, { headers: { dpop: await proof(keyC) } }), 'actor held');
    assert.equal(ok.token_type, 'DPoP');
    assert.deepEqual(claimsOf(ok.access_token as string).cnf, { jkt: await jwkThumbprint(publicJwkOf(keyC)) });
    assert.deepEqual(claimsOf(ok.access_token as string).act, { sub: 'c', act: { sub: 'd' } });
    assertError(await as.post('c', '/token', params, { headers: { dpop: await proof(newKey()) } }), 400, 'invalid_grant', 'actor key mismatch');
    assertError(await as.post('c', '/token', params), 400, 'invalid_grant', 'actor without proof');
  });
});

describe('DPoP replay store failure', () => {
  test('a replay store that cannot answer refuses the request (fails closed)', async () => {
    class FailingStore extends SqlStore {
      override rememberOnce(namespace: string, id: string, expiresAt: number): Promise<boolean> {
        if (namespace === 'dpop') return Promise.reject(new Error('store down'));
        return super.rememberOnce(namespace, id, expiresAt);
      }
    }
    const dir = tempDir();
    const as = await startTestAs({ clients: [standardClient('c', { tls_session_bound_access_tokens: false })] }, { dataDir: dir, start: { store: new FailingStore(new SqliteDriver(join(dir, 'tether.db'))) } });
    try {
      const key = newKey();
      const r = await as.post(
        'c',
        '/token',
        { grant_type: 'client_credentials', client_id: 'c', audience: OPEN },
        { headers: { dpop: await createDpopProof({ privateKey: key, htm: 'POST', htu: `${as.server.url}/token` }) } },
      );
      assertError(r, 400, 'invalid_dpop_proof', 'store down');
    } finally {
      await as.close();
      removeDir(dir);
    }
  });
});

describe('DPoP nonces at the token endpoint (RFC 9449 section 8)', () => {
  const LIFETIME = 60;
  let as: TestAs;
  before(async () => {
    as = await startTestAs({
      tokens: { dpopNonce: { required: true, lifetime: LIFETIME } },
      clients: [standardClient('c', { tls_session_bound_access_tokens: false })],
    });
  });
  after(() => as.close());

  const request = async (proofOptions: Partial<CreateDpopProofOptions> & { privateKey: KeyObject }) =>
    as.post(
      'c',
      '/token',
      { grant_type: 'client_credentials', client_id: 'c', audience: OPEN },
      { headers: { dpop: await createDpopProof({ htm: 'POST', htu: `${as.server.url}/token`, ...proofOptions }) } },
    );

  test('a proof without a nonce gets use_dpop_nonce and a DPoP-Nonce; with it the token is issued, with a fresh nonce', async () => {
    const key = newKey();
    const refused = await request({ privateKey: key });
    assertError(refused, 400, 'use_dpop_nonce', 'no nonce');
    assert.equal(refused.json?.error_description, 'Authorization server requires nonce in DPoP proof');
    const nonce = refused.headers['dpop-nonce'] as string;
    assert.match(nonce, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const ok = await request({ privateKey: key, nonce });
    assert.equal(assertOk(ok, 'with the nonce').token_type, 'DPoP');
    const fresh = ok.headers['dpop-nonce'] as string;
    assert.ok(fresh !== undefined && fresh !== nonce, 'every response carries a new nonce');
    assert.equal((await request({ privateKey: key, nonce: fresh })).status, 200, 'the new nonce works too');
  });

  test('forged, altered and expired nonces are refused with a new one', async () => {
    const key = newKey();
    const nonce = (await request({ privateKey: key })).headers['dpop-nonce'] as string;
    const [body, mac] = nonce.split('.') as [string, string];
    for (const bad of ['made-up', `${body}.${'A'.repeat(mac.length)}`, `${body.slice(0, -2)}AA.${mac}`, `${nonce}.x`]) {
      const r = await request({ privateKey: key, nonce: bad });
      assertError(r, 400, 'use_dpop_nonce', bad);
      assert.ok(typeof r.headers['dpop-nonce'] === 'string');
    }
    as.skew.ms += LIFETIME * 1000; // the next window: still accepted
    assert.equal((await request({ privateKey: key, nonce })).status, 200, 'accepted in the following window');
    as.skew.ms += LIFETIME * 1000; // two windows later: expired
    assertError(await request({ privateKey: key, nonce }), 400, 'use_dpop_nonce', 'expired nonce');
    as.skew.ms = 0;
  });

  test("core's DpopClient picks up the nonce and retries once on its own", async () => {
    const cred = as.pki.clients.c!;
    const client = new DpopClient({ privateKey: newKey(), cert: cred.cert, key: cred.key, ca: as.pki.ca.cert });
    try {
      const r = await client.request(`${as.server.url}/token`, {
        method: 'POST',
        headers: FORM,
        body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'c', audience: OPEN }).toString(),
      });
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(client.stats.nonceRetries, 1);
    } finally {
      await client.close();
    }
  });
});
