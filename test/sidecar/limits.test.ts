/**
 * Request size limits at the sidecars (issue 7, adversarial suite). The ingress refuses header
 * sections over 16 KiB (HTTP/1.1 431, HTTP/2 RST_STREAM ENHANCE_YOUR_CALM) before the verifier
 * runs, and refuses unauthenticated requests that announce a huge body at once, without reading
 * the body or forwarding anything to the application. The egress's agent listener holds the same
 * 16 KiB header limit on HTTP/1.1 and h2c. Every case starts its own stack
 * (application <- ingress <- egress), so the counters are exact.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect as http2Connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { describe, it, type TestContext } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { createSessionBindingProof, deriveSessionExporter } from '@tether/core';
import type { IssuedCertificate } from '@tether/pki';
import { openRawConnection, type RawConnection } from '../adapters/raw.js';
import { httpAnswer, type HttpAnswer } from '../helpers/http-answer.js';
import { connectWithoutSettingsAck, type UnackedConnection } from '../helpers/h2-unacked.js';
import { closesWithin, h2Call, padding } from '../helpers/limits.js';
import { startStack, type Stack } from './helpers/stack.js';

const ONE_GIB = String(2 ** 30);
const PROMPT_MS = 1000;
const ENHANCE_YOUR_CALM = 11;
const METADATA = '/.well-known/oauth-protected-resource';

async function stackFor(t: TestContext): Promise<Stack> {
  const stack = await startStack();
  t.after(() => stack.close());
  return stack;
}

const client = (stack: Stack) => stack.pki.clients.client as IssuedCertificate;
const token = (stack: Stack) => stack.issuer.sessionBound(client(stack).cert);

async function raw(t: TestContext, stack: Stack, protocol: 'h2' | 'http/1.1'): Promise<RawConnection> {
  const connection = await openRawConnection(stack.ingress.url, client(stack), { protocol, ca: stack.pki.ca.cert });
  t.after(() => connection.close());
  return connection;
}

function session(t: TestContext, stack: Stack): ClientHttp2Session {
  const { cert, key } = client(stack);
  const s = http2Connect(stack.ingress.url, { cert, key, ca: stack.pki.ca.cert });
  s.on('error', () => undefined);
  t.after(() => {
    s.destroy();
  });
  return s;
}

/** An RFC 6750 refusal from the ingress: exact status, `error` in the body and the challenge. */
function assertRefusal(res: { status: number; headers: Record<string, unknown>; body: string }, error: string): void {
  assert.equal(res.status, 401, `status ${res.status}: ${res.body}`);
  const body = JSON.parse(res.body) as Record<string, string>;
  assert.deepEqual(Object.keys(body).sort(), ['error', 'error_description']);
  assert.equal(body.error, error);
  assert.equal(res.headers['cache-control'], 'no-store');
  const challenge = String(res.headers['www-authenticate']);
  // No token: a challenge without an error, naming only the RFC 9728 metadata.
  if (error === 'unauthorized') assert.match(challenge, /^Bearer resource_metadata="https:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource"$/, 'no token: a bare challenge');
  else assert.match(challenge, new RegExp(`^Bearer error="${error}"`));
}

/** What the verifier and the application saw, for "nothing got through" checks. */
function seen(stack: Stack) {
  return { verified: stack.ingress.verifier.stats.requests, proxied: stack.ingress.stats.proxied, app: stack.app.seen.length };
}

describe('ingress request limits, HTTP/1.1', () => {
  it('header section: 12 KiB is verified and proxied; 17 KiB gets 431 and a closed connection, never verified or forwarded', async (t) => {
    const stack = await stackFor(t);
    const bearer = await token(stack);
    const ok = await raw(t, stack, 'http/1.1');
    const res = await ok.request({ path: '/echo', headers: [['authorization', `Bearer ${bearer}`], ['session-binding-proof', await ok.proof(bearer)], ['x-padding', padding(12 * 1024)]] });
    assert.equal(res.status, 200, res.body);
    assert.equal(stack.app.seen[0]?.headers['x-padding']?.length, 12 * 1024);

    const connection = await raw(t, stack, 'http/1.1');
    const refused = await connection.request({ path: '/echo', headers: [['authorization', `Bearer ${bearer}`], ['session-binding-proof', await connection.proof(bearer)], ['x-padding', padding(17 * 1024)]] });
    assert.equal(refused.status, 431);
    assert.equal(refused.headers.connection, 'close');
    assert.equal(refused.body, '');
    assert.ok(await closesWithin(connection.socket, PROMPT_MS));
    assert.deepEqual(seen(stack), { verified: 1, proxied: 1, app: 1 }, 'the 17 KiB request was neither verified nor forwarded');
  });

  it('an unauthenticated request announcing a 1 GiB body gets 401 at once and a closed connection; nothing is read or forwarded', async (t) => {
    const stack = await stackFor(t);
    const bearer = await token(stack);
    const announced: Array<[string, string]> = [['content-type', 'application/octet-stream'], ['content-length', ONE_GIB]];
    const cases: Array<{ headers: Array<[string, string]>; error: string }> = [
      { headers: [], error: 'unauthorized' },
      { headers: [['authorization', `Bearer ${bearer}`]], error: 'use_session_binding' },
      { headers: [['transfer-encoding', 'chunked']], error: 'unauthorized' },
    ];
    for (const c of cases) {
      const connection = await raw(t, stack, 'http/1.1');
      const started = Date.now();
      const headers = c.headers.some(([k]) => k === 'transfer-encoding') ? [['content-type', 'application/octet-stream'] as [string, string], ...c.headers] : [...announced, ...c.headers];
      const res = await connection.request({ method: 'POST', path: '/upload', headers, bodyPending: true });
      assertRefusal(res, c.error);
      assert.ok(Date.now() - started < PROMPT_MS);
      assert.equal(res.headers.connection, 'close');
      assert.ok(await closesWithin(connection.socket, PROMPT_MS), 'the ingress closes the connection instead of reading the body');
    }
    assert.deepEqual(seen(stack), { verified: 3, proxied: 0, app: 0 });
    assert.equal(stack.ingress.verifier.stats.failures.no_token, 2);
    assert.equal(stack.ingress.verifier.stats.failures.proof_missing, 1);
  });

  it('metadata answered before a 1 GiB body closes the connection instead of draining it', async (t) => {
    // Regression: the metadata response left the connection alive, and Node read and discarded
    // the whole announced body.
    const stack = await stackFor(t);
    const connection = await raw(t, stack, 'http/1.1');
    const started = Date.now();
    const res = await connection.request({ method: 'GET', path: METADATA, headers: [['content-length', ONE_GIB]], bodyPending: true });
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.body) as { tls_session_bound_access_tokens_required: boolean }).tls_session_bound_access_tokens_required, true);
    assert.ok(Date.now() - started < PROMPT_MS);
    assert.equal(res.headers.connection, 'close');
    assert.ok(await closesWithin(connection.socket, PROMPT_MS));
    // Without a body the connection stays.
    const keep = await raw(t, stack, 'http/1.1');
    const first = await keep.request({ path: METADATA, headers: [] });
    assert.equal(first.status, 200);
    assert.notEqual(first.headers.connection, 'close');
    assert.equal((await keep.request({ path: METADATA, headers: [] })).status, 200);
  });
});

describe('ingress request limits, HTTP/2', () => {
  it('header section: 12 KiB is verified and proxied; 17 KiB resets the stream (ENHANCE_YOUR_CALM), never verified or forwarded', async (t) => {
    const stack = await stackFor(t);
    const bearer = await token(stack);
    const connection = await raw(t, stack, 'h2');
    const proof = await connection.proof(bearer);
    const headers = (pad: number): Array<[string, string]> => [['authorization', `Bearer ${bearer}`], ['session-binding-proof', proof], ['x-padding', padding(pad)]];
    assert.equal((await connection.request({ path: '/echo', headers: headers(12 * 1024) })).status, 200);
    await assert.rejects(connection.request({ path: '/echo', headers: headers(17 * 1024) }), /NGHTTP2_ENHANCE_YOUR_CALM/);
    assert.equal((await connection.request({ path: '/echo', headers: headers(0) })).status, 200, 'the connection carries on');
    assert.deepEqual(seen(stack), { verified: 2, proxied: 2, app: 2 });
  });

  it('a client that never acknowledges SETTINGS meets the same 16 KiB limit from its first request (Node alone would apply none)', async (t) => {
    // Regression: Node enforces maxHeaderListSize only after the client's SETTINGS ACK, so these
    // header sections were verified and forwarded to the application.
    const stack = await stackFor(t);
    const { cert, key } = client(stack);
    const connection: UnackedConnection = await connectWithoutSettingsAck(stack.ingress.url, { cert, key, ca: stack.pki.ca.cert });
    t.after(() => connection.close());
    const bearer = await token(stack);
    const proof = await createSessionBindingProof({
      privateKey: createPrivateKey(key),
      certificate: new X509Certificate(cert),
      accessToken: bearer,
      ekm: deriveSessionExporter(connection.socket as TLSSocket, ['TLSv1.3']),
    });
    const request = (pad: number): OutgoingHttpHeaders => ({ ':path': '/echo', authorization: `Bearer ${bearer}`, 'session-binding-proof': proof, 'x-padding': padding(pad) });
    const first = await connection.request(request(12 * 1024));
    assert.equal(first.status, 200, first.body);
    for (const size of [17 * 1024, 100 * 1024]) {
      const refused = await connection.request(request(size));
      assert.equal(refused.status, 0, `${size}: no response`);
      assert.equal(refused.rstCode, ENHANCE_YOUR_CALM, `${size}`);
    }
    assert.equal((await connection.request(request(0))).status, 200);
    assert.ok(connection.withheld() >= 1, 'the server SETTINGS were never acknowledged');
    assert.deepEqual(seen(stack), { verified: 2, proxied: 2, app: 2 });
    assert.equal(stack.ingress.stats.failures.header_too_large, 2);
  });

  it('an unauthenticated request announcing a 1 GiB body gets 401 at once and its stream reset; nothing is read or forwarded', async (t) => {
    // Regression: the ingress resumed refused requests, so Node kept the stream open and read
    // whatever the client went on uploading.
    const stack = await stackFor(t);
    const bearer = await token(stack);
    const s = session(t, stack);
    const post = (extra: OutgoingHttpHeaders): OutgoingHttpHeaders => ({ ':method': 'POST', ':path': '/upload', 'content-type': 'application/octet-stream', ...extra });
    const cases: Array<{ headers: OutgoingHttpHeaders; error: string; partial: boolean }> = [
      { headers: { 'content-length': ONE_GIB }, error: 'unauthorized', partial: false },
      { headers: { 'content-length': ONE_GIB, authorization: `Bearer ${bearer}` }, error: 'use_session_binding', partial: false },
      { headers: {}, error: 'unauthorized', partial: true },
    ];
    for (const c of cases) {
      const res = await h2Call(s, post(c.headers), c.partial ? { kind: 'partial', data: Buffer.alloc(32 * 1024) } : { kind: 'pending' });
      assertRefusal({ ...res, headers: res.headers as Record<string, unknown> }, c.error);
      assert.ok(res.ms < PROMPT_MS, `answered in ${res.ms} ms`);
      assert.ok(res.closedByServer, 'the ingress resets the stream instead of waiting for the body');
      assert.equal(res.rstCode, 0, 'RST_STREAM NO_ERROR');
    }
    const metadata = await h2Call(s, { ':path': METADATA, 'content-length': ONE_GIB }, { kind: 'pending' });
    assert.equal(metadata.status, 200);
    assert.ok(metadata.closedByServer);
    assert.deepEqual(seen(stack), { verified: 3, proxied: 0, app: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// The egress's agent-facing listener (plain HTTP/1.1 and h2c on loopback)

function agentH1(stack: Stack, headers: Record<string, string>): Promise<HttpAnswer> {
  return httpAnswer('agent GET /api/echo', (onResponse) => httpRequest(`${stack.egress.url}/api/echo`, { headers, agent: false }, onResponse));
}

describe('egress agent listener header limit', () => {
  it('HTTP/1.1: 12 KiB goes through to the application; 17 KiB gets 431 from the egress, never forwarded', async (t) => {
    const stack = await stackFor(t);
    const authorization = `Bearer ${await token(stack)}`;
    const ok = await agentH1(stack, { authorization, 'x-padding': padding(12 * 1024) });
    assert.equal(ok.status, 200, ok.body);
    const refused = await agentH1(stack, { authorization, 'x-padding': padding(17 * 1024) });
    assert.equal(refused.status, 431);
    assert.equal(refused.headers.connection, 'close');
    assert.equal(stack.egress.stats.requests, 1);
    assert.equal(stack.app.seen.length, 1);
  });

  it('h2c: 17 KiB resets the stream (ENHANCE_YOUR_CALM) at the egress, acknowledged SETTINGS or not; nothing reaches the upstream', async (t) => {
    // Regression: h2c took 64 KiB (and more before the SETTINGS ACK) and forwarded it; the
    // upstream reset it and the agent got 502 upstream_unavailable.
    const stack = await stackFor(t);
    const authorization = `Bearer ${await token(stack)}`;
    const request = (pad: number): OutgoingHttpHeaders => ({ ':path': '/api/echo', authorization, 'x-padding': padding(pad) });
    const acked = http2Connect(stack.egress.url);
    acked.on('error', () => undefined);
    t.after(() => {
      acked.destroy();
    });
    assert.equal((await h2Call(acked, request(12 * 1024), { kind: 'none' })).status, 200);
    const reset = await h2Call(acked, request(17 * 1024), { kind: 'none' });
    assert.equal(reset.status, 0);
    assert.equal(reset.rstCode, ENHANCE_YOUR_CALM);
    assert.equal((await h2Call(acked, request(0), { kind: 'none' })).status, 200, 'the session carries on');

    const unacked = await connectWithoutSettingsAck(stack.egress.url);
    t.after(() => unacked.close());
    const first = await unacked.request(request(17 * 1024));
    assert.equal(first.status, 0);
    assert.equal(first.rstCode, ENHANCE_YOUR_CALM);
    assert.equal((await unacked.request(request(12 * 1024))).status, 200);
    assert.equal(stack.egress.stats.failures.header_too_large, 1, 'the unacknowledged one was refused by the egress itself');
    assert.equal(stack.egress.stats.requests, 3);
    assert.equal(stack.egress.stats.failures.upstream_error, undefined);
    assert.equal(stack.app.seen.length, 3);
  });
});
