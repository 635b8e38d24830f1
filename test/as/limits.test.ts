/**
 * Request size limits at the authorization server (issue 7, adversarial suite): header sections
 * over 16 KiB and bodies over `limits.bodyBytes` (16 KiB) are refused with an exact status and
 * RFC 6749 error before any parsing or handler work, over HTTP/2 and its HTTP/1.1 fallback, on
 * the token and introspection endpoints, and without the server reading an upload it refused.
 *
 * "Reached the handler" is read from `tether_as_request_duration_seconds` (observed only by the
 * endpoint handlers); refusals from `tether_as_request_failures_total`. Every case starts its own
 * AS, so both are exact.
 */
import assert from 'node:assert/strict';
import { connect as http2Connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { describe, it, type TestContext } from 'node:test';
import type { IssuedCertificate } from '@tether/pki';
import { openRawConnection, type RawConnection, type RawResponse } from '../adapters/raw.js';
import { connectWithoutSettingsAck } from '../helpers/h2-unacked.js';
import { closesWithin, h2Call, padding } from '../helpers/limits.js';
import { waitFor } from '../helpers/wait.js';
import { startTestAs, type TestAs } from './helpers/setup.js';

const FORM = 'application/x-www-form-urlencoded';
/** The AS defaults: `limits.bodyBytes` and the header-section limit of sessionBoundTlsOptions. */
const LIMIT = 16 * 1024;
const ONE_GIB = String(2 ** 30);
/** A refusal counts as prompt when its response is back within this (the bodies it ignores are 1 GiB). */
const PROMPT_MS = 1000;
const ENHANCE_YOUR_CALM = 11;

interface Endpoint {
  name: 'token' | 'introspection';
  path: string;
  /** A complete request of client `a` that the endpoint answers with 200. */
  body: string;
  ok(json: Record<string, unknown>): boolean;
}

const ENDPOINTS: Endpoint[] = [
  { name: 'token', path: '/token', body: 'grant_type=client_credentials&client_id=a&audience=https%3A%2F%2Fopen.example', ok: (json) => typeof json.access_token === 'string' },
  { name: 'introspection', path: '/introspect', body: 'client_id=a&token=not-a-token', ok: (json) => json.active === false },
];

async function startAs(t: TestContext): Promise<TestAs> {
  const as = await startTestAs();
  t.after(() => as.close());
  return as;
}

const identity = (as: TestAs) => as.pki.clients.a as IssuedCertificate;

/** `tether_as_request_failures_total` for these labels. */
async function failures(as: TestAs, labels: { endpoint: string; error?: string; reason: string }): Promise<number> {
  const { values } = await as.server.metrics.failures.get();
  const want = { error: 'invalid_request', ...labels };
  return values.filter((v) => v.labels.endpoint === want.endpoint && v.labels.error === want.error && v.labels.reason === want.reason).reduce((n, v) => n + v.value, 0);
}

/** Requests that reached the handler of `endpoint` (any status). */
async function handled(as: TestAs, endpoint: string): Promise<number> {
  const { values } = await as.server.metrics.requestDuration.get();
  return values.filter((v) => v.metricName === 'tether_as_request_duration_seconds_count' && v.labels.endpoint === endpoint).reduce((n, v) => n + v.value, 0);
}

/** An RFC 6749 error response: exact status, `invalid_request` (unless told), the description, no-store. */
function assertOAuthError(res: { status: number; headers: Record<string, unknown>; body: string }, status: number, description: string, error = 'invalid_request'): void {
  assert.equal(res.status, status, `status ${res.status}: ${res.body}`);
  assert.deepEqual(JSON.parse(res.body), { error, error_description: description });
  assert.equal(res.headers['cache-control'], 'no-store');
  assert.match(String(res.headers['content-type']), /^application\/json/);
}

function assertOk(endpoint: Endpoint, res: { status: number; body: string }): void {
  assert.equal(res.status, 200, `${endpoint.path}: ${res.status} ${res.body}`);
  assert.ok(endpoint.ok(JSON.parse(res.body) as Record<string, unknown>), res.body);
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 (the AS's allowHTTP1 fallback), by hand on a TLS socket

async function h1(t: TestContext, as: TestAs): Promise<RawConnection> {
  const connection = await openRawConnection(as.server.url, identity(as), { protocol: 'http/1.1', ca: as.pki.ca.cert });
  t.after(() => connection.close());
  return connection;
}

/** POST `body` whole (content-length) with extra header fields. */
function h1Post(connection: RawConnection, path: string, body: string, extra: Array<[string, string]> = [], type = FORM): Promise<RawResponse> {
  const response = connection.request({
    method: 'POST',
    path,
    headers: [['content-type', type], ['content-length', String(Buffer.byteLength(body))], ...extra],
    bodyPending: true,
  });
  connection.socket.write(body);
  return response;
}

/** Send only the headers of a request announcing a 1 GiB body; time the response. */
async function h1Announced(connection: RawConnection, method: string, path: string, headers: Array<[string, string]>, length = ONE_GIB): Promise<RawResponse & { ms: number }> {
  const started = Date.now();
  const res = await connection.request({ method, path, headers: [...headers, ['content-length', length]], bodyPending: true });
  return { ...res, ms: Date.now() - started };
}

/** A chunked body: `chunks` chunks of 4 KiB, then the last chunk only if `end`. */
function chunked(chunks: number, end: boolean): string {
  const data = padding(4096);
  return `${`1000\r\n${data}\r\n`.repeat(chunks)}${end ? '0\r\n\r\n' : ''}`;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

function h2(t: TestContext, as: TestAs): ClientHttp2Session {
  const { cert, key } = identity(as);
  const session = http2Connect(as.server.url, { cert, key, ca: as.pki.ca.cert });
  session.on('error', () => undefined);
  t.after(() => {
    session.destroy();
  });
  return session;
}

const h2Post = (path: string, extra: OutgoingHttpHeaders = {}, type = FORM): OutgoingHttpHeaders => ({ ':method': 'POST', ':path': path, 'content-type': type, ...extra });

describe('authorization server request limits, HTTP/1.1', () => {
  it('header section: 12 KiB is served; 17 KiB gets 431 invalid_request and a closed connection, before any handler', async (t) => {
    const as = await startAs(t);
    for (const endpoint of ENDPOINTS) {
      const connection = await h1(t, as);
      assertOk(endpoint, await h1Post(connection, endpoint.path, endpoint.body, [['x-padding', padding(12 * 1024)]]));
      const refused = await h1(t, as);
      const res = await h1Post(refused, endpoint.path, endpoint.body, [['x-padding', padding(17 * 1024)]]);
      assertOAuthError(res, 431, 'The request header section is too large');
      assert.equal(res.headers.connection, 'close');
      assert.ok(await closesWithin(refused.socket, PROMPT_MS), 'the server closes the connection');
    }
    assert.equal(await handled(as, 'token'), 1, 'only the 12 KiB token request reached its handler');
    assert.equal(await handled(as, 'introspection'), 1, 'only the 12 KiB introspection request reached its handler');
    // Node's parser refuses it before a request (or a route) exists.
    assert.equal(await failures(as, { endpoint: 'other', reason: 'header_too_large' }), 2);
  });

  it('a body announced over the limit gets 413 invalid_request at once and a closed connection, unread; 16384 bytes are accepted', async (t) => {
    const as = await startAs(t);
    for (const endpoint of ENDPOINTS) {
      for (const length of [ONE_GIB, String(LIMIT + 1)]) {
        const connection = await h1(t, as);
        const res = await h1Announced(connection, 'POST', endpoint.path, [['content-type', FORM]], length);
        assertOAuthError(res, 413, 'The request body is too large');
        assert.ok(res.ms < PROMPT_MS, `answered in ${res.ms} ms without the body`);
        assert.equal(res.headers.connection, 'close');
        assert.ok(await closesWithin(connection.socket, PROMPT_MS), 'the server closes the connection instead of reading the body');
      }
      assert.equal(await failures(as, { endpoint: endpoint.name, reason: 'body_too_large' }), 2);
      assert.equal(await handled(as, endpoint.name), 0, 'no handler ran');
    }
    // Exactly at the limit: read, parsed and handled.
    const connection = await h1(t, as);
    const body = `${ENDPOINTS[0]!.body}&x=`;
    assertOk(ENDPOINTS[0]!, await h1Post(connection, '/token', body + padding(LIMIT - body.length)));
    // The duration is recorded once the response has been flushed, which may be after the client read it.
    await waitFor(async () => (await handled(as, 'token')) === 1, { timeoutMs: 2000, message: 'the token request at the limit was handled' });
  });

  it('a chunked body (no content-length) gets 413 once it crosses the limit, before it ends', async (t) => {
    const as = await startAs(t);
    const ok = await h1(t, as);
    const accepted = ok.request({ method: 'POST', path: '/token', headers: [['content-type', FORM], ['transfer-encoding', 'chunked']], bodyPending: true });
    const body = ENDPOINTS[0]!.body;
    ok.socket.write(`${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
    assertOk(ENDPOINTS[0]!, await accepted);

    for (const endpoint of ENDPOINTS) {
      const connection = await h1(t, as);
      const started = Date.now();
      const pending = connection.request({ method: 'POST', path: endpoint.path, headers: [['content-type', FORM], ['transfer-encoding', 'chunked']], bodyPending: true });
      connection.socket.write(chunked(5, false)); // 20 KiB of a body that never ends
      const res = await pending;
      assertOAuthError(res, 413, 'The request body is too large');
      assert.ok(Date.now() - started < PROMPT_MS);
      assert.equal(res.headers.connection, 'close');
      assert.ok(await closesWithin(connection.socket, PROMPT_MS));
      assert.equal(await failures(as, { endpoint: endpoint.name, reason: 'body_too_large' }), 1);
    }
    assert.equal(await handled(as, 'token'), 1, 'only the complete small body was handled');
    assert.equal(await handled(as, 'introspection'), 0);
  });

  it('a response sent before the body was read closes the connection instead of draining the upload (metadata, wrong content type, 404)', async (t) => {
    // Regression: Node keeps an HTTP/1.1 connection alive after such a response and reads, then
    // discards, the whole announced body; an unauthenticated client could make the AS read any
    // amount. The AS now sends `Connection: close` whenever the body is unread.
    const as = await startAs(t);
    const cases: Array<{ method: string; path: string; headers: Array<[string, string]>; check(res: RawResponse): void }> = [
      {
        method: 'GET',
        path: '/.well-known/oauth-authorization-server',
        headers: [],
        check: (res) => {
          assert.equal(res.status, 200);
          assert.equal((JSON.parse(res.body) as { issuer: string }).issuer, as.server.issuer);
        },
      },
      {
        method: 'POST',
        path: '/token',
        headers: [['content-type', 'text/plain']],
        check: (res) => assertOAuthError(res, 400, 'The request body must be application/x-www-form-urlencoded'),
      },
      { method: 'POST', path: '/token', headers: [], check: (res) => assertOAuthError(res, 400, 'The request body must be application/x-www-form-urlencoded') },
      { method: 'POST', path: '/nothing', headers: [], check: (res) => assertOAuthError(res, 404, 'Not found', 'not_found') },
    ];
    for (const c of cases) {
      const connection = await h1(t, as);
      const res = await h1Announced(connection, c.method, c.path, c.headers);
      c.check(res);
      assert.ok(res.ms < PROMPT_MS);
      assert.equal(res.headers.connection, 'close', `${c.method} ${c.path}`);
      assert.ok(await closesWithin(connection.socket, PROMPT_MS), `${c.method} ${c.path}: connection closed`);
    }
    assert.equal(await failures(as, { endpoint: 'token', reason: 'content_type' }), 2);
    assert.equal(await handled(as, 'token'), 0);
    // A request whose body was read keeps its connection.
    const connection = await h1(t, as);
    const first = await h1Post(connection, '/token', ENDPOINTS[0]!.body);
    assertOk(ENDPOINTS[0]!, first);
    assert.notEqual(first.headers.connection, 'close');
    assertOk(ENDPOINTS[1]!, await h1Post(connection, '/introspect', ENDPOINTS[1]!.body));
  });
});

describe('authorization server request limits, HTTP/2', () => {
  it('header section: 12 KiB is served; 17 KiB resets the stream (ENHANCE_YOUR_CALM) before any handler; the connection carries on', async (t) => {
    const as = await startAs(t);
    const session = h2(t, as);
    for (const endpoint of ENDPOINTS) {
      assertOk(endpoint, await h2Call(session, h2Post(endpoint.path, { 'x-padding': padding(12 * 1024) }), { kind: 'full', data: endpoint.body }));
      const refused = await h2Call(session, h2Post(endpoint.path, { 'x-padding': padding(17 * 1024) }), { kind: 'full', data: endpoint.body });
      assert.equal(refused.status, 0, 'no response');
      assert.equal(refused.rstCode, ENHANCE_YOUR_CALM);
      assertOk(endpoint, await h2Call(session, h2Post(endpoint.path), { kind: 'full', data: endpoint.body }));
    }
    assert.equal(await handled(as, 'token'), 2);
    assert.equal(await handled(as, 'introspection'), 2);
  });

  it('a client that never acknowledges SETTINGS meets the same 16 KiB limit from its first request (Node alone would apply none)', async (t) => {
    // Regression: Node enforces maxHeaderListSize only after the client's SETTINGS ACK, so these
    // 17 KiB and 100 KiB header sections reached the handlers. The AS now resets them itself.
    const as = await startAs(t);
    const { cert, key } = identity(as);
    const connection = await connectWithoutSettingsAck(as.server.url, { cert, key, ca: as.pki.ca.cert });
    t.after(() => connection.close());
    const [token, introspection] = ENDPOINTS as [Endpoint, Endpoint];
    assertOk(token, await connection.request(h2Post('/token', { 'x-padding': padding(12 * 1024) }), token.body));
    for (const size of [17 * 1024, 100 * 1024]) {
      for (const endpoint of ENDPOINTS) {
        const refused = await connection.request(h2Post(endpoint.path, { 'x-padding': padding(size) }), endpoint.body);
        assert.equal(refused.status, 0, `${endpoint.path} ${size}: no response`);
        assert.equal(refused.rstCode, ENHANCE_YOUR_CALM, `${endpoint.path} ${size}`);
      }
    }
    assertOk(introspection, await connection.request(h2Post('/introspect'), introspection.body));
    assert.ok(connection.withheld() >= 1, 'the server SETTINGS were never acknowledged');
    assert.equal(await handled(as, 'token'), 1);
    assert.equal(await handled(as, 'introspection'), 1);
    assert.equal(await failures(as, { endpoint: 'token', reason: 'header_too_large' }), 2);
    assert.equal(await failures(as, { endpoint: 'introspection', reason: 'header_too_large' }), 2);
  });

  it('a body announced over the limit gets 413 invalid_request at once and the stream is reset, unread; the connection carries on', async (t) => {
    const as = await startAs(t);
    const session = h2(t, as);
    for (const endpoint of ENDPOINTS) {
      for (const length of [ONE_GIB, String(LIMIT + 1)]) {
        const res = await h2Call(session, h2Post(endpoint.path, { 'content-length': length }), { kind: 'pending' });
        assertOAuthError({ ...res, headers: res.headers as Record<string, unknown> }, 413, 'The request body is too large');
        assert.ok(res.ms < PROMPT_MS, `answered in ${res.ms} ms`);
        assert.ok(res.closedByServer, 'the server closes the stream without waiting for the body');
        assert.equal(res.rstCode, 0, 'RST_STREAM NO_ERROR (RFC 9113 section 8.1)');
        assert.equal(res.headers.connection, undefined);
      }
      assertOk(endpoint, await h2Call(session, h2Post(endpoint.path), { kind: 'full', data: endpoint.body }));
      assert.equal(await failures(as, { endpoint: endpoint.name, reason: 'body_too_large' }), 2);
      assert.equal(await handled(as, endpoint.name), 1, 'only the small request was handled');
    }
  });

  it('a body without content-length gets 413 once it crosses the limit, before it ends', async (t) => {
    const as = await startAs(t);
    const session = h2(t, as);
    for (const endpoint of ENDPOINTS) {
      assertOk(endpoint, await h2Call(session, h2Post(endpoint.path), { kind: 'full', data: endpoint.body }));
      const res = await h2Call(session, h2Post(endpoint.path), { kind: 'partial', data: Buffer.from(padding(20 * 1024)) });
      assertOAuthError({ ...res, headers: res.headers as Record<string, unknown> }, 413, 'The request body is too large');
      assert.ok(res.ms < PROMPT_MS);
      assert.ok(res.closedByServer);
      assert.equal(res.rstCode, 0);
      assert.equal(await failures(as, { endpoint: endpoint.name, reason: 'body_too_large' }), 1);
      assert.equal(await handled(as, endpoint.name), 1);
    }
  });

  it('a response sent before the body was read resets just that stream (metadata, wrong content type)', async (t) => {
    const as = await startAs(t);
    const session = h2(t, as);
    const metadata = await h2Call(session, { ':path': '/.well-known/oauth-authorization-server', 'content-length': ONE_GIB }, { kind: 'pending' });
    assert.equal(metadata.status, 200);
    assert.equal((JSON.parse(metadata.body) as { issuer: string }).issuer, as.server.issuer);
    assert.ok(metadata.closedByServer);
    assert.equal(metadata.rstCode, 0);
    const wrongType = await h2Call(session, h2Post('/token', { 'content-length': ONE_GIB }, 'text/plain'), { kind: 'pending' });
    assertOAuthError({ ...wrongType, headers: wrongType.headers as Record<string, unknown> }, 400, 'The request body must be application/x-www-form-urlencoded');
    assert.ok(wrongType.closedByServer);
    assert.equal(wrongType.rstCode, 0);
    assertOk(ENDPOINTS[0]!, await h2Call(session, h2Post('/token'), { kind: 'full', data: ENDPOINTS[0]!.body }));
    assert.equal(await handled(as, 'token'), 1);
  });
});
