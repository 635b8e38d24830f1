/**
 * End to end: an unmodified client (global fetch, or node:http2 for h2c) -> egress sidecar (holds the
 * mTLS key, adds proofs) -> ingress sidecar (verifies) -> echo application.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as http2Connect, createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { SessionBoundClient, parseWwwAuthenticate } from '@tether/core';
import { EgressDirectory, decodePrincipal, startEgress } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { startEchoServer, testVerifier, type RunningServer } from '../helpers/servers.js';
import { httpAnswer } from '../helpers/http-answer.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';
import { startStack, startTestIngress, type Stack } from './helpers/stack.js';

/** Deadline for one request (and its body): far beyond any answer these tests expect. */
const REQUEST_DEADLINE_MS = 10_000;

/** `fetch` that fails with a message naming the request if it (or its body) takes longer than the deadline. */
function call(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: deadline(REQUEST_DEADLINE_MS, `${init.method ?? 'GET'} ${url}`) });
}

async function listenTls(server: TlsServer | Http2SecureServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

describe('egress -> ingress -> application', () => {
  let stack: Stack;
  let token: string;
  let h1Resource: RunningServer;
  let resetServer: TlsServer;
  let flaky: Http2SecureServer;
  let h1Issuer: TestIssuer;
  let churn: Http2SecureServer;
  let churnVerifier: ReturnType<typeof testVerifier>;
  const churnSessions = new Set<ServerHttp2Session>();
  const flakyProofs: string[] = [];
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  before(async () => {
    const pki = await testPki();
    // HTTP/1.1-only resource (ALPN fallback), a TLS server that resets, and one that refuses the first proof.
    h1Issuer = await TestIssuer.create('h1');
    h1Resource = await startEchoServer(pki, testVerifier(h1Issuer), { protocol: 'http/1.1' });
    resetServer = createTlsServer({ cert: pki.server.cert, key: pki.server.key, ALPNProtocols: ['h2'] }, (socket) => socket.destroy());
    const resetPort = await listenTls(resetServer);
    flaky = createSecureServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
      flakyProofs.push(String(req.headers['session-binding-proof']));
      if (flakyProofs.length === 1) {
        res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_proof", error_description="The proof is invalid"' }).end('{}');
      } else res.writeHead(200, { 'content-type': 'text/plain' }).end('second time lucky');
    });
    const flakyPort = await listenTls(flaky);
    // A session-bound resource whose connections the test can cut.
    churnVerifier = testVerifier(h1Issuer);
    churn = createSecureServer(
      { ...sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert }), allowHTTP1: true },
      sessionBoundHandler(churnVerifier, (_req, res) => {
        res.writeHead(200).end('ok');
      }),
    );
    churn.on('session', (session) => {
      churnSessions.add(session);
      session.on('close', () => churnSessions.delete(session));
    });
    const churnPort = await listenTls(churn);
    stack = await startStack({
      extraRoutes: [
        { name: 'h1', upstream: h1Resource.url, audience: AUDIENCE },
        { name: 'reset', upstream: `https://127.0.0.1:${resetPort}`, audience: AUDIENCE },
        { name: 'dead', upstream: 'https://127.0.0.1:1', audience: AUDIENCE },
        { name: 'flaky', upstream: `https://localhost:${flakyPort}`, audience: AUDIENCE },
        { name: 'churn', upstream: `https://127.0.0.1:${churnPort}`, audience: AUDIENCE },
      ],
    });
    token = await stack.issuer.sessionBound(pki.clients.client!.cert);
  });

  after(async () => {
    await stack?.close();
    await h1Resource?.close();
    resetServer?.close();
    flaky?.close();
    for (const session of churnSessions) session.destroy();
    churn?.close();
  });

  it('a plain fetch with only Authorization: Bearer succeeds through both sidecars', async () => {
    const res = await call(`${stack.egress.url}/api/hello?x=1`, { headers: bearer(token) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-app'), 'echo');
    assert.equal(res.headers.get('x-hop'), null, 'fields named in Connection are removed');
    const echo = (await res.json()) as { url: string; method: string; headers: Record<string, string> };
    assert.equal(echo.url, '/hello?x=1');
    const principal = decodePrincipal(echo.headers['x-tether-principal']!);
    assert.equal(principal.sub, 'user-1');
    assert.equal(principal.binding, 'session');
    assert.equal(echo.headers.authorization, `Bearer ${token}`, 'the token is passed on by default');
    assert.equal(echo.headers['session-binding-proof'], undefined, 'the proof is not passed to the application');
  });

  it('POST bodies are forwarded', async () => {
    const res = await call(`${stack.egress.url}/api/upload`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'text/plain' }, body: 'hello body' });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { body: string }).body, 'hello body');
  });

  it('large and unknown-length bodies stream (not buffered for retry)', async () => {
    const big = 'x'.repeat(3 * 1024 * 1024);
    const res = await call(`${stack.egress.url}/api/big`, { method: 'POST', headers: bearer(token), body: big });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { body: string }).body.length, big.length);
    const chunks = ['one,', 'two,', 'three'];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(next));
      },
    });
    const chunked = await call(`${stack.egress.url}/api/chunked`, { method: 'POST', headers: bearer(token), body: stream, duplex: 'half' } as RequestInit);
    assert.equal(chunked.status, 200);
    assert.equal(((await chunked.json()) as { body: string }).body, 'one,two,three');
  });

  it('HEAD requests and metadata over HTTP/2 do not break the connection', async () => {
    const head = await call(`${stack.egress.url}/api/.well-known/oauth-protected-resource`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const headApp = await call(`${stack.egress.url}/api/x`, { method: 'HEAD', headers: bearer(token) });
    assert.equal(headApp.status, 200);
    const after = await call(`${stack.egress.url}/api/x`, { headers: bearer(token) });
    assert.equal(after.status, 200);
    await after.arrayBuffer();
  });

  it('1000 requests sign exactly one proof per token per upstream connection', async () => {
    const other = await stack.issuer.sessionBound(stack.pki.clients.client!.cert, { sub: 'user-2' });
    const egressBefore = { ...stack.egress.stats };
    const verifications = stack.ingress.verifier.stats.proofVerifications;
    let next = 0;
    const worker = async () => {
      while (next < 1000) {
        next++;
        const res = await call(`${stack.egress.url}/api/n`, { headers: bearer(other) });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    assert.equal(stack.egress.stats.upstreamConnectionsOpened, egressBefore.upstreamConnectionsOpened, 'no new upstream connection');
    assert.equal(stack.egress.stats.proofsSigned - egressBefore.proofsSigned, 1);
    assert.equal(stack.egress.stats.proofCacheHits - egressBefore.proofCacheHits, 999);
    assert.equal(stack.ingress.verifier.stats.proofVerifications - verifications, 1);
  });

  it('an h2c (prior knowledge) agent is served too, routed by :authority', async () => {
    const session = http2Connect(stack.egress.url);
    try {
      const stream = session.request({ ':path': '/h2c', ':authority': 'api', ...bearer(token) });
      let body = '';
      stream.setEncoding('utf8').on('data', (c: string) => (body += c));
      const [headers] = (await withTimeout(once(stream, 'response'), REQUEST_DEADLINE_MS, 'h2c GET /h2c: no response')) as [Record<string, string>];
      await withTimeout(once(stream, 'end'), REQUEST_DEADLINE_MS, 'h2c GET /h2c: the body did not end');
      assert.equal(headers[':status'], 200);
      assert.equal((JSON.parse(body) as { url: string }).url, '/h2c');
    } finally {
      session.close();
    }
  });

  it('falls back to HTTP/1.1 upstream and still signs once per connection', async () => {
    const t = await h1Issuer.sessionBound(stack.pki.clients.client!.cert);
    const before = stack.egress.stats.proofsSigned;
    for (let i = 0; i < 20; i++) {
      const res = await call(`${stack.egress.url}/h1/x`, { headers: bearer(t) });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    assert.equal(stack.egress.stats.proofsSigned - before, 1);
    assert.equal(h1Resource.verifier.stats.proofVerifications, 1);
  });

  it('a reconnect gets a fresh proof: the per-connection cache dies with the connection', async () => {
    const t = await h1Issuer.sessionBound(stack.pki.clients.client!.cert, { sub: 'churner' });
    const get = async () => {
      const res = await call(`${stack.egress.url}/churn/x`, { headers: bearer(t) });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    };
    const signed = stack.egress.stats.proofsSigned;
    const opened = stack.egress.stats.upstreamConnectionsOpened;
    for (let i = 0; i < 5; i++) await get();
    assert.equal(stack.egress.stats.proofsSigned - signed, 1);
    assert.equal(churnSessions.size, 1);
    const openBefore = stack.egress.stats.upstreamConnectionsOpen;
    for (const session of churnSessions) session.destroy();
    await waitFor(() => stack.egress.stats.upstreamConnectionsOpen < openBefore, { message: 'the egress saw the cut connection close' });
    for (let i = 0; i < 5; i++) await get();
    assert.equal(stack.egress.stats.upstreamConnectionsOpened - opened, 2, 'one reconnect');
    assert.equal(stack.egress.stats.proofsSigned - signed, 2, 'one new proof for the new connection');
    assert.equal(churnVerifier.stats.proofVerifications, 2);
    // A GOAWAY (graceful close by the server) is followed too.
    const openBeforeGoaway = stack.egress.stats.upstreamConnectionsOpen;
    for (const session of churnSessions) session.close();
    await waitFor(() => stack.egress.stats.upstreamConnectionsOpen < openBeforeGoaway, { message: 'the egress closed the connection the server sent GOAWAY on' });
    await get();
    assert.equal(stack.egress.stats.proofsSigned - signed, 3);
  });

  it('the ingress also serves session-bound HTTP/1.1 clients directly', async () => {
    const client = new SessionBoundClient({ cert: stack.pki.clients.client!.cert, key: stack.pki.clients.client!.key, ca: stack.pki.ca.cert, protocol: 'http/1.1', timeoutMs: REQUEST_DEADLINE_MS });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await client.request(`${stack.ingress.url}/direct`, { token, headers: { 'x-forwarded-client-cert': 'forged' } });
        assert.equal(res.status, 200);
        const echo = JSON.parse(res.body.toString('utf8')) as { headers: Record<string, string> };
        assert.equal(echo.headers['x-forwarded-client-cert'], undefined);
        assert.equal(decodePrincipal(echo.headers['x-tether-principal']!).binding, 'session');
      }
      assert.equal(client.stats.proofsSigned, 1);
    } finally {
      await client.close();
    }
  });

  it('the token stolen from the agent fails at the ingress with the attacker’s own certificate and never reaches the application', async () => {
    const tag = `${process.pid}-${Date.now()}`;
    const path = (who: string) => `/stolen-check?who=${who}-${tag}`;
    const seenPaths = (from: number) => stack.app.seen.slice(from).map((r) => r.url);
    // The agent's own request with the token arrives, token and all.
    const honest = await call(`${stack.egress.url}/api${path('agent')}`, { headers: bearer(token) });
    assert.equal(honest.status, 200);
    await honest.arrayBuffer();
    const arrived = stack.app.seen.filter((r) => r.url === path('agent'));
    assert.equal(arrived.length, 1, 'the agent’s request reached the application');
    assert.equal(arrived[0]!.headers.authorization, `Bearer ${token}`);
    const seenBefore = stack.app.seen.length;

    const attacker = stack.pki.clients.attacker!;
    // With a proof signed by the attacker's key over the attacker's connection:
    const client = new SessionBoundClient({ cert: attacker.cert, key: attacker.key, ca: stack.pki.ca.cert, timeoutMs: REQUEST_DEADLINE_MS });
    try {
      const res = await client.request(`${stack.ingress.url}${path('attacker-proof')}`, { token });
      assert.equal(res.status, 401);
      assert.equal(parseWwwAuthenticate(res.headers['www-authenticate']).find((c) => c.scheme === 'bearer')?.params.error, 'invalid_token');
    } finally {
      await client.close();
    }
    // And as a plain bearer token without a proof:
    const plain = await httpAnswer('attacker GET with a plain bearer token', (onResponse) =>
      httpsRequest(`${stack.ingress.url}${path('attacker-bearer')}`, { cert: attacker.cert, key: attacker.key, ca: stack.pki.ca.cert, headers: bearer(token), agent: false }, onResponse),
    );
    assert.equal(plain.status, 401);
    assert.match(String(plain.headers['www-authenticate']), /error="(use_session_binding|invalid_token)"/);

    // The agent again, after the attacker: once it has arrived and the ingress has nothing in
    // flight, anything the ingress had let through would have arrived too.
    const again = await call(`${stack.egress.url}/api${path('agent-again')}`, { headers: bearer(token) });
    assert.equal(again.status, 200);
    await again.arrayBuffer();
    await waitFor(() => stack.ingress.state().activeRequests === 0, { message: 'the ingress has no request in flight' });
    assert.deepEqual(
      seenPaths(seenBefore).filter((url) => url?.includes('attacker')),
      [],
      'no request of the attacker reached the application',
    );
    assert.deepEqual(seenPaths(seenBefore), [path('agent-again')], 'the application saw only the agent’s second request since the first');
  });

  it('server-sent events stream through both sidecars incrementally', async () => {
    const res = await call(`${stack.egress.url}/api/sse`, { headers: bearer(token) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    const first = await reader.read();
    assert.match(decoder.decode(first.value), /event 1/, 'the first event arrives while the response is still open');
    stack.app.releaseSse();
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += decoder.decode(value);
    }
    assert.match(rest, /event 2[\s\S]*event 3/);
  });

  it('an agent that hangs up on a long-lived stream cancels it all the way to the application', async () => {
    const closedBefore = stack.app.foreverClosed;
    // A hard hang-up (undici's fetch abort keeps the connection, so use node:http and destroy it).
    const req = httpRequest({ host: '127.0.0.1', port: (stack.egress.endpoint as { port: number }).port, path: '/api/forever', headers: bearer(token), agent: false });
    req.on('error', () => undefined);
    const firstEvent = new Promise<string>((resolve) => req.once('response', (res) => res.on('error', () => undefined).once('data', (chunk: Buffer) => resolve(String(chunk)))));
    req.end();
    try {
      assert.match(await withTimeout(firstEvent, REQUEST_DEADLINE_MS, 'GET /api/forever: no first event'), /tick/);
    } finally {
      req.destroy();
    }
    await waitFor(() => stack.app.foreverClosed === closedBefore + 1, { message: 'the application saw the stream close' });
    // Over h2c, resetting the stream does the same.
    const session = http2Connect(stack.egress.url);
    try {
      const stream = session.request({ ':path': '/api/forever', ...bearer(token) });
      await withTimeout(once(stream, 'data'), REQUEST_DEADLINE_MS, 'h2c GET /api/forever: no first event');
      stream.close(0x8);
      await waitFor(() => stack.app.foreverClosed === closedBefore + 2, { message: 'the application saw the h2c stream close' });
    } finally {
      session.close();
    }
    const ok = await call(`${stack.egress.url}/api/still-alive`, { headers: bearer(token) });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
  });

  it('identity headers injected by the client are stripped; the app gets the verified principal', async () => {
    const res = await call(`${stack.egress.url}/api/whoami`, {
      headers: {
        ...bearer(token),
        'client-cert': ':Zm9y:',
        'x-forwarded-client-cert': 'By=spiffe://evil;URI=spiffe://evil/admin',
        'x-tether-principal': Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url'),
        'x-ssl-client-s-dn': 'CN=admin',
        'x-forwarded-for': '10.6.6.6',
        forwarded: 'for=10.6.6.6',
        'session-binding-proof': 'eyJhbGciOiJub25lIn0.e30.',
      },
    });
    assert.equal(res.status, 200, 'an injected Session-Binding-Proof is dropped by the egress, not forwarded');
    const echo = (await res.json()) as { headers: Record<string, string> };
    for (const h of ['client-cert', 'x-forwarded-client-cert', 'x-ssl-client-s-dn', 'forwarded', 'session-binding-proof']) assert.equal(echo.headers[h], undefined, h);
    assert.notEqual(echo.headers['x-forwarded-for'], '10.6.6.6');
    const principal = decodePrincipal(echo.headers['x-tether-principal']!);
    assert.equal(principal.sub, 'user-1');
    assert.equal(principal.client_id, 'client');
    assert.equal(principal.scope, 'read write');
    assert.ok(principal.cnf?.['x5t#S256']);
  });

  it('policy: unknown destinations and tokens for another audience get 403', async () => {
    const unknown = await call(`${stack.egress.url}/nope/x`, { headers: bearer(token) });
    assert.equal(unknown.status, 403);
    assert.equal(((await unknown.json()) as { error: string }).error, 'destination_not_allowed');
    // Route "other" expects the upstream origin as audience; this token is for AUDIENCE.
    const wrongAud = await call(`${stack.egress.url}/other/x`, { headers: bearer(token) });
    assert.equal(wrongAud.status, 403);
    assert.equal(((await wrongAud.json()) as { error: string }).error, 'token_not_allowed');
    for (const path of ['/api/../x', '/api/%2E%2e/x', '/api/./x']) {
      const { status } = await httpAnswer(`GET ${path}`, (onResponse) =>
        httpRequest({ host: '127.0.0.1', port: (stack.egress.endpoint as { port: number }).port, path, headers: bearer(token), agent: false }, onResponse),
      );
      assert.equal(status, 400, path);
    }
    const opaque = await call(`${stack.egress.url}/api/x`, { headers: bearer('opaque-token-value') });
    assert.equal(opaque.status, 403);
    assert.ok((stack.egress.stats.failures.audience_mismatch ?? 0) >= 1);
    assert.ok((stack.egress.stats.failures.destination_not_allowed ?? 0) >= 1);
  });

  it('a binding refusal is retried once on a fresh proof, invisibly to the agent', async () => {
    const retries = stack.egress.stats.retries;
    const res = await call(`${stack.egress.url}/flaky/x`, { headers: bearer(token) });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'second time lucky');
    assert.equal(stack.egress.stats.retries - retries, 1);
    assert.equal(flakyProofs.length, 2);
    assert.notEqual(flakyProofs[0], flakyProofs[1], 'the retry carries a freshly signed proof');
  });

  it('upstream resets and unreachable upstreams give a clean 502, and the egress keeps working', async () => {
    for (const route of ['reset', 'dead']) {
      const res = await call(`${stack.egress.url}/${route}/x`, { headers: bearer(token) });
      assert.equal(res.status, 502, route);
      assert.equal(((await res.json()) as { error: string }).error, 'upstream_unavailable');
    }
    const appReset = await call(`${stack.egress.url}/api/reset`, { headers: bearer(token) });
    assert.equal(appReset.status, 502, 'the application resetting gives 502 from the ingress');
    await appReset.arrayBuffer();
    const ok = await call(`${stack.egress.url}/api/after`, { headers: bearer(token) });
    assert.equal(ok.status, 200);
  });

  it('protected-resource metadata is served without a token', async () => {
    const res = await call(`${stack.egress.url}/api/.well-known/oauth-protected-resource`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as Record<string, unknown>;
    assert.equal(doc.tls_session_bound_access_tokens_required, true);
    assert.equal(doc.tls_client_certificate_bound_access_tokens, true);
    assert.deepEqual(doc.bearer_methods_supported, ['header']);
    assert.deepEqual(doc.authorization_servers, ['https://as.tether.test']);
    assert.match(String(doc.resource), /^https:\/\//);
  });

  it('metrics endpoints expose the counters and /healthz', async () => {
    const egressMetrics = await (await call(`${stack.egress.metrics!.url}/metrics`)).text();
    assert.match(egressMetrics, /tether_egress_proofs_signed_total \d+/);
    assert.match(egressMetrics, /tether_egress_proof_cache_hits_total \d+/);
    assert.match(egressMetrics, /tether_egress_requests_total\{route="api",status="200"\} \d+/);
    assert.match(egressMetrics, /tether_egress_failures_total\{reason="audience_mismatch"\} \d+/);
    assert.match(egressMetrics, /tether_egress_upstream_connections \d+/);
    const spr = /tether_signatures_per_request ([\d.e-]+)/.exec(egressMetrics);
    assert.ok(spr !== null && Number(spr[1]) > 0 && Number(spr[1]) < 0.05, `signatures per request ${spr?.[1]}`);
    const ingressMetrics = await (await call(`${stack.ingress.metrics!.url}/metrics`)).text();
    assert.match(ingressMetrics, /tether_ingress_proof_verifications_total \d+/);
    assert.match(ingressMetrics, /tether_ingress_binding_cache_hits_total \d+/);
    assert.match(ingressMetrics, /tether_ingress_requests_total\{route="app",status="200"\} \d+/);
    assert.match(ingressMetrics, /tether_ingress_failures_total\{reason="[a-z_]+"\} \d+/);
    assert.match(ingressMetrics, /tether_ingress_connections \d+/);
    assert.match(ingressMetrics, /tether_signatures_per_request /);
    const health = await call(`${stack.egress.metrics!.url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
  });

  it('a first 401 names the RFC 9728 metadata, which an agent behind the egress reaches through it (MCP discovery)', async () => {
    const first = await call(`${stack.egress.url}/api/mcp`);
    assert.equal(first.status, 401);
    await first.arrayBuffer();
    const challenge = parseWwwAuthenticate(first.headers.get('www-authenticate') ?? undefined).find((c) => c.scheme === 'bearer');
    const metadataUrl = challenge?.params.resource_metadata;
    assert.equal(metadataUrl, `${stack.ingress.url}/.well-known/oauth-protected-resource`, 'the challenge names the ingress metadata at the authority the egress dialled');
    // The agent cannot dial the ingress (no key); the egress's discovery document says which route leads there.
    const directory = await EgressDirectory.load([stack.egress.url], { timeoutMs: REQUEST_DEADLINE_MS });
    assert.equal(directory.resolve(metadataUrl)?.href, `${stack.egress.url}/api/.well-known/oauth-protected-resource`);
    assert.equal(directory.resolve('https://elsewhere.example/.well-known/oauth-protected-resource'), undefined);
    const metadata = await directory.fetch(metadataUrl, { signal: deadline(REQUEST_DEADLINE_MS, 'metadata') });
    assert.equal(metadata.status, 200);
    assert.deepEqual(((await metadata.json()) as { authorization_servers?: string[] }).authorization_servers, [ISSUER]);
    await assert.rejects(directory.fetch('https://elsewhere.example/x'), /no egress route leads to/);
    // A refusal with an error carries it too (straight to the ingress: the egress would not forward a token that is not a JWT).
    const client = stack.pki.clients.client!;
    const refused = await httpAnswer('GET with a malformed token', (onResponse) =>
      httpsRequest(`${stack.ingress.url}/mcp`, { cert: client.cert, key: client.key, ca: stack.pki.ca.cert, headers: bearer('not-a-jwt'), agent: false }, onResponse),
    );
    assert.equal(refused.status, 401);
    const refusedChallenge = parseWwwAuthenticate(refused.headers['www-authenticate']).find((c) => c.scheme === 'bearer');
    assert.equal(refusedChallenge?.params.error, 'invalid_token');
    assert.equal(refusedChallenge?.params.resource_metadata, metadataUrl);
  });
});

describe('Unix sockets on both local sides', () => {
  it('agent -> egress on a Unix socket -> ingress -> application on a Unix socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-uds-'));
    const appPath = join(dir, 'app.sock');
    const egressPath = join(dir, 'egress.sock');
    const app = createHttpServer((req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`app saw ${req.url} as ${decodePrincipal(String(req.headers['x-tether-principal'])).sub}`));
    app.listen(appPath);
    await once(app, 'listening');
    const pki = await testPki();
    const issuer = await TestIssuer.create();
    const ingress = await startTestIngress(pki, issuer, `unix:${appPath}`);
    const egress = await startEgress({
      listen: `unix:${egressPath}`,
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'api', upstream: ingress.url, audience: AUDIENCE }],
      log: { level: 'silent' },
    });
    try {
      assert.equal(statSync(egressPath).mode & 0o777, 0o600);
      const token = await issuer.sessionBound(pki.clients.client!.cert);
      const { status, body } = await httpAnswer('GET /api/uds over the Unix socket', (onResponse) =>
        httpRequest({ socketPath: egressPath, path: '/api/uds', headers: { authorization: `Bearer ${token}` }, agent: false }, onResponse),
      );
      assert.equal(status, 200);
      assert.equal(body, 'app saw /uds as user-1');
    } finally {
      await egress.close();
      await ingress.close();
      app.close();
      app.closeAllConnections();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deferred key binding: the egress obtains tokens itself', () => {
  let stack: Stack;
  let tokenServer: import('node:https').Server;
  let egress: Awaited<ReturnType<typeof startEgress>>;
  const tokenRequests: URLSearchParams[] = [];

  before(async () => {
    stack = await startStack();
    const { createServer: createHttpsServer } = await import('node:https');
    tokenServer = createHttpsServer({ cert: stack.pki.server.cert, key: stack.pki.server.key, ca: stack.pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        tokenRequests.push(form);
        const peer = (req.socket as import('node:tls').TLSSocket).getPeerX509Certificate();
        if (form.get('grant_type') !== 'client_credentials' || form.get('client_id') !== 'agent-egress' || form.get('resource') !== AUDIENCE || peer === undefined) {
          res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}');
          return;
        }
        // Bound to the certificate on this connection: the egress's.
        void stack.issuer.sessionBound(peer.toString(), { sub: 'service-account' }).then((token) => {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 600 }));
        });
      });
    });
    const port = await listenTls(tokenServer as unknown as TlsServer);
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: stack.pki.clients.client!.cert,
      key: stack.pki.clients.client!.key,
      ca: stack.pki.ca.cert,
      routes: [{ name: 'api', upstream: stack.ingress.url, audience: AUDIENCE, egressToken: true, scope: 'read' }],
      tokenEndpoint: { endpoint: `https://localhost:${port}/token`, clientId: 'agent-egress' },
      log: { level: 'silent' },
    });
  });

  after(async () => {
    await egress?.close();
    await stack?.close();
    tokenServer?.closeAllConnections();
    tokenServer?.close();
  });

  it('the agent sends no credentials at all; the token is fetched once and bound to the egress certificate', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await call(`${egress.url}/api/me`);
      assert.equal(res.status, 200);
      const echo = (await res.json()) as { headers: Record<string, string> };
      assert.equal(decodePrincipal(echo.headers['x-tether-principal']!).sub, 'service-account');
    }
    assert.equal(egress.stats.tokensFetched, 1);
    assert.equal(tokenRequests.length, 1);
    assert.equal(tokenRequests[0]!.get('scope'), 'read');
    assert.equal(egress.stats.proofsSigned, 1);
  });

  it('publishes the cnf / tmb value of its certificate for agents that request tokens themselves', async () => {
    const res = await call(`${egress.url}/.well-known/tether-egress`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as { cnf: Record<string, string>; tmb: string };
    const { sessionBoundConfirmation } = await import('@tether/core');
    const { X509Certificate } = await import('node:crypto');
    assert.deepEqual(doc.cnf, sessionBoundConfirmation(new X509Certificate(stack.pki.clients.client!.cert)));
    assert.deepEqual(JSON.parse(doc.tmb), doc.cnf);
  });
});
