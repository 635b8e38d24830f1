/**
 * Clock faults at the authorization server (issue 7): the AS clock (StartOptions.clock, moved by
 * hand) at each side of every time tolerance the server implements, over real mTLS on
 * 127.0.0.1:0. Client-side artefacts (client assertions, DPoP proofs, Session-Binding-Proofs)
 * carry explicit `iat`/`exp`/`nbf`; the server's clock is set to whole seconds so every boundary
 * is exact. Each refusal is checked for its HTTP status, its `error` code and (through the
 * failure metric) the internal reason, so a refusal for an unrelated cause does not pass.
 *
 * Tolerances (defaults read from the configuration schema): clockSkew S, tokens.lifetime L,
 * proofMaxAge P, dpopProofMaxAge D, private_key_jwt.maxAssertionLifetime M, rotationInterval R.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { SignJWT, exportJWK, type JWTPayload } from 'jose';
import { PROOF_HEADER, createSessionBindingProof, deriveSessionExporter } from '@tether/core';
import { createDpopProof } from '@tether/core/dpop';
import { JWT_BEARER_ASSERTION, configSchema, type TokenClient, type TokenRequestResult } from '@tether/as';
import { ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, claimsOf, clientWith, headerOf, spiffe, standardClient, startTestAs, type TestAs } from './helpers/setup.js';

// Defaults of the configuration (the servers below run with them).
const DEFAULTS = configSchema.parse({ tls: {}, dataDir: '/unused' });
const S = DEFAULTS.tokens.clockSkew;
const L = DEFAULTS.tokens.lifetime;
const P = DEFAULTS.tokens.proofMaxAge;
const D = DEFAULTS.tokens.dpopProofMaxAge;
const M = DEFAULTS.clientAuthentication.private_key_jwt.maxAssertionLifetime;
const R = DEFAULTS.signingKeys.rotationInterval;

const OPEN = 'https://open.example';
/** Server time base: an hour ahead of real time, so a step back of ten minutes stays inside certificate validity. */
const T0 = Math.floor(Date.now() / 1000) + 3600;

/** Sum of the failure counter for an internal refusal reason. */
async function refusals(as: TestAs, reason: string): Promise<number> {
  const values = (await as.server.metrics.failures.get()).values;
  return values.filter((v) => v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
}

/** Run `send`; assert exact status, error code, no token, and that `reason` was counted once. */
async function assertRefused(as: TestAs, send: () => Promise<TokenRequestResult>, status: number, error: string, reason: string, label: string): Promise<void> {
  const before = await refusals(as, reason);
  const r = await send();
  assert.equal(r.status, status, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.json?.error, error, `${label}: ${r.text}`);
  assert.equal(r.json?.access_token, undefined, `${label}: no token`);
  assert.equal(await refusals(as, reason), before + 1, `${label}: refused for ${reason}`);
}

/** Assert a 200 with an access token issued at server time `now`; returns the token. */
function assertIssued(r: TokenRequestResult, now: number, label: string): string {
  assert.equal(r.status, 200, `${label}: ${r.status} ${r.text}`);
  const token = r.json?.access_token;
  assert.equal(typeof token, 'string', label);
  const c = claimsOf(token as string);
  assert.equal(c.iat, now, `${label}: iat follows the server clock`);
  assert.equal((c.exp as number) - (c.iat as number), r.json?.expires_in, `${label}: exp = iat + expires_in`);
  assert.ok((r.json?.expires_in as number) > 0, label);
  return token as string;
}

/** A TLS connection held open so that proofs can be built on its exporter before the request goes out. */
interface PinnedConnection {
  ekm(): Buffer;
  post(path: string, params: Record<string, string>, headers?: Record<string, string>): Promise<TokenRequestResult>;
  close(): void;
}

async function pinnedConnection(as: TestAs, name: string): Promise<PinnedConnection> {
  const cred = as.pki.clients[name]!;
  const url = new URL(as.server.url);
  const socket: TLSSocket = tlsConnect({ host: url.hostname, port: Number(url.port), cert: cred.cert, key: cred.key, ca: as.pki.ca.cert, minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  // Every request of this agent goes over the one socket whose exporter the proofs carry.
  agent.createConnection = () => socket;
  return {
    ekm: () => deriveSessionExporter(socket),
    post: (path, params, headers = {}) =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(`${as.server.url}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
        req.on('error', reject);
        req.on('response', (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: Record<string, unknown> | undefined;
            try {
              json = JSON.parse(text) as Record<string, unknown>;
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
          });
        });
        req.end(new URLSearchParams(params).toString());
      }),
    close: () => {
      agent.destroy();
      socket.destroy();
    },
  };
}

describe('clock faults at the authorization server', () => {
  let as: TestAs;
  const clock = { s: T0 };
  const setClock = (s: number) => {
    clock.s = s;
  };
  const pkjKey: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const dpopKey: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  let anonymous: TokenClient;

  before(async () => {
    const pkjJwk = { ...(await exportJWK(createPublicKey(pkjKey))), kid: 'pkj-1', alg: 'ES256' };
    as = await startTestAs(
      {
        clients: [
          standardClient('a'),
          standardClient('b'),
          standardClient('c', { tls_session_bound_access_tokens: false }),
          standardClient('d', { access_token_lifetime: 3600 }),
          standardClient('thief'),
          { client_id: 'pkj', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [pkjJwk] }, audiences: ['*'] },
        ],
      },
      { start: { clock: () => clock.s * 1000 } },
    );
    anonymous = clientWith(undefined, as.pki);
  });

  after(async () => {
    anonymous.close();
    await as.close();
  });

  test('the test servers run with the default tolerances the constants name', () => {
    const t = as.server.config.tokens;
    assert.deepEqual([t.clockSkew, t.lifetime, t.proofMaxAge, t.dpopProofMaxAge], [S, L, P, D]);
    assert.equal(as.server.config.clientAuthentication.private_key_jwt.maxAssertionLifetime, M);
  });

  // -------------------------------------------------------------------------------------------
  // 1. private_key_jwt client assertions (RFC 7523 section 3)

  describe('private_key_jwt client assertion', () => {
    const assertion = (claims: JWTPayload, omitExp = false) => {
      const payload: JWTPayload = { iss: 'pkj', sub: 'pkj', aud: as.server.issuer, jti: randomUUID(), exp: clock.s + 60, ...claims };
      if (omitExp) delete payload.exp;
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'pkj-1' }).sign(pkjKey);
    };
    const send = (jwt: string) =>
      anonymous.post(`${as.server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: jwt, audience: OPEN });
    const accepted = async (claims: JWTPayload, label: string) => assertIssued(await send(await assertion(claims)), clock.s, label);
    const refused = async (claims: JWTPayload, reason: string, label: string, omitExp = false) => {
      const jwt = await assertion(claims, omitExp);
      await assertRefused(as, () => send(jwt), 401, 'invalid_client', reason, label);
    };

    test('exp in the past: accepted while now < exp + S, refused from exp + S on', async () => {
      setClock(T0);
      await accepted({ exp: T0 }, 'exp = now (inside skew)');
      await accepted({ exp: T0 - S + 1 }, 'exp = now - S + 1');
      await refused({ exp: T0 - S }, 'assertion_invalid', 'exp = now - S (boundary: exp + S is not after now)');
      await refused({ exp: T0 - S - 1 }, 'assertion_invalid', 'exp = now - S - 1');
    });

    test('iat in the future: accepted up to now + S, refused at now + S + 1', async () => {
      setClock(T0);
      await accepted({ iat: T0 + S }, 'iat = now + S');
      await refused({ iat: T0 + S + 1 }, 'assertion_iat_future', 'iat = now + S + 1');
    });

    test('nbf in the future: accepted up to now + S, refused at now + S + 1', async () => {
      setClock(T0);
      await accepted({ nbf: T0 + S }, 'nbf = now + S');
      await refused({ nbf: T0 + S + 1 }, 'assertion_invalid', 'nbf = now + S + 1');
    });

    test('lifetime: exp at most now + maxAssertionLifetime + S; exp is required', async () => {
      setClock(T0);
      await accepted({ exp: T0 + M + S }, 'exp = now + M + S');
      await refused({ exp: T0 + M + S + 1 }, 'assertion_lifetime', 'exp = now + M + S + 1');
      await refused({ exp: T0 + 10 * 365 * 86_400 }, 'assertion_lifetime', 'ten-year assertion');
      await refused({}, 'assertion_invalid', 'no exp', true);
    });

    test('no maximum age on iat (RFC 7523: MAY): an old iat with a near exp is accepted', async () => {
      // The exp cap (M + S ahead of now) and single-use jti bound what an assertion is good for.
      setClock(T0);
      await accepted({ iat: T0 - 3600, exp: T0 + 10 }, 'iat an hour old, exp in 10 s');
    });

    test('jti is remembered for as long as the assertion is acceptable (until exp + S)', async () => {
      setClock(T0);
      const exp = T0 + 10;
      const jwt = await assertion({ exp });
      assertIssued(await send(jwt), T0, 'first use');
      // The last second the assertion would still be accepted; maintenance prunes first.
      setClock(exp + S - 1);
      await as.server.runMaintenance();
      await assertRefused(as, () => send(jwt), 401, 'invalid_client', 'assertion_replayed', 'replay at exp + S - 1 after pruning');
      setClock(exp + S);
      await assertRefused(as, () => send(jwt), 401, 'invalid_client', 'assertion_invalid', 'replay at exp + S: expired');
    });
  });

  // -------------------------------------------------------------------------------------------
  // 2. DPoP proof at the token endpoint (RFC 9449 section 4.3)

  describe('DPoP proof at the token endpoint', () => {
    const proof = (iat: number) => createDpopProof({ privateKey: dpopKey, htm: 'POST', htu: `${as.server.url}/token`, iat });
    const send = (dpop: string) => as.post('c', '/token', { grant_type: 'client_credentials', client_id: 'c', audience: OPEN }, { headers: { dpop } });

    test('iat: accepted in [now - D - S, now + S], invalid_dpop_proof one second outside', async () => {
      setClock(T0);
      const r = await send(await proof(T0 - D - S));
      assertIssued(r, T0, 'iat = now - D - S');
      assert.equal(r.json?.token_type, 'DPoP');
      assertIssued(await send(await proof(T0 + S)), T0, 'iat = now + S');
      const stale = await proof(T0 - D - S - 1);
      await assertRefused(as, () => send(stale), 400, 'invalid_dpop_proof', 'dpop_iat_stale', 'iat = now - D - S - 1');
      const future = await proof(T0 + S + 1);
      await assertRefused(as, () => send(future), 400, 'invalid_dpop_proof', 'dpop_iat_future', 'iat = now + S + 1');
    });

    test('jti is remembered for as long as the proof is acceptable (until iat + D + S)', async () => {
      setClock(T0);
      const p = await proof(T0);
      assertIssued(await send(p), T0, 'first use');
      setClock(T0 + D + S);
      await as.server.runMaintenance();
      await assertRefused(as, () => send(p), 400, 'invalid_dpop_proof', 'dpop_jti_replay', 'replay at iat + D + S after pruning');
      setClock(T0 + D + S + 1);
      await assertRefused(as, () => send(p), 400, 'invalid_dpop_proof', 'dpop_iat_stale', 'replay at iat + D + S + 1: stale');
    });
  });

  // -------------------------------------------------------------------------------------------
  // 3. Session-Binding-Proof of the holder at token exchange (NOTES decision 4 (a))

  describe('Session-Binding-Proof at token exchange (holder path)', () => {
    const holderProof = (name: string, conn: PinnedConnection, token: string, iat: number, jti?: string) =>
      createSessionBindingProof({
        privateKey: createPrivateKey(as.pki.clients[name]!.key),
        certificate: new X509Certificate(as.pki.clients[name]!.cert),
        accessToken: token,
        ekm: conn.ekm(),
        iat,
        ...(jti === undefined ? {} : { jti }),
      });
    const exchange = (name: string, conn: PinnedConnection, token: string, proof: string) =>
      conn.post(
        '/token',
        { grant_type: TOKEN_EXCHANGE, client_id: name, subject_token: token, subject_token_type: ACCESS_TOKEN_TYPE, audience: OPEN },
        { [PROOF_HEADER]: proof },
      );

    test('iat: accepted in [now - P - S, now + S], invalid_grant one second outside', async () => {
      setClock(T0);
      const token = await as.token('a', { audience: spiffe('b') });
      const conn = await pinnedConnection(as, 'a');
      try {
        assertIssued(await exchange('a', conn, token, await holderProof('a', conn, token, T0 - P - S)), T0, 'iat = now - P - S');
        assertIssued(await exchange('a', conn, token, await holderProof('a', conn, token, T0 + S)), T0, 'iat = now + S');
        const stale = await holderProof('a', conn, token, T0 - P - S - 1);
        await assertRefused(as, () => exchange('a', conn, token, stale), 400, 'invalid_grant', 'proof_iat_stale', 'iat = now - P - S - 1');
        const future = await holderProof('a', conn, token, T0 + S + 1);
        await assertRefused(as, () => exchange('a', conn, token, future), 400, 'invalid_grant', 'proof_iat_future', 'iat = now + S + 1');
      } finally {
        conn.close();
      }
    });

    test('jti is remembered for as long as the proof is acceptable (retention min(iat + P + S, exp + S) + 1, the resource server rule)', async () => {
      // Client d's tokens live longer than the proof window, so the proof's own age is the limit.
      setClock(T0);
      const token = await as.token('d', { audience: spiffe('b') });
      assert.ok((claimsOf(token).exp as number) > T0 + P + S + 1);
      const conn = await pinnedConnection(as, 'd');
      try {
        const proof = await holderProof('d', conn, token, T0, randomUUID());
        assertIssued(await exchange('d', conn, token, proof), T0, 'first use');
        setClock(T0 + P + S);
        await as.server.runMaintenance();
        await assertRefused(as, () => exchange('d', conn, token, proof), 400, 'invalid_grant', 'proof_jti_replay', 'replay at iat + P + S after pruning');
        setClock(T0 + P + S + 1);
        await assertRefused(as, () => exchange('d', conn, token, proof), 400, 'invalid_grant', 'proof_iat_stale', 'replay at iat + P + S + 1: stale');
      } finally {
        conn.close();
      }
    });
  });

  // -------------------------------------------------------------------------------------------
  // 4. subject_token and actor_token validity at token exchange (own tokens: no skew, exp exclusive)

  describe('subject_token and actor_token expiry', () => {
    test('subject_token: exchanged at exp - 1 (successor capped at its exp); invalid_grant at exp and exp + S', async () => {
      setClock(T0);
      const subject = await as.token('a', { audience: spiffe('b') });
      const exp = claimsOf(subject).exp as number;
      assert.equal(exp, T0 + L);
      setClock(exp - 1);
      const r = await as.exchange('b', subject, { audience: OPEN });
      const successor = assertIssued(r, exp - 1, 'at exp - 1');
      assert.equal(r.json?.expires_in, 1);
      assert.equal(claimsOf(successor).exp, exp, 'never outlives the subject token');
      setClock(exp);
      await assertRefused(as, () => as.exchange('b', subject, { audience: OPEN }), 400, 'invalid_grant', 'subject_expired', 'at exp');
      setClock(exp + S);
      await assertRefused(as, () => as.exchange('b', subject, { audience: OPEN }), 400, 'invalid_grant', 'subject_expired', 'at exp + S');
    });

    test('actor_token: accepted at exp - 1; invalid_grant at exp and exp + S', async () => {
      setClock(T0);
      const actor = await as.token('b', { audience: OPEN });
      const actorExp = claimsOf(actor).exp as number;
      setClock(T0 + 100);
      const subject = await as.token('a', { audience: spiffe('b') });
      const send = () => as.exchange('b', subject, { audience: OPEN, actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE });
      setClock(actorExp - 1);
      const ok = assertIssued(await send(), actorExp - 1, 'actor at exp - 1');
      assert.deepEqual(claimsOf(ok).act, { sub: 'b', act: { sub: 'a' } });
      setClock(actorExp);
      await assertRefused(as, send, 400, 'invalid_grant', 'actor_expired', 'actor at exp');
      setClock(actorExp + S);
      await assertRefused(as, send, 400, 'invalid_grant', 'actor_expired', 'actor at exp + S');
    });
  });

  // -------------------------------------------------------------------------------------------
  // 5. Introspection (RFC 7662) and revocation records (RFC 7009)

  describe('introspection and revocation', () => {
    const introspect = async (token: string) => {
      const r = await as.post('a', '/introspect', { client_id: 'a', token });
      assert.equal(r.status, 200, r.text);
      return r.json as Record<string, unknown>;
    };

    test('a token is active until exp - 1 and exactly {"active":false} from exp on', async () => {
      setClock(T0);
      const token = await as.token('a', { audience: OPEN });
      const exp = claimsOf(token).exp as number;
      setClock(exp - 1);
      const live = await introspect(token);
      assert.equal(live.active, true);
      assert.equal(live.exp, exp);
      for (const at of [exp, exp + 1, exp + S, exp + S + 1]) {
        setClock(at);
        assert.deepEqual(await introspect(token), { active: false }, `at exp + ${at - exp}`);
      }
    });

    test('a revocation record lives until exp + S and is pruned after; the token stays inactive', async () => {
      setClock(T0);
      const token = await as.token('a', { audience: OPEN });
      const { exp, jti } = claimsOf(token) as { exp: number; jti: string };
      setClock(T0 + 10);
      assert.equal((await as.post('a', '/revoke', { client_id: 'a', token })).status, 200);
      assert.equal(await as.server.store.isRevoked(jti), true);
      setClock(exp - 1);
      assert.deepEqual(await introspect(token), { active: false }, 'revoked before exp');
      setClock(exp + S);
      await as.server.runMaintenance();
      assert.equal(await as.server.store.isRevoked(jti), true, 'kept at exp + S');
      setClock(exp + S + 1);
      await as.server.runMaintenance();
      assert.equal(await as.server.store.isRevoked(jti), false, 'pruned at exp + S + 1');
      assert.deepEqual(await introspect(token), { active: false }, 'expired after pruning');
    });

    test('revoking an expired token: recorded up to exp + S, ignored (200, no record) after', async () => {
      setClock(T0);
      const atBoundary = await as.token('a', { audience: OPEN });
      const late = await as.token('a', { audience: OPEN });
      const exp = claimsOf(atBoundary).exp as number;
      setClock(exp + S);
      assert.equal((await as.post('a', '/revoke', { client_id: 'a', token: atBoundary })).status, 200);
      assert.equal(await as.server.store.isRevoked(claimsOf(atBoundary).jti as string), true, 'recorded at exp + S');
      setClock(exp + S + 1);
      assert.equal((await as.post('a', '/revoke', { client_id: 'a', token: late })).status, 200);
      assert.equal(await as.server.store.isRevoked(claimsOf(late).jti as string), false, 'not recorded at exp + S + 1');
    });
  });

  // -------------------------------------------------------------------------------------------
  // tls_client_auth: the certificate validity window at the AS clock (no skew)

  test('tls_client_auth certificate: accepted from notBefore to notAfter inclusive, invalid_client one second outside', async () => {
    const cert = new X509Certificate(as.pki.clients.a!.cert);
    const from = Date.parse(cert.validFrom) / 1000;
    const to = Date.parse(cert.validTo) / 1000;
    const send = () => as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'a', audience: OPEN });
    for (const at of [from, to]) {
      setClock(at);
      assertIssued(await send(), at, `at ${at === from ? 'notBefore' : 'notAfter'}`);
    }
    for (const at of [from - 1, to + 1]) {
      setClock(at);
      await assertRefused(as, send, 401, 'invalid_client', 'certificate_expired', `at ${at < from ? 'notBefore - 1' : 'notAfter + 1'}`);
    }
    setClock(T0);
  });

  // -------------------------------------------------------------------------------------------
  // 7. The AS clock steps back ten minutes (NTP step)
  // Not asserted (a limitation, not a rule): state pruned before the step (revocation records past
  // exp + S, remembered jtis past their retention) is gone, so a step back larger than the time
  // since pruning lets such a token or assertion pass the time checks again.

  test('clock stepped back 600 s: new tokens follow the new clock, old state keeps refusing', async () => {
    const STEP = 600;
    // Before the step: a token that expired already, a live one, a revoked one, a used assertion.
    setClock(T0 - 1000);
    const expired = await as.token('a', { audience: spiffe('b') });
    setClock(T0);
    const live = await as.token('a', { audience: spiffe('b') });
    const revoked = await as.token('a', { audience: OPEN });
    assert.equal((await as.post('a', '/revoke', { client_id: 'a', token: revoked })).status, 200);
    const jwt = await new SignJWT({ iss: 'pkj', sub: 'pkj', aud: as.server.issuer, jti: randomUUID(), exp: T0 + 10 }).setProtectedHeader({ alg: 'ES256', kid: 'pkj-1' }).sign(pkjKey);
    const sendAssertion = () =>
      anonymous.post(`${as.server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: jwt, audience: OPEN });
    assertIssued(await sendAssertion(), T0, 'assertion before the step');

    setClock(T0 - STEP);
    await as.server.runMaintenance();
    const now = T0 - STEP;

    // Issued tokens follow the new clock: iat = now, exp = now + L.
    const fresh = claimsOf(assertIssued(await as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'a', audience: OPEN }), now, 'after the step'));
    assert.equal(fresh.exp, now + L);

    // A token issued before the step (iat now in the future) is exchanged: the successor starts
    // now, and never outlives its subject token.
    const r = await as.exchange('b', live, { audience: OPEN });
    const successor = claimsOf(assertIssued(r, now, 'exchange of a pre-step token'));
    assert.ok((successor.exp as number) > (successor.iat as number));
    assert.ok((successor.exp as number) <= (claimsOf(live).exp as number));
    assert.equal(successor.exp, now + L);

    // A token whose exp is before the new clock stays expired.
    assert.ok((claimsOf(expired).exp as number) <= now);
    await assertRefused(as, () => as.exchange('b', expired, { audience: OPEN }), 400, 'invalid_grant', 'subject_expired', 'pre-step expired token');

    // The revocation record survives the step (pruning follows the clock back too).
    assert.equal(await as.server.store.isRevoked(claimsOf(revoked).jti as string), true);
    const intro = await as.post('a', '/introspect', { client_id: 'a', token: revoked });
    assert.deepEqual(intro.json, { active: false });

    // The used assertion is no good after the step: its exp is now too far ahead.
    await assertRefused(as, sendAssertion, 401, 'invalid_client', 'assertion_lifetime', 'used assertion after the step');
    setClock(T0);
  });
});

// ---------------------------------------------------------------------------------------------
// 6. Key rotation by the clock (keys.ts): rotation at activatedAt + R, retired key published until
// retiredAt + maxTokenLifetime + S.

test('key rotation timing: rotates at activatedAt + R, retired key published through publishUntil', async () => {
  const clock = { s: T0 };
  const as = await startTestAs({}, { start: { clock: () => clock.s * 1000 } });
  try {
    const kids = () => as.server.jwks().keys.map((k) => k.kid as string);
    const first = headerOf(await as.token('a', { audience: OPEN })).kid as string;
    clock.s = T0 + R - 1;
    await as.server.runMaintenance();
    const old = await as.token('a', { audience: OPEN });
    assert.equal(headerOf(old).kid, first, 'no rotation at activatedAt + R - 1');
    clock.s = T0 + R;
    await as.server.runMaintenance();
    const second = headerOf(await as.token('a', { audience: OPEN })).kid as string;
    assert.notEqual(second, first, 'rotated at activatedAt + R');
    const retired = (await as.server.store.listKeys()).find((k) => k.kid === first);
    assert.equal(retired?.state, 'retired');
    const publishUntil = T0 + R + L + S;
    assert.equal(retired?.publishUntil, publishUntil);

    // The last token of the retired key still introspects as active up to its exp - 1.
    clock.s = (claimsOf(old).exp as number) - 1;
    const intro = await as.post('a', '/introspect', { client_id: 'a', token: old });
    assert.equal(intro.json?.active, true, intro.text);

    clock.s = publishUntil;
    await as.server.runMaintenance();
    assert.ok(kids().includes(first), 'published at publishUntil');
    clock.s = publishUntil + 1;
    await as.server.runMaintenance();
    assert.ok(!kids().includes(first), 'dropped at publishUntil + 1');
    assert.ok(kids().includes(second));
  } finally {
    await as.close();
  }
});
