/** Fastify-specific cases, run on both transports: error-handler mode and encapsulation. */
import assert from 'node:assert/strict';
import { before, describe, it, type TestContext } from 'node:test';
import { isTetherError } from '@tether/core';
import { SessionBoundClient } from '@tether/core/client';
import { principalOf, replyWithRefusal, sessionBoundPlugin } from '@tether/core/fastify';
import type { DevPki } from '@tether/pki';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { testVerifier } from '../helpers/servers.js';
import { ECHO_PATH, assertRefusal } from './shared-suite.js';
import { startFastifyEcho } from './servers.js';
import { openRawConnection } from './raw.js';

export function registerFastifyOptionTests(http2: boolean): void {
  describe(`fastify plugin options (${http2 ? 'http2' : 'https'})`, () => {
    let pki: DevPki;
    let issuer: TestIssuer;
    before(async () => {
      pki = await testPki();
      issuer = await TestIssuer.create();
    });

    function client(t: TestContext): SessionBoundClient {
      const c = new SessionBoundClient({ ...(pki.clients.client as { cert: string; key: string }), ca: pki.ca.cert, protocol: http2 ? 'h2' : 'http/1.1' });
      t.after(() => c.close());
      return c;
    }

    const token = (who: 'client' | 'other') => issuer.sessionBound((pki.clients[who] as { cert: string }).cert);

    it('passErrors: the hook throws the TetherError and a setErrorHandler answers it with replyWithRefusal', async (t) => {
      const seen: unknown[] = [];
      const server = await startFastifyEcho(pki, testVerifier(issuer), {
        http2,
        async configure(app, verifier) {
          app.setErrorHandler((error, _request, reply) => {
            seen.push(error);
            if (isTetherError(error)) return replyWithRefusal(reply, error);
            return reply.send(error);
          });
          await app.register(sessionBoundPlugin, { verifier, passErrors: true });
          app.get(ECHO_PATH, async (request) => ({ principal: principalOf(request) }));
        },
      });
      t.after(() => server.close());
      const c = client(t);
      const url = `${server.url}${ECHO_PATH}`;
      assertRefusal(await c.request(url), 401, undefined);
      assertRefusal(await c.request(url, { token: await token('other') }), 401, 'invalid_token');
      assert.equal((await c.request(url, { token: await token('client') })).status, 200);
      assert.equal(seen.length, 2);
      assert.ok(seen.every(isTetherError));
      // A refusal through the error handler still does not wait for an announced body: HTTP/1.1
      // closes the connection (`Connection: close`), HTTP/2 resets only the stream.
      const rawConnection = await openRawConnection(server.url, pki.clients.client as { cert: string; key: string }, { protocol: http2 ? 'h2' : 'http/1.1', ca: pki.ca.cert });
      t.after(() => rawConnection.close());
      const refused = await rawConnection.request({
        method: 'POST',
        path: ECHO_PATH,
        headers: [['authorization', `Bearer ${await token('client')}`], ['content-type', 'application/json'], ['content-length', String(2 ** 30)]],
        bodyPending: true,
      });
      assertRefusal(refused, 401, 'use_session_binding');
      assert.equal(refused.headers.connection, http2 ? undefined : 'close');
      assert.equal(seen.length, 3);
    });

    it('registered in encapsulated contexts it protects only their routes (and can be registered twice)', async (t) => {
      const server = await startFastifyEcho(pki, testVerifier(issuer), {
        http2,
        async configure(app, verifier) {
          app.get('/public', async () => ({ public: true }));
          await app.register(async (child) => {
            await child.register(sessionBoundPlugin, { verifier });
            child.get(ECHO_PATH, async (request) => ({ principal: principalOf(request) }));
          });
          await app.register(async (child) => {
            await child.register(sessionBoundPlugin, { verifier });
            child.get('/api/second', async (request) => ({ principal: principalOf(request) }));
          });
        },
      });
      t.after(() => server.close());
      const c = client(t);
      const bound = await token('client');
      assert.equal((await c.request(`${server.url}/public`)).status, 200);
      assertRefusal(await c.request(`${server.url}${ECHO_PATH}`), 401, undefined);
      assertRefusal(await c.request(`${server.url}/api/second`), 401, undefined);
      assert.equal((await c.request(`${server.url}${ECHO_PATH}`, { token: bound })).status, 200);
      assert.equal((await c.request(`${server.url}/api/second`, { token: bound })).status, 200);
    });

    it('per-request claims are checked against the URL the client sent, not the one rewriteUrl routes', async (t) => {
      const verifier = testVerifier(issuer);
      const server = await startFastifyEcho(pki, verifier, {
        http2,
        rewriteUrl: (req) => (req.url ?? '/').replace(/^\/v1\//, '/api/'),
      });
      t.after(() => server.close());
      const c = new SessionBoundClient({ ...(pki.clients.client as { cert: string; key: string }), ca: pki.ca.cert, protocol: http2 ? 'h2' : 'http/1.1', perRequestClaims: true });
      t.after(() => c.close());
      const res = await c.request(`${server.url}/v1/echo`, { token: await token('client') });
      assert.equal(res.status, 200, res.body.toString());
      assert.equal(verifier.stats.proofVerifications, 1);
    });

    it('principalOf throws when the hook did not run', () => {
      assert.throws(() => principalOf({ tether: null }), /sessionBoundPlugin did not run/);
    });
  });
}
