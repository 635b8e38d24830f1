import assert from 'node:assert/strict';
import { before, describe, it, type TestContext } from 'node:test';
import type { Request } from 'express';
import { AuthenticationRequiredError, InvalidTokenError, type SessionBoundVerifier } from '@tether/core';
import { SessionBoundClient } from '@tether/core/client';
import { principalOf, sessionBoundErrorHandler } from '@tether/core/express';
import type { DevPki } from '@tether/pki';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { testVerifier } from '../helpers/servers.js';
import { ECHO_PATH, assertRefusal, registerAdapterSuite } from './shared-suite.js';
import { ADAPTERS, startExpressEcho } from './servers.js';

registerAdapterSuite(ADAPTERS.express);

describe('express middleware options', () => {
  let pki: DevPki;
  let issuer: TestIssuer;
  before(async () => {
    pki = await testPki();
    issuer = await TestIssuer.create();
  });

  function client(t: TestContext): SessionBoundClient {
    const c = new SessionBoundClient({ ...(pki.clients.client as { cert: string; key: string }), ca: pki.ca.cert, protocol: 'http/1.1' });
    t.after(() => c.close());
    return c;
  }

  it('passErrors hands the TetherError to next(err); sessionBoundErrorHandler answers it', async (t) => {
    const verifier: SessionBoundVerifier = testVerifier(issuer);
    const seen: unknown[] = [];
    const server = await startExpressEcho(pki, verifier, {
      middleware: { passErrors: true },
      configure(app) {
        app.use((error: unknown, _req: Request, _res: unknown, next: (error: unknown) => void) => {
          seen.push(error);
          next(error);
        });
        app.use(sessionBoundErrorHandler());
      },
    });
    t.after(() => server.close());
    const c = client(t);
    const url = `${server.url}${ECHO_PATH}`;
    assertRefusal(await c.request(url), 401, undefined);
    assertRefusal(await c.request(url, { token: await issuer.sessionBound((pki.clients.other as { cert: string }).cert) }), 401, 'invalid_token');
    const ok = await c.request(url, { token: await issuer.sessionBound((pki.clients.client as { cert: string }).cert) });
    assert.equal(ok.status, 200);
    assert.equal(seen.length, 2);
    assert.ok(seen[0] instanceof AuthenticationRequiredError);
    assert.ok(seen[1] instanceof InvalidTokenError);
  });

  it('principalOf throws when the middleware did not run', () => {
    assert.throws(() => principalOf({} as Request), /sessionBoundMiddleware did not run/);
  });
});
