/**
 * Client connections at the ingress (issue 12 item 3), over real TLS sockets: a client that
 * half-closes (FIN after its request) releases its connection at once, HTTP/1.1 and HTTP/2, also
 * with a response still streaming (the request to the application is cancelled); a connection with
 * no request in flight for `idleTimeoutMs` is closed (HTTP/1.1: FIN; HTTP/2: GOAWAY, then closed),
 * one with a request in flight is not; `idleTimeoutMs: 0` never closes.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { describe, it, type TestContext } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createSessionBindingProof, deriveSessionExporter } from '@tether/core';
import type { IngressConfig } from '@tether/sidecar';
import { openRawConnection, type RawConnection } from '../adapters/raw.js';
import { closesWithin } from '../helpers/limits.js';
import { waitFor, withTimeout } from '../helpers/wait.js';
import { startStack, type Stack } from './helpers/stack.js';

const IDLE_MS = 300;
/** A connection must be released this fast after the client's FIN. */
const RELEASE_MS = 2000;
const REQUEST_DEADLINE_MS = 10_000;

async function stackFor(t: TestContext, ingress: Partial<IngressConfig> = {}): Promise<Stack> {
  const stack = await startStack({ ingress });
  t.after(() => stack.close());
  return stack;
}

const identity = (stack: Stack) => stack.pki.clients.client!;
const token = (stack: Stack) => stack.issuer.sessionBound(identity(stack).cert);
const describeState = (stack: Stack) => () => `ingress state ${JSON.stringify(stack.ingress.state())}`;

async function rawH1(t: TestContext, stack: Stack): Promise<RawConnection> {
  const connection = await openRawConnection(stack.ingress.url, identity(stack), { protocol: 'http/1.1', ca: stack.pki.ca.cert });
  t.after(() => connection.close());
  return connection;
}

/** An authorized HTTP/1.1 request on `connection`. */
async function h1Get(connection: RawConnection, bearer: string, path: string) {
  const headers: Array<[string, string]> = [['authorization', `Bearer ${bearer}`], ['session-binding-proof', await connection.proof(bearer)]];
  return withTimeout(connection.request({ path, headers }), REQUEST_DEADLINE_MS, `GET ${path} over HTTP/1.1`);
}

/** An HTTP/2 session over a TLS socket the test holds (to half-close it), with proofs for this connection. */
async function h2Connection(t: TestContext, stack: Stack): Promise<{ socket: TLSSocket; session: ClientHttp2Session; headers(bearer: string, path: string): Promise<Record<string, string>> }> {
  const { cert, key } = identity(stack);
  const url = new URL(stack.ingress.url);
  const socket = tlsConnect({ host: url.hostname, port: Number(url.port), cert, key, ca: stack.pki.ca.cert, ALPNProtocols: ['h2'] });
  t.after(() => socket.destroy());
  await withTimeout(once(socket, 'secureConnect'), REQUEST_DEADLINE_MS, 'TLS handshake with the ingress');
  const session = http2Connect(stack.ingress.url, { createConnection: () => socket });
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  const ekm = deriveSessionExporter(socket, ['TLSv1.3']);
  const privateKey = createPrivateKey(key);
  const certificate = new X509Certificate(cert);
  return {
    socket,
    session,
    async headers(bearer, path) {
      const proof = await createSessionBindingProof({ privateKey, certificate, accessToken: bearer, ekm });
      return { ':path': path, authorization: `Bearer ${bearer}`, 'session-binding-proof': proof };
    },
  };
}

/** One HTTP/2 request read to its end. */
async function h2Get(session: ClientHttp2Session, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const stream = session.request(headers);
  const done = (async () => {
    const [response] = (await once(stream, 'response')) as [IncomingHttpHeaders];
    let body = '';
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    await once(stream, 'end');
    return { status: Number(response[':status']), body };
  })();
  return withTimeout(done, REQUEST_DEADLINE_MS, `GET ${headers[':path']} over HTTP/2`, () => stream.close());
}

async function released(stack: Stack, what: string): Promise<void> {
  await waitFor(() => stack.ingress.state().connections === 0 && stack.ingress.state().sessions === 0, {
    timeoutMs: RELEASE_MS,
    message: () => `${what}: ${describeState(stack)()}`,
  });
}

describe('ingress client connections: half-close', () => {
  it('HTTP/1.1: a client that sends FIN after its request releases the connection at once', async (t) => {
    const stack = await stackFor(t);
    const connection = await rawH1(t, stack);
    const res = await h1Get(connection, await token(stack), '/echo');
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.ingress.state().connections, 1, 'the connection is open and counted');
    const started = Date.now();
    connection.socket.end();
    await released(stack, 'the half-closed HTTP/1.1 connection was not released');
    assert.ok(await closesWithin(connection.socket, RELEASE_MS), 'the ingress closed its side too');
    assert.ok(Date.now() - started < RELEASE_MS);
    assert.equal(stack.ingress.stats.idleClosed, 0, 'released by the FIN, not by the idle timeout');
  });

  it('HTTP/2: a client that sends FIN after its request releases the session and the socket at once', async (t) => {
    const stack = await stackFor(t);
    const c = await h2Connection(t, stack);
    const res = await h2Get(c.session, await c.headers(await token(stack), '/echo'));
    assert.equal(res.status, 200, res.body);
    assert.deepEqual([stack.ingress.state().connections, stack.ingress.state().sessions], [1, 1]);
    c.socket.end();
    await released(stack, 'the half-closed HTTP/2 connection was not released');
    assert.ok(await closesWithin(c.socket, RELEASE_MS), 'the ingress closed its side too');
  });

  it('a FIN while the response streams cancels the request to the application and releases the connection (HTTP/1.1 and HTTP/2)', async (t) => {
    const stack = await stackFor(t);
    const bearer = await token(stack);
    // HTTP/1.1: the request written by hand, the first bytes of the endless response awaited.
    const h1 = await rawH1(t, stack);
    const firstBytes = once(h1.socket, 'data');
    h1.socket.write(`GET /forever HTTP/1.1\r\nhost: ${new URL(stack.ingress.url).host}\r\nauthorization: Bearer ${bearer}\r\nsession-binding-proof: ${await h1.proof(bearer)}\r\n\r\n`);
    await withTimeout(firstBytes, REQUEST_DEADLINE_MS, 'the /forever response over HTTP/1.1 started');
    h1.socket.end();
    await released(stack, 'HTTP/1.1 with a streaming response');
    await waitFor(() => stack.app.foreverClosed === 1, { message: 'the application saw the HTTP/1.1 request cancelled' });
    // HTTP/2.
    const h2 = await h2Connection(t, stack);
    const stream = h2.session.request(await h2.headers(bearer, '/forever'));
    stream.on('error', () => undefined);
    await withTimeout(once(stream, 'data'), REQUEST_DEADLINE_MS, 'the /forever response over HTTP/2 started');
    assert.equal(stack.ingress.state().activeRequests, 1);
    h2.socket.end();
    await released(stack, 'HTTP/2 with a streaming response');
    await waitFor(() => stack.app.foreverClosed === 2, { message: 'the application saw the HTTP/2 request cancelled' });
    await waitFor(() => stack.ingress.state().activeRequests === 0, { message: describeState(stack) });
  });
});

describe('ingress client connections: idle timeout', () => {
  it('HTTP/1.1: closed after idleTimeoutMs without a request in flight; a request longer than the timeout is not cut', async (t) => {
    const stack = await stackFor(t, { idleTimeoutMs: IDLE_MS });
    const bearer = await token(stack);
    const connection = await rawH1(t, stack);
    // A request that outlasts the idle timeout three times: answered completely.
    const slow = await h1Get(connection, bearer, `/slow?ms=${3 * IDLE_MS}`);
    assert.equal(slow.status, 200);
    assert.equal(slow.body, 'slow done');
    const idleSince = Date.now();
    assert.ok(await closesWithin(connection.socket, IDLE_MS + 2000), 'the idle connection was closed');
    const idleFor = Date.now() - idleSince;
    assert.ok(idleFor >= IDLE_MS - 100, `not before the idle timeout (${idleFor} ms)`);
    await released(stack, 'the idle HTTP/1.1 connection');
    assert.equal(stack.ingress.stats.idleClosed, 1);

    // A connection that never sends a request is closed the same way.
    const silent = await rawH1(t, stack);
    assert.ok(await closesWithin(silent.socket, IDLE_MS + 2000), 'the silent connection was closed');
    assert.equal(stack.ingress.stats.idleClosed, 2);
  });

  it('HTTP/2: GOAWAY (NO_ERROR) after idleTimeoutMs without a stream in flight, then the session is closed', async (t) => {
    const stack = await stackFor(t, { idleTimeoutMs: IDLE_MS });
    const bearer = await token(stack);
    const c = await h2Connection(t, stack);
    const goaway = once(c.session, 'goaway') as Promise<[number, number]>;
    const slow = await h2Get(c.session, await c.headers(bearer, `/slow?ms=${3 * IDLE_MS}`));
    assert.equal(slow.status, 200, 'a stream longer than the idle timeout is not cut');
    assert.equal(slow.body, 'slow done');
    const idleSince = Date.now();
    const [code] = await withTimeout(goaway, IDLE_MS + 2000, 'no GOAWAY on the idle session');
    assert.equal(code, 0, 'GOAWAY NO_ERROR');
    assert.ok(Date.now() - idleSince >= IDLE_MS - 100, 'not before the idle timeout');
    await withTimeout(once(c.session, 'close'), 2000, 'the idle session was not closed');
    await released(stack, 'the idle HTTP/2 connection');
    assert.equal(stack.ingress.stats.idleClosed, 1);
  });

  it('idleTimeoutMs 0 never closes an idle connection', async (t) => {
    const stack = await stackFor(t, { idleTimeoutMs: 0 });
    const connection = await rawH1(t, stack);
    assert.equal((await h1Get(connection, await token(stack), '/echo')).status, 200);
    assert.equal(await closesWithin(connection.socket, 3 * IDLE_MS), false, 'still open after three times the short timeout');
    assert.equal(stack.ingress.state().connections, 1);
    assert.equal((await h1Get(connection, await token(stack), '/echo')).status, 200, 'and usable');
  });
});
