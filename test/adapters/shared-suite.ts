/**
 * One behavioural suite for every adapter and transport. An adapter test file calls
 * `registerAdapterSuite` with a factory that serves `GET /api/echo` (200 with
 * `{principal, method, path}`) behind the given verifier; every case starts its own server and
 * verifier so the counters it asserts are exact.
 *
 * Honest traffic goes through `SessionBoundClient`; attacks and malformed requests go through raw
 * mTLS connections (./raw.ts) whose exporter the test derives and signs over itself.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { constants } from 'node:http2';
import { before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  EXPORTER_LABEL,
  certificateThumbprint,
  parseWwwAuthenticate,
  type AccessTokenValidator,
  type Challenge,
  type SessionBoundVerifier,
  type SessionBoundVerifierOptions,
} from '@tether/core';
import { SessionBoundClient, type SessionBoundClientOptions } from '@tether/core/client';
import type { DevPki } from '@tether/pki';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { testTokenValidator, testVerifier } from '../helpers/servers.js';
import { openRawConnection, type RawConnection } from './raw.js';
import { connectWithoutSettingsAck } from '../helpers/h2-unacked.js';

export const ECHO_PATH = '/api/echo';

export interface AdapterServer {
  /** Origin, `https://127.0.0.1:<port>`. */
  url: string;
  close(): Promise<void>;
}

export type AdapterFactory = (pki: DevPki, verifier: SessionBoundVerifier, options: { allowTls12: boolean }) => Promise<AdapterServer>;

export interface AdapterUnderTest {
  name: string;
  /** What the server speaks; the clients use the same. */
  protocol: 'h2' | 'http/1.1';
  start: AdapterFactory;
}

interface AnyResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string | Buffer;
}

type Who = 'client' | 'attacker' | 'other';

function text(body: string | Buffer): string {
  return typeof body === 'string' ? body : body.toString('utf8');
}

/**
 * A refusal: exact status; `Cache-Control: no-store`; a JSON body of exactly
 * `{error, error_description}`; for 401/403 one Bearer challenge whose `error` is `error` (a bare
 * `Bearer` when `error` is undefined). A 400 carries the challenge too (RFC 6750 section 3.1
 * lets `invalid_request` travel in `WWW-Authenticate`), so clients that only parse challenges see it.
 */
export function assertRefusal(res: AnyResponse, status: number, error: string | undefined): { body: Record<string, string>; challenge: Challenge | undefined } {
  const raw = text(res.body);
  assert.equal(res.status, status, `status ${res.status}: ${raw}`);
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = JSON.parse(raw) as Record<string, string>;
  assert.deepEqual(Object.keys(body).sort(), ['error', 'error_description'], 'body is exactly {error, error_description}');
  const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
  assert.equal(challenges.length, 1, `one challenge: ${String(res.headers['www-authenticate'])}`);
  const challenge = challenges[0] as Challenge;
  assert.equal(challenge.scheme, 'bearer');
  if (error === undefined) {
    assert.equal(res.headers['www-authenticate'], 'Bearer');
  } else {
    assert.equal(challenge.params.error, error);
    assert.equal(body.error, error);
    assert.equal(challenge.params.error_description, body.error_description);
  }
  return { body, challenge };
}

function principalOf(res: AnyResponse): Record<string, unknown> {
  assert.equal(res.status, 200, text(res.body));
  return (JSON.parse(text(res.body)) as { principal: Record<string, unknown> }).principal;
}

function bearer(token: string, ...proofs: string[]): Array<[string, string]> {
  return [['authorization', `Bearer ${token}`], ...proofs.map((p): [string, string] => ['session-binding-proof', p])];
}

/** Poll `condition` until it holds (close events arrive asynchronously). */
async function eventually(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * A token validator that holds its first `held` calls until `release()`: the test decides when
 * step b (token validation) of those requests finishes, so other streams can be sent while they
 * are still being verified.
 */
function gatedValidator(inner: AccessTokenValidator, held: number) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const state = {
    waiting: 0,
    release,
    validator: {
      async validate(token: string) {
        if (held > 0) {
          held--;
          state.waiting++;
          await gate;
          state.waiting--;
        }
        return inner.validate(token);
      },
    } satisfies AccessTokenValidator,
  };
  return state;
}

/** Whether `promise` has settled, checked without waiting for it. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  const pending = Symbol('pending');
  const winner = await Promise.race([promise.then(() => true, () => true), sleep(0).then(() => pending)]);
  return winner !== pending;
}

export function registerAdapterSuite(adapter: AdapterUnderTest): void {
  describe(adapter.name, () => {
    let pki: DevPki;
    let issuer: TestIssuer;

    before(async () => {
      pki = await testPki();
      issuer = await TestIssuer.create();
    });

    const identity = (who: Who) => pki.clients[who] as { cert: string; key: string };

    async function serve(t: TestContext, options: Partial<SessionBoundVerifierOptions> = {}, { allowTls12 = false } = {}) {
      const verifier = testVerifier(issuer, options);
      const server = await adapter.start(pki, verifier, { allowTls12 });
      t.after(() => server.close());
      return { verifier, server, url: `${server.url}${ECHO_PATH}` };
    }

    function client(t: TestContext, options: Partial<SessionBoundClientOptions> = {}, who: Who = 'client'): SessionBoundClient {
      const c = new SessionBoundClient({ ...identity(who), ca: pki.ca.cert, protocol: adapter.protocol, ...options });
      t.after(() => c.close());
      return c;
    }

    async function raw(t: TestContext, server: AdapterServer, who: Who, session?: Buffer): Promise<RawConnection> {
      const connection = await openRawConnection(server.url, identity(who), { protocol: adapter.protocol, ca: pki.ca.cert, ...(session === undefined ? {} : { session }) });
      t.after(() => connection.close());
      return connection;
    }

    const bound = (who: Who, claims: Record<string, unknown> = {}) => issuer.sessionBound(identity(who).cert, claims);

    async function honestThousand(t: TestContext, tls12: boolean): Promise<void> {
      const { verifier, url } = await serve(t, tls12 ? { tlsVersions: ['TLSv1.2'] } : {}, { allowTls12: tls12 });
      const c = client(t, tls12 ? { allowTls12: true, maxTlsVersion: 'TLSv1.2' } : {});
      const token = await bound('client', { act: { sub: 'agent-1' } });
      for (let i = 0; i < 1000; i++) {
        const res = await c.request(url, { token });
        if (res.status !== 200) assert.fail(`request ${i}: ${res.status} ${text(res.body)}`);
        if (i === 0) {
          const principal = principalOf(res);
          assert.equal(principal.sub, 'user-1');
          assert.equal(principal.client_id, 'client');
          assert.equal(principal.scope, 'read write');
          assert.deepEqual(principal.act, { sub: 'agent-1' });
          assert.equal(principal.binding, 'session');
          assert.deepEqual(principal.cnf, { 'x5t#S256': certificateThumbprint(new X509Certificate(identity('client').cert)), tls_exp: EXPORTER_LABEL });
        }
      }
      assert.equal(c.stats.connectionsOpened, 1);
      assert.equal(c.stats.proofsSigned, 1);
      assert.equal(c.stats.retries, 0);
      assert.equal(verifier.stats.proofVerifications, 1);
      assert.equal(verifier.stats.cacheHits, 999);
      assert.equal(verifier.stats.accepted, 1000);
      assert.deepEqual(verifier.stats.failures, {});
    }

    it('honest client: 1000 requests on one TLS 1.3 connection, one proof signed, one verification', async (t) => {
      await honestThousand(t, false);
    });

    it('honest client over TLS 1.2 (allowTls12 on both sides, client capped at 1.2): the exporter still matches', async (t) => {
      // The verifier accepts only TLSv1.2, so every 200 also proves the connection negotiated 1.2.
      await honestThousand(t, true);
    });

    if (adapter.protocol === 'h2') {
      it('100 tokens x 10 concurrent requests on one HTTP/2 connection: 100 proofs, 100 verifications', async (t) => {
        const { verifier, url } = await serve(t);
        const c = client(t);
        const tokens = await Promise.all(Array.from({ length: 100 }, (_, i) => bound('client', { sub: `user-${i}` })));
        await Promise.all(
          tokens.flatMap((token, i) =>
            Array.from({ length: 10 }, async () => {
              const res = await c.request(url, { token });
              assert.equal(principalOf(res).sub, `user-${i}`);
            }),
          ),
        );
        assert.equal(c.stats.connectionsOpened, 1);
        assert.equal(c.stats.proofsSigned, 100);
        assert.equal(c.stats.retries, 0);
        assert.equal(verifier.stats.proofVerifications, 100);
        assert.equal(verifier.stats.accepted, 1000);
        assert.equal(verifier.stats.cacheHits, 900);
        assert.equal(verifier.cache.size, 100);
      });
    }

    it('T1: a proof captured on connection 1, replayed on connection 2 by the same certificate holder -> 401 invalid_proof', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const first = await raw(t, server, 'client');
      const captured = await first.proof(token);
      principalOf(await first.request({ path: ECHO_PATH, headers: bearer(token, captured) }));
      const second = await raw(t, server, 'client');
      assert.notDeepEqual(second.ekm, first.ekm);
      const { body } = assertRefusal(await second.request({ path: ECHO_PATH, headers: bearer(token, captured) }), 401, 'invalid_proof');
      assert.match(body.error_description as string, /exporter mismatch/);
      assert.equal(verifier.stats.failures.ekm_mismatch, 1);
    });

    it('a resumed TLS 1.3 session is a new connection: the earlier proof fails (exporter mismatch), a fresh one works', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const first = await raw(t, server, 'client');
      const earlier = await first.proof(token);
      principalOf(await first.request({ path: ECHO_PATH, headers: bearer(token, earlier) }));
      const ticket = first.session();
      assert.ok(ticket, 'the server issued a session ticket');
      const resumed = await raw(t, server, 'client', ticket);
      assert.equal(resumed.socket.isSessionReused(), true);
      assert.notDeepEqual(resumed.ekm, first.ekm);
      assertRefusal(await resumed.request({ path: ECHO_PATH, headers: bearer(token, earlier) }), 401, 'invalid_proof');
      assert.equal(verifier.stats.failures.ekm_mismatch, 1);
      const principal = principalOf(await resumed.request({ path: ECHO_PATH, headers: bearer(token, await resumed.proof(token)) }));
      assert.equal(principal.binding, 'session', 'the resumed connection still knows the client certificate');
    });

    it('T2: the token presented by a host with another certificate and its own proof -> 401 invalid_token', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const attacker = await raw(t, server, 'attacker');
      const ownProof = await attacker.proof(token); // valid signature, this connection's exporter
      assertRefusal(await attacker.request({ path: ECHO_PATH, headers: bearer(token, ownProof) }), 401, 'invalid_token');
      assert.equal(verifier.stats.failures.certificate_mismatch, 1);
      assert.equal(verifier.stats.proofVerifications, 0, 'refused at step c, before any proof work');
    });

    it('T4: token and proof stolen together, replayed on the attacker connection -> 401 invalid_token', async (t) => {
      // Step c (certificate binding) runs before steps e-h, so the stolen pair is refused as a token
      // bound to another certificate; the proof (victim key, victim exporter) would fail e and f too.
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const victim = await raw(t, server, 'client');
      const stolen = await victim.proof(token);
      principalOf(await victim.request({ path: ECHO_PATH, headers: bearer(token, stolen) }));
      const attacker = await raw(t, server, 'attacker');
      assertRefusal(await attacker.request({ path: ECHO_PATH, headers: bearer(token, stolen) }), 401, 'invalid_token');
      assert.equal(verifier.stats.failures.certificate_mismatch, 1);
      assert.equal(verifier.stats.proofVerifications, 1, 'only the victim proof was verified');
    });

    it('a proof made for another token -> 401 invalid_proof (ath mismatch)', async (t) => {
      const { verifier, server } = await serve(t);
      const [tokenA, tokenB] = await Promise.all([bound('client', { sub: 'a' }), bound('client', { sub: 'b' })]);
      const connection = await raw(t, server, 'client');
      const proofForA = await connection.proof(tokenA);
      assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(tokenB, proofForA) }), 401, 'invalid_proof');
      assert.equal(verifier.stats.failures.ath_mismatch, 1);
    });

    it('a proof with a stale iat -> 401 invalid_proof', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const connection = await raw(t, server, 'client');
      const stale = await connection.proof(token, { iat: Math.floor(Date.now() / 1000) - 3600 });
      assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token, stale) }), 401, 'invalid_proof');
      assert.equal(verifier.stats.failures.iat_stale, 1);
    });

    it('a session-bound token without a proof -> 401 use_session_binding', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const connection = await raw(t, server, 'client');
      assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token) }), 401, 'use_session_binding');
      assert.equal(verifier.stats.failures.proof_missing, 1);
    });

    it('a token bound to another certificate -> 401 invalid_token, and the client does not retry', async (t) => {
      const { verifier, url } = await serve(t);
      const c = client(t);
      const res = await c.request(url, { token: await bound('other') });
      assertRefusal(res, 401, 'invalid_token');
      assert.equal(c.stats.retries, 0);
      assert.equal(verifier.stats.failures.certificate_mismatch, 1);
    });

    it('no Authorization -> 401 with a bare Bearer challenge', async (t) => {
      const { verifier, url } = await serve(t);
      const c = client(t);
      assertRefusal(await c.request(url), 401, undefined);
      assert.equal(verifier.stats.failures.no_token, 1);
    });

    it('two Authorization fields -> 400 invalid_request', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const connection = await raw(t, server, 'client');
      const proof = await connection.proof(token);
      const headers: Array<[string, string]> = [...bearer(token, proof), ['authorization', `Bearer ${token}`]];
      assertRefusal(await connection.request({ path: ECHO_PATH, headers }), 400, 'invalid_request');
      assert.equal(verifier.stats.failures.duplicate_authorization, 1);
    });

    it('two Session-Binding-Proof fields -> 400 invalid_request', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const connection = await raw(t, server, 'client');
      const proof = await connection.proof(token);
      assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token, proof, proof) }), 400, 'invalid_request');
      assert.equal(verifier.stats.failures.duplicate_proof, 1);
    });

    it('insufficient scope -> 403 insufficient_scope with the scope parameter', async (t) => {
      const { verifier, url } = await serve(t, { requiredScopes: ['admin'] });
      const c = client(t);
      const { challenge } = assertRefusal(await c.request(url, { token: await bound('client') }), 403, 'insufficient_scope');
      assert.equal(challenge?.params.scope, 'admin');
      assert.equal(c.stats.retries, 0);
      assert.equal(verifier.stats.failures.insufficient_scope, 1);
    });

    it('a bearer token (no cnf) at a default verifier -> 401 invalid_token', async (t) => {
      const { verifier, url } = await serve(t);
      const c = client(t);
      assertRefusal(await c.request(url, { token: await issuer.mint() }), 401, 'invalid_token');
      assert.equal(verifier.stats.failures.binding_required, 1);
    });

    it('per-request claims: one proof per request, none cached; a replayed jti or a wrong htu -> 401 invalid_proof', async (t) => {
      const { verifier, server, url } = await serve(t);
      const c = client(t, { perRequestClaims: true });
      const token = await bound('client');
      for (let i = 0; i < 5; i++) principalOf(await c.request(url, { token }));
      assert.equal(c.stats.proofsSigned, 5);
      assert.equal(c.stats.connectionsOpened, 1);
      assert.equal(verifier.stats.proofVerifications, 5);
      assert.equal(verifier.stats.cacheHits, 0);
      assert.equal(verifier.cache.size, 0);

      const connection = await raw(t, server, 'client');
      const once = await connection.proof(token, { jti: 'jti-1', htm: 'GET', htu: url });
      principalOf(await connection.request({ path: ECHO_PATH, headers: bearer(token, once) }));
      assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token, once) }), 401, 'invalid_proof');
      assert.equal(verifier.stats.failures.jti_replay, 1);

      const elsewhere = await connection.proof(token, { jti: 'jti-2', htm: 'GET', htu: `${server.url}/api/other` });
      assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token, elsewhere) }), 401, 'invalid_proof');
      assert.equal(verifier.stats.failures.htu_mismatch, 1);
    });

    it('client retry: a cached proof that expired and went stale is refused once, then a fresh proof succeeds', async (t) => {
      const { verifier, url } = await serve(t, { maxBindingAge: 60, proofMaxAge: 60 });
      const c = client(t);
      const token = await bound('client');
      // Only Date is mocked: client iat, verifier clock and token validation all read Date.now().
      t.mock.timers.enable({ apis: ['Date'], now: Date.now() });
      principalOf(await c.request(url, { token }));
      t.mock.timers.tick(120_000); // past maxBindingAge and past proofMaxAge + clockSkew
      const res = await c.request(url, { token });
      principalOf(res);
      assert.equal(res.retried, true);
      assert.equal(c.stats.retries, 1);
      assert.equal(c.stats.proofsSigned, 2);
      assert.equal(c.stats.connectionsOpened, 1);
      assert.equal(verifier.stats.failures.iat_stale, 1);
      assert.equal(verifier.stats.proofVerifications, 3);
    });

    it('bindings vanish when the connections close', async (t) => {
      const { verifier, url } = await serve(t);
      const c = client(t);
      const tokens = await Promise.all([bound('client', { sub: 'x' }), bound('client', { sub: 'y' }), bound('client', { sub: 'z' })]);
      for (const token of tokens) principalOf(await c.request(url, { token }));
      assert.equal(verifier.cache.size, 3);
      assert.equal(verifier.cache.connections, 1);
      await c.close();
      await eventually(() => verifier.cache.size === 0 && verifier.cache.connections === 0, 'the binding cache to empty');
    });
    it('a header section under the limit is served; one over it is refused by the HTTP layer before the verifier runs', async (t) => {
      // sessionBoundTlsOptions sets maxHeaderSize (HTTP/1.1: 431) and the HTTP/2 maxHeaderListSize
      // setting (RST_STREAM ENHANCE_YOUR_CALM) to 16 KiB by default.
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const connection = await raw(t, server, 'client');
      const proof = await connection.proof(token);
      // First exchange: afterwards the client has acknowledged the server's SETTINGS, which is
      // when Node starts enforcing the HTTP/2 header-list limit.
      principalOf(await connection.request({ path: ECHO_PATH, headers: bearer(token, proof) }));
      principalOf(await connection.request({ path: ECHO_PATH, headers: [...bearer(token, proof), ['x-padding', 'a'.repeat(12 * 1024)]] }));
      const oversized = { path: ECHO_PATH, headers: [...bearer(token, proof), ['x-padding', 'a'.repeat(17 * 1024)] as [string, string]] };
      if (adapter.protocol === 'h2') {
        await assert.rejects(connection.request(oversized), /NGHTTP2_ENHANCE_YOUR_CALM/);
        principalOf(await connection.request({ path: ECHO_PATH, headers: bearer(token, proof) }));
        assert.equal(verifier.stats.accepted, 3, 'the reset stream never reached the verifier; the connection lives on');
      } else {
        const res = await connection.request(oversized);
        assert.equal(res.status, 431);
        assert.equal(verifier.stats.accepted, 2, 'the oversized request never reached the verifier');
      }
      assert.deepEqual(verifier.stats.failures, {});
      assert.equal(verifier.stats.proofVerifications, 1);
    });

    if (adapter.protocol === 'h2') {
      it('HTTP/2 header limit from the first request, even for a client that never acknowledges SETTINGS (Node alone would not apply it)', async (t) => {
        const { verifier, server } = await serve(t);
        const unacked = await connectWithoutSettingsAck(server.url, { ...identity('client'), ca: pki.ca.cert });
        t.after(() => unacked.close());
        const request = (padding: number) => ({ ':path': ECHO_PATH, 'x-padding': 'a'.repeat(padding) });
        for (const size of [17 * 1024, 100 * 1024]) {
          const oversized = await unacked.request(request(size));
          assert.equal(oversized.status, 0, `${size}: no response`);
          assert.equal(oversized.rstCode, constants.NGHTTP2_ENHANCE_YOUR_CALM, `${size}: stream reset with ENHANCE_YOUR_CALM`);
        }
        assert.equal(verifier.stats.requests, 0, 'the verifier never saw them');
        const served = await unacked.request(request(12 * 1024));
        assert.equal(served.status, 401, 'the connection carries on; a 12 KiB header section reaches the verifier');
        assert.equal(verifier.stats.requests, 1);
        assert.ok(unacked.withheld() >= 1, 'the client really withheld its SETTINGS ACK');
      });
    }

    it('a refused request is answered at once, without waiting for the 1 GiB body it announces', async (t) => {
      const { verifier, server } = await serve(t);
      const token = await bound('client');
      const connection = await raw(t, server, 'client');
      const announced: Array<[string, string]> = [
        ['content-type', 'application/json'],
        ['content-length', String(2 ** 30)],
      ];
      const closed = once(connection.socket, 'close');
      const noProof = await connection.request({ method: 'POST', path: ECHO_PATH, headers: [...bearer(token), ...announced], bodyPending: true });
      assertRefusal(noProof, 401, 'use_session_binding');
      assert.equal(verifier.stats.failures.proof_missing, 1);
      // HTTP/1.1 cannot reuse a connection whose request body is unread: the server says so and
      // closes it rather than draining an unauthenticated upload. HTTP/2 resets only the stream.
      let next = connection;
      if (adapter.protocol === 'http/1.1') {
        assert.equal(noProof.headers.connection, 'close');
        await closed;
        next = await raw(t, server, 'client');
      } else {
        assert.equal(await settled(closed), false, 'the HTTP/2 connection stays open');
      }
      const other = await raw(t, server, 'other');
      const foreign = await next.request({ method: 'POST', path: ECHO_PATH, headers: [...bearer(await bound('other'), await other.proof(token)), ...announced], bodyPending: true });
      assertRefusal(foreign, 401, 'invalid_token');
      assert.equal(verifier.stats.failures.certificate_mismatch, 1);
      // A refused request without a body keeps the HTTP/1.1 connection alive.
      const fresh = await raw(t, server, 'client');
      const bodyless = await fresh.request({ path: ECHO_PATH, headers: bearer(token) });
      assertRefusal(bodyless, 401, 'use_session_binding');
      assert.notEqual(bodyless.headers.connection, 'close');
      principalOf(await fresh.request({ path: ECHO_PATH, headers: bearer(token, await fresh.proof(token)) }));
    });

    if (adapter.protocol === 'h2') {
      it('HTTP/2 race: streams without a proof, with a stale proof or with another connection\'s proof, sent while the first stream is still being verified, are refused on their own', async (t) => {
        const gate = gatedValidator(testTokenValidator(issuer), 1);
        const { verifier, server } = await serve(t, { tokens: gate.validator });
        const token = await bound('client');
        const connection = await raw(t, server, 'client');
        const proof = await connection.proof(token);
        const first = connection.request({ path: ECHO_PATH, headers: bearer(token, proof) });
        await eventually(() => gate.waiting === 1, 'the first stream to reach token validation');

        assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token) }), 401, 'use_session_binding');
        const stale = await connection.proof(token, { iat: Math.floor(Date.now() / 1000) - 3600 });
        assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token, stale) }), 401, 'invalid_proof');
        const elsewhere = await raw(t, server, 'client');
        assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token, await elsewhere.proof(token)) }), 401, 'invalid_proof');
        assert.equal(await settled(first), false, 'the first stream is still waiting');
        assert.equal(verifier.cache.size, 0);

        gate.release();
        principalOf(await first);
        principalOf(await connection.request({ path: ECHO_PATH, headers: bearer(token, proof) }));
        assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(token) }), 401, 'use_session_binding');
        assert.deepEqual(verifier.stats.failures, { proof_missing: 2, iat_stale: 1, ekm_mismatch: 1 });
        assert.equal(verifier.stats.accepted, 2);
        assert.equal(verifier.stats.cacheHits, 1, 'only the repeat of the verified proof rode on the cache');
        assert.equal(verifier.cache.size, 1);
      });

      it('HTTP/2 race: one replayed proof on 10 concurrent streams is refused on every stream and poisons nothing', async (t) => {
        const gate = gatedValidator(testTokenValidator(issuer), 10);
        const { verifier, server } = await serve(t, { tokens: gate.validator });
        const token = await bound('client');
        const victim = await raw(t, server, 'client');
        const captured = await victim.proof(token);
        const connection = await raw(t, server, 'client');
        const streams = Array.from({ length: 10 }, () => connection.request({ path: ECHO_PATH, headers: bearer(token, captured) }));
        await eventually(() => gate.waiting === 10, 'all ten streams to reach token validation');
        gate.release();
        for (const res of await Promise.all(streams)) assertRefusal(res, 401, 'invalid_proof');
        assert.deepEqual(verifier.stats.failures, { ekm_mismatch: 10 });
        assert.equal(verifier.cache.size, 0);
        principalOf(await connection.request({ path: ECHO_PATH, headers: bearer(token, await connection.proof(token)) }));
        assert.equal(verifier.cache.size, 1);
      });

      it('HTTP/2 race: a stream reset while its proof is being verified leaves a usable binding; a connection closed meanwhile leaves nothing', async (t) => {
        const gate = gatedValidator(testTokenValidator(issuer), 2);
        const { verifier, server } = await serve(t, { tokens: gate.validator });
        const token = await bound('client');
        const connection = await raw(t, server, 'client');
        const proof = await connection.proof(token);
        const abort = new AbortController();
        const cancelled = connection.request({ path: ECHO_PATH, headers: bearer(token, proof), signal: abort.signal });
        const doomed = await raw(t, server, 'client');
        const orphan = doomed.request({ path: ECHO_PATH, headers: bearer(token, await doomed.proof(token)) });
        await eventually(() => gate.waiting === 2, 'both streams to reach token validation');
        abort.abort();
        await assert.rejects(cancelled, { name: 'AbortError' });
        // Destroy rather than close(): a graceful HTTP/2 close waits for the held stream.
        const gone = once(doomed.socket, 'close');
        doomed.socket.destroy();
        await gone;
        await assert.rejects(orphan, /stream closed before a response|ECONNRESET|closed/);
        gate.release();
        await eventually(() => verifier.stats.accepted + Object.values(verifier.stats.failures).reduce((a, b) => a + b, 0) === 2, 'both verifications to finish');
        // The closed connection's request fails closed if the server saw the close before deriving
        // its exporter, or is accepted and its binding purged with the connection; never a binding left behind.
        const { exporter_unavailable: unavailable = 0, ...otherFailures } = verifier.stats.failures;
        assert.deepEqual(otherFailures, {});
        assert.equal(verifier.stats.accepted + unavailable, 2);
        await eventually(() => verifier.cache.size === 1 && verifier.cache.connections === 1, 'only the live connection to keep its binding');
        principalOf(await connection.request({ path: ECHO_PATH, headers: bearer(token, proof) }));
        assert.equal(verifier.stats.cacheHits, 1, 'the reset stream\'s verification is reused by the live connection');
        assert.equal(verifier.stats.proofVerifications, 2 - unavailable);
      });
    }
  });
}
