// Client certificates at the resource server: missing, unverified (another CA), and renewed
// under a live token. Real TLS on loopback through the node adapter (HTTP/1.1 and HTTP/2).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import {
  certificateThumbprint,
  createSessionBoundVerifier,
  jwtAccessTokenValidator,
  localJwks,
  sessionBoundConfirmation,
  type SessionBoundVerifierOptions,
} from '@tether/core';
import { createDevPki, issueClientCertificate, type DevPki } from '@tether/pki';
import { assertRefusal, ECHO_PATH } from '../adapters/shared-suite.js';
import { openRawConnection, type Identity, type RawConnection, type RawResponse } from '../adapters/raw.js';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { startEchoServer, testVerifier, type RunningServer } from '../helpers/servers.js';

const PROTOCOLS = ['http/1.1', 'h2'] as const;
type Protocol = (typeof PROTOCOLS)[number];

const issuer = await TestIssuer.create();
const pki = await testPki();
/** Another development CA the server does not trust, with a client of the same name. */
const foreign: DevPki = await createDevPki({ clients: ['client'] });
const client = pki.clients.client as Identity;
const stranger = foreign.clients.client as Identity;

function bearer(token: string, proof?: string): Array<[string, string]> {
  return [['authorization', `Bearer ${token}`], ...(proof === undefined ? [] : [['session-binding-proof', proof] as [string, string]])];
}

function accepted(res: RawResponse): void {
  assert.equal(res.status, 200, res.body);
}

async function serve(t: TestContext, protocol: Protocol, options: { rejectUnauthorized?: boolean; verifier?: Partial<SessionBoundVerifierOptions> } = {}): Promise<RunningServer> {
  const server = await startEchoServer(pki, testVerifier(issuer, options.verifier ?? {}), {
    protocol,
    ...(options.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: options.rejectUnauthorized }),
  });
  t.after(() => server.close());
  return server;
}

async function connect(t: TestContext, server: RunningServer, identity: Identity, protocol: Protocol, presentCertificate = true): Promise<RawConnection> {
  const connection = await openRawConnection(server.url, identity, { protocol, ca: pki.ca.cert, presentCertificate });
  t.after(() => connection.close());
  return connection;
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: the default server refuses, in the handshake, a client without a certificate or with one from another CA`, async (t) => {
    const server = await serve(t, protocol);
    const token = await issuer.sessionBound(client.cert);
    for (const [identity, presentCertificate] of [[client, false], [stranger, true]] as const) {
      // TLS 1.3: the client's handshake completes before the server checks its certificate; the
      // server then answers with an alert and closes, so no request gets through.
      const connection = await openRawConnection(server.url, identity, { protocol, ca: pki.ca.cert, presentCertificate }).catch((error: unknown) => error);
      if (connection instanceof Error) {
        assert.match(String((connection as NodeJS.ErrnoException).code ?? connection.message), /ERR_SSL|ECONNRESET|socket hang up|certificate/i);
        continue;
      }
      t.after(() => (connection as RawConnection).close());
      // Not events.once: it would reject on the socket's 'error' (the alert) before we await it.
      const closed = new Promise((resolve) => (connection as RawConnection).socket.once('close', resolve));
      await assert.rejects((connection as RawConnection).request({ path: ECHO_PATH, headers: bearer(token) }));
      await closed;
    }
    assert.equal(server.verifier.stats.requests, 0, 'no request reached the verifier');
  });

  test(`${protocol}: a server that lets unverified clients in (rejectUnauthorized: false) still refuses bound tokens from them`, async (t) => {
    const server = await serve(t, protocol, { rejectUnauthorized: false });
    const { verifier } = server;

    // No certificate at all: the token (and even a proof signed with the right key) is refused at step c.
    const token = await issuer.sessionBound(client.cert);
    const anonymous = await connect(t, server, client, protocol, false);
    assertRefusal(await anonymous.request({ path: ECHO_PATH, headers: bearer(token) }), 401, 'invalid_token');
    assertRefusal(await anonymous.request({ path: ECHO_PATH, headers: bearer(token, await anonymous.proof(token)) }), 401, 'invalid_token');
    assert.equal(verifier.stats.failures.no_client_certificate, 2);

    // A certificate from a CA the server does not trust, with a token bound to it and a valid proof.
    const strangers = await issuer.sessionBound(stranger.cert);
    const untrusted = await connect(t, server, stranger, protocol);
    assert.equal(untrusted.socket.authorized, true, 'the client trusts the server');
    assertRefusal(await untrusted.request({ path: ECHO_PATH, headers: bearer(strangers, await untrusted.proof(strangers)) }), 401, 'invalid_token');
    assert.equal(verifier.stats.failures.untrusted_client_certificate, 1);

    // The trusted client on the same server is unaffected.
    const trusted = await connect(t, server, client, protocol);
    accepted(await trusted.request({ path: ECHO_PATH, headers: bearer(token, await trusted.proof(token)) }));
    assert.equal(verifier.stats.accepted, 1);
    assert.equal(verifier.stats.proofVerifications, 1, 'no proof was verified for a refused certificate');
    assert.deepEqual(verifier.stats.failures, { no_client_certificate: 2, untrusted_client_certificate: 1 });
  });

  test(`${protocol}: requireTrustedCertificate: false accepts a self-issued certificate named by cnf, and nothing else`, async (t) => {
    const server = await serve(t, protocol, { rejectUnauthorized: false, verifier: { requireTrustedCertificate: false } });
    const { verifier } = server;
    const strangers = await issuer.sessionBound(stranger.cert);
    const connection = await connect(t, server, stranger, protocol);
    accepted(await connection.request({ path: ECHO_PATH, headers: bearer(strangers, await connection.proof(strangers)) }));
    // The thumbprint is still the anchor: a token bound to the trusted client's certificate is refused here.
    const others = await issuer.sessionBound(client.cert);
    assertRefusal(await connection.request({ path: ECHO_PATH, headers: bearer(others, await connection.proof(others)) }), 401, 'invalid_token');
    assert.equal(verifier.stats.failures.certificate_mismatch, 1);
    // And no certificate is still no certificate.
    const anonymous = await connect(t, server, stranger, protocol, false);
    assertRefusal(await anonymous.request({ path: ECHO_PATH, headers: bearer(strangers, await anonymous.proof(strangers)) }), 401, 'invalid_token');
    assert.equal(verifier.stats.failures.no_client_certificate, 1);
  });

  test(`${protocol}: a certificate renewed under a live token: the old connection works until the token expires; the renewed certificate needs a new token`, async (t) => {
    let now = Math.floor(Date.now() / 1000);
    const clock = () => now;
    const verifier = createSessionBoundVerifier({
      tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE, now: clock }),
      now: clock,
    });
    const server = await startEchoServer(pki, verifier, { protocol });
    t.after(() => server.close());

    const token = await issuer.mint({ cnf: sessionBoundConfirmation(new X509Certificate(client.cert)) }, { expiresIn: 600 });
    const before = await connect(t, server, client, protocol);
    const proof = await before.proof(token);
    accepted(await before.request({ path: ECHO_PATH, headers: bearer(token, proof) }));

    // Renewal: the same key certified again, and a new key. Either way the certificate, and so
    // its x5t#S256 thumbprint, changes.
    const sameKey = await issueClientCertificate(pki.ca, 'client', { key: client.key });
    const newKey = await issueClientCertificate(pki.ca, 'client');
    for (const renewed of [sameKey, newKey]) assert.notEqual(certificateThumbprint(new X509Certificate(renewed.cert)), certificateThumbprint(new X509Certificate(client.cert)));

    for (const renewed of [sameKey, newKey]) {
      const after = await connect(t, server, renewed, protocol);
      assertRefusal(await after.request({ path: ECHO_PATH, headers: bearer(token, await after.proof(token)) }), 401, 'invalid_token');
      // A token bound to the renewed certificate works on the renewed connection.
      const reissued = await issuer.sessionBound(renewed.cert);
      accepted(await after.request({ path: ECHO_PATH, headers: bearer(reissued, await after.proof(reissued)) }));
    }
    assert.deepEqual(verifier.stats.failures, { certificate_mismatch: 2 });

    // The connection made with the old certificate keeps its binding while the token lives...
    now += 500;
    accepted(await before.request({ path: ECHO_PATH, headers: bearer(token, proof) }));
    // A fresh proof replaces the cached one on this connection (the binding is per (connection, token)).
    const fresher = await before.proof(token, { iat: now });
    accepted(await before.request({ path: ECHO_PATH, headers: bearer(token, fresher) }));
    // ...up to the token's expiry plus the validator's tolerance (30 s), and not a second longer,
    // cached binding or not.
    now += 100 + 29;
    accepted(await before.request({ path: ECHO_PATH, headers: bearer(token, fresher) }));
    now += 1;
    assertRefusal(await before.request({ path: ECHO_PATH, headers: bearer(token, fresher) }), 401, 'invalid_token');
    assert.deepEqual(verifier.stats.failures, { certificate_mismatch: 2, expired: 1 });
  });
}
