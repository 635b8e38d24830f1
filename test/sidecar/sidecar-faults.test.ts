/**
 * Faults around the sidecars (issue 7): the application behind the ingress misbehaving, the
 * egress's upstream misbehaving (resets, GOAWAY, TLS failures, garbage), and the agent hanging up
 * mid-request. Every case asserts the exact status (and JSON `error` code), that nothing crashes or
 * answers 500, that the sidecars keep serving, and that their in-flight state returns to zero.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { connect as http2Connect, constants as h2, createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { jwtAccessTokenValidator, localJwks } from '@tether/core';
import { createDevPki, type DevPki } from '@tether/pki';
import { startEgress, startIngress, type EgressSidecar, type IngressSidecar } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';

/** Deadline for one agent request: far beyond any answer these tests expect. */
const REQUEST_DEADLINE_MS = 10_000;

/** A metrics endpoint's text, within the request deadline. */
async function metricsText(baseUrl: string): Promise<string> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: deadline(REQUEST_DEADLINE_MS, `GET ${baseUrl}/metrics`) });
  return res.text();
}

async function listenOn(server: HttpServer | TlsServer | Http2SecureServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

interface AgentResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The response ended properly (not cut off by a closed connection / reset stream). */
  complete: boolean;
}

/** One HTTP/1.1 request from the agent on a fresh connection (node:http, so a truncated response is visible as such). */
function agentH1(port: number, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<AgentResult> {
  const method = options.method ?? 'GET';
  const req = httpRequest({ host: '127.0.0.1', port, path, method, headers: options.headers, agent: false });
  const answered = new Promise<AgentResult>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      let complete = false;
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => (complete = true));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: complete && res.complete }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
  return withTimeout(answered, REQUEST_DEADLINE_MS, `${method} ${path}: the response did not end`, () => req.destroy());
}

/** One h2c request from the agent on its own session: the stream's close code tells a reset from a clean end. */
async function agentH2c(url: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<AgentResult & { rstCode: number }> {
  const session = http2Connect(url);
  session.on('error', () => undefined);
  try {
    const stream = session.request({ ':path': path, ':method': options.method ?? 'GET', ...options.headers }, { endStream: options.body === undefined });
    if (options.body !== undefined) stream.end(options.body);
    let body = '';
    let headers: IncomingHttpHeaders = {};
    let complete = false;
    stream.on('error', () => undefined);
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    stream.on('response', (h) => (headers = h as IncomingHttpHeaders));
    stream.on('end', () => (complete = true));
    await withTimeout(new Promise((resolve) => stream.once('close', resolve)), REQUEST_DEADLINE_MS, `h2c ${options.method ?? 'GET'} ${path}: the stream did not close`, () => session.destroy());
    return { status: Number(headers[':status'] ?? 0), headers, body, complete: complete && stream.rstCode === h2.NGHTTP2_NO_ERROR, rstCode: stream.rstCode ?? -1 };
  } finally {
    session.close();
  }
}

const errorCode = (r: AgentResult) => (JSON.parse(r.body) as { error: string }).error;

/** The application behind the ingress: every path is a different way to misbehave. */
function startFaultApp() {
  const counts = { hangOpen: 0, hangClosed: 0, uploadsAborted: 0 };
  const seen: string[] = [];
  const server = createHttpServer((req, res) => {
    const path = (req.url ?? '').split('?')[0] as string;
    seen.push(path);
    if (path === '/hang' || path === '/hang-upload') {
      // Never answers; for /hang-upload it keeps reading the body as it comes.
      counts.hangOpen++;
      req.resume();
      res.on('close', () => {
        counts.hangOpen--;
        counts.hangClosed++;
        if (!req.complete) counts.uploadsAborted++;
      });
      return;
    }
    req.resume();
    req.on('end', () => {
      switch (path) {
        case '/drop-before-headers':
          req.socket.destroy();
          return;
        case '/truncate-length':
          // Declares 100000 bytes, sends 2000, then the connection dies.
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
          res.write('a'.repeat(2000), () => setTimeout(() => req.socket.destroy(), 30));
          return;
        case '/truncate-chunked':
          // Chunked, first chunk sent, then the connection dies without the terminating chunk.
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('b'.repeat(2000), () => setTimeout(() => req.socket.destroy(), 30));
          return;
        case '/malformed-status':
          req.socket.end('HTTP/1.1 abc Not A Status\r\ncontent-length: 2\r\n\r\nok');
          return;
        case '/malformed-garbage':
          req.socket.end('\x00\x01\x02 this is not HTTP at all \xff\r\n\r\n');
          return;
        case '/malformed-length':
          req.socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello');
          return;
        default:
          res.writeHead(200, { 'content-type': 'text/plain' }).end(`ok ${path}`);
      }
    });
  });
  return { server, counts, seen };
}

describe('faults behind the ingress: the application misbehaves', () => {
  let pki: DevPki;
  let issuer: TestIssuer;
  let app: ReturnType<typeof startFaultApp>;
  let ingress: IngressSidecar;
  let downIngress: IngressSidecar;
  let egress: EgressSidecar;
  let port: number;
  let token: string;
  const bearer = () => ({ authorization: `Bearer ${token}` });

  before(async () => {
    pki = await testPki();
    issuer = await TestIssuer.create();
    app = startFaultApp();
    const appPort = await listenOn(app.server);
    // A port with nothing listening on it: the application is down.
    const probe = createHttpServer();
    const deadPort = await listenOn(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const ingressConfig = (upstream: string) => ({
      listen: '127.0.0.1:0',
      cert: pki.server.cert,
      key: pki.server.key,
      ca: pki.ca.cert,
      upstream,
      tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }),
      drainTimeoutMs: 500,
      log: { level: 'silent' as const },
    });
    ingress = await startIngress(ingressConfig(`http://127.0.0.1:${appPort}`));
    downIngress = await startIngress(ingressConfig(`http://127.0.0.1:${deadPort}`));
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [
        { name: 'api', upstream: ingress.url, audience: AUDIENCE },
        { name: 'down', upstream: downIngress.url, audience: AUDIENCE },
      ],
      metricsListen: '127.0.0.1:0',
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    port = (egress.endpoint as { port: number }).port;
    token = await issuer.sessionBound(pki.clients.client!.cert);
  });

  after(async () => {
    await egress?.close();
    await ingress?.close();
    await downIngress?.close();
    app.server.closeAllConnections();
    app.server.close();
  });

  /** Both sidecars still serve, nothing is in flight, and no request was answered 500. */
  async function assertHealthy(): Promise<void> {
    const ok = await agentH1(port, '/api/ok', { headers: bearer() });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'ok /ok');
    await waitFor(() => egress.state().activeRequests === 0 && ingress.state().activeRequests === 0, { message: 'in-flight requests back to 0' });
    assert.equal(egress.stats.failures.internal, undefined, 'no internal error in the egress');
    const metrics = await metricsText(egress.metrics!.url);
    assert.doesNotMatch(metrics, /status="500"/, 'no 500 answered');
  }

  it('application down (connection refused): 502 upstream_unavailable from the ingress', async () => {
    for (const method of ['GET', 'POST']) {
      const res = await agentH1(port, '/down/x', { method, headers: { ...bearer(), 'content-type': 'text/plain' }, ...(method === 'POST' ? { body: 'payload' } : {}) });
      assert.equal(res.status, 502, method);
      assert.equal(errorCode(res), 'upstream_unavailable');
      assert.ok(res.complete);
    }
    assert.equal(downIngress.stats.failures.upstream_error, 2);
    await waitFor(() => downIngress.state().activeRequests === 0, { message: 'the down ingress has no request in flight' });
    await assertHealthy();
  });

  it('application drops the connection before the response headers: 502 upstream_unavailable (POST too)', async () => {
    const before = ingress.stats.failures.upstream_error ?? 0;
    const get = await agentH1(port, '/api/drop-before-headers', { headers: bearer() });
    assert.equal(get.status, 502);
    assert.equal(errorCode(get), 'upstream_unavailable');
    const seenBefore = app.seen.filter((p) => p === '/drop-before-headers').length;
    const post = await agentH2c(egress.url, '/api/drop-before-headers', { method: 'POST', headers: bearer(), body: 'do it once' });
    assert.equal(post.status, 502);
    assert.equal(errorCode(post), 'upstream_unavailable');
    assert.equal(app.seen.filter((p) => p === '/drop-before-headers').length - seenBefore, 1, 'the POST reached the application once (not retried)');
    assert.equal((ingress.stats.failures.upstream_error ?? 0) - before, 2);
    await assertHealthy();
  });

  for (const path of ['/truncate-length', '/truncate-chunked']) {
    it(`application dies mid-body (${path}): the agent sees a cut-off response, never a complete one`, async () => {
      const resets = { ingress: ingress.stats.failures.upstream_reset ?? 0, egress: egress.stats.failures.upstream_reset ?? 0 };
      const h1 = await agentH1(port, `/api${path}`, { headers: bearer() });
      assert.equal(h1.status, 200, 'the headers had already been relayed');
      assert.equal(h1.complete, false, 'HTTP/1.1 agent: the connection closes without completing the body');
      assert.ok(h1.body.length < 100_000);
      const h2c = await agentH2c(egress.url, `/api${path}`, { headers: bearer() });
      assert.equal(h2c.status, 200);
      assert.equal(h2c.complete, false, 'h2c agent: the stream is reset, not ended');
      assert.equal(h2c.rstCode, h2.NGHTTP2_INTERNAL_ERROR);
      assert.equal((ingress.stats.failures.upstream_reset ?? 0) - resets.ingress, 2, 'the ingress reset its stream to the egress');
      assert.equal((egress.stats.failures.upstream_reset ?? 0) - resets.egress, 2, 'the egress relayed the reset');
      await assertHealthy();
    });
  }

  it('application answers with a malformed HTTP response: 502 upstream_unavailable', async () => {
    for (const path of ['/malformed-status', '/malformed-garbage', '/malformed-length']) {
      const res = await agentH1(port, `/api${path}`, { headers: bearer() });
      assert.equal(res.status, 502, path);
      assert.equal(errorCode(res), 'upstream_unavailable', path);
    }
    await assertHealthy();
  });

  it('application never answers and the agent gives up: the hang is cancelled through both sidecars', async () => {
    // The agent gives up before the ingress's application timeout (30 s by default; see
    // app-timeout.test.ts), so the agent's hang-up must be what releases the request everywhere.
    const closedBefore = app.counts.hangClosed;
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/hang', headers: bearer(), agent: false });
    req.on('error', () => undefined);
    req.end();
    try {
      await waitFor(() => app.counts.hangOpen === 1, { message: 'the hanging request reached the application' });
    } finally {
      req.destroy();
    }
    await waitFor(() => app.counts.hangClosed === closedBefore + 1, { message: 'the application saw its request cancelled' });
    assert.equal(app.counts.hangOpen, 0);
    // Same over h2c with a stream reset.
    const session = http2Connect(egress.url);
    try {
      const stream = session.request({ ':path': '/api/hang', ...bearer() });
      stream.on('error', () => undefined);
      await waitFor(() => app.counts.hangOpen === 1, { message: 'the h2c hanging request reached the application' });
      stream.close(h2.NGHTTP2_CANCEL);
      await waitFor(() => app.counts.hangClosed === closedBefore + 2, { message: 'h2c reset cancels the application request' });
    } finally {
      session.close();
    }
    await assertHealthy();
  });

  it('agent hangs up mid-body on a streamed (chunked) upload: the upload is cancelled at the application', async () => {
    const abortedBefore = app.counts.uploadsAborted;
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/hang-upload', method: 'POST', headers: { ...bearer(), 'content-type': 'text/plain' }, agent: false });
    req.on('error', () => undefined);
    req.write('first part of the upload,');
    try {
      await waitFor(() => app.counts.hangOpen === 1, { message: 'the upload reached the application' });
    } finally {
      req.destroy();
    }
    await waitFor(() => app.counts.uploadsAborted === abortedBefore + 1, { message: 'the application saw the upload aborted' });
    assert.equal(app.counts.hangOpen, 0);
    await assertHealthy();
  });

  it('h2c agent resets its stream mid-body: the upload is cancelled at the application', async () => {
    const abortedBefore = app.counts.uploadsAborted;
    const session = http2Connect(egress.url);
    try {
      const stream = session.request({ ':path': '/api/hang-upload', ':method': 'POST', ...bearer() });
      stream.on('error', () => undefined);
      stream.write('first part of the upload,');
      await waitFor(() => app.counts.hangOpen === 1, { message: 'the upload reached the application' });
      stream.close(h2.NGHTTP2_CANCEL);
      await waitFor(() => app.counts.uploadsAborted === abortedBefore + 1, { message: 'the application saw the upload aborted' });
    } finally {
      session.close();
    }
    await assertHealthy();
  });

  it('agent hangs up while its (buffered) body is being read: nothing is sent upstream, no 500, no internal error', async () => {
    const seenBefore = app.seen.length;
    const goneBefore = egress.stats.failures.agent_gone ?? 0;
    for (const kind of ['h1', 'h2c'] as const) {
      if (kind === 'h1') {
        const req = httpRequest({ host: '127.0.0.1', port, path: '/api/partial', method: 'POST', headers: { ...bearer(), 'content-length': '1000' }, agent: false });
        req.on('error', () => undefined);
        req.write('only 100 bytes'.padEnd(100, '.'));
        try {
          await waitFor(() => egress.state().activeRequests === 1, { message: 'h1: the egress is reading the request' });
        } finally {
          req.destroy();
        }
      } else {
        const session = http2Connect(egress.url);
        session.on('error', () => undefined);
        const stream = session.request({ ':path': '/api/partial', ':method': 'POST', 'content-length': '1000', ...bearer() });
        stream.on('error', () => undefined);
        stream.write('only 100 bytes'.padEnd(100, '.'));
        try {
          await waitFor(() => egress.state().activeRequests === 1, { message: 'h2c: the egress is reading the request' });
          stream.close(h2.NGHTTP2_CANCEL);
          await withTimeout(new Promise((resolve) => stream.once('close', resolve)), REQUEST_DEADLINE_MS, 'h2c: the cancelled stream closed');
        } finally {
          session.close();
        }
      }
      await waitFor(() => (egress.stats.failures.agent_gone ?? 0) === goneBefore + (kind === 'h1' ? 1 : 2), { message: `${kind}: counted as agent_gone` });
    }
    assert.equal(app.seen.length, seenBefore, 'the partial request never reached the application');
    await assertHealthy();
    await waitFor(() => egress.state().agentConnections === 0 && egress.state().agentSessions === 0, { message: 'agent connections closed' });
    const metrics = await metricsText(egress.metrics!.url);
    assert.match(metrics, /tether_egress_agent_connections 0\b/);
  });
});

/**
 * The egress's upstream misbehaves: an HTTP/2 server (core API, so it can reset streams and send
 * GOAWAY exactly when it wants) where every path is a different fault; the count of each request
 * the server saw tells a retry from none.
 */
function startFaultUpstream(pki: DevPki) {
  const seen = new Map<string, number>();
  const sessions = new Set<ServerHttp2Session>();
  const server = createSecureServer({ cert: pki.server.cert, key: pki.server.key });
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => undefined);
  });
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    stream.on('error', () => undefined);
    const url = String(headers[':path']);
    const path = url.split('?')[0] as string;
    const n = (seen.get(url) ?? 0) + 1;
    seen.set(url, n);
    const ok = () => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`ok ${path} after ${n}`);
    };
    stream.resume();
    stream.on('end', () => {
      switch (path) {
        case '/rst':
          stream.close(h2.NGHTTP2_INTERNAL_ERROR);
          return;
        case '/rst-once':
          if (n === 1) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
          else ok();
          return;
        case '/refused-once':
          if (n === 1) stream.close(h2.NGHTTP2_REFUSED_STREAM);
          else ok();
          return;
        case '/goaway-unprocessed-once':
          // GOAWAY whose last stream id is below this stream's: the client knows it was not processed.
          if (n === 1) {
            const session = stream.session!;
            session.goaway(h2.NGHTTP2_NO_ERROR, stream.id! - 2);
            setTimeout(() => session.destroy(), 50);
          } else ok();
          return;
        case '/goaway-processed-once':
          // GOAWAY covering this stream, then the connection dies: it may have been processed.
          if (n === 1) {
            const session = stream.session!;
            session.goaway(h2.NGHTTP2_NO_ERROR, stream.id!);
            setTimeout(() => session.destroy(), 20);
          } else ok();
          return;
        case '/headers-then-rst':
        case '/headers-then-cancel':
        case '/headers-then-no-error':
        case '/headers-then-session-dies':
          stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': '100000' });
          stream.write('c'.repeat(2000), () =>
            setTimeout(() => {
              if (path === '/headers-then-rst') stream.close(h2.NGHTTP2_INTERNAL_ERROR);
              else if (path === '/headers-then-cancel') stream.close(h2.NGHTTP2_CANCEL);
              else if (path === '/headers-then-no-error') stream.close(h2.NGHTTP2_NO_ERROR);
              else stream.session?.destroy();
            }, 30),
          );
          return;
        default:
          ok();
      }
    });
  });
  return { server, seen, sessions };
}

describe("faults upstream of the egress: the resource server (or what poses as one) misbehaves", () => {
  let pki: DevPki;
  let issuer: TestIssuer;
  let upstream: ReturnType<typeof startFaultUpstream>;
  const rawServers: Array<TlsServer | Http2SecureServer> = [];
  let egress: EgressSidecar;
  let port: number;
  let token: string;
  const bearer = () => ({ authorization: `Bearer ${token}` });
  let nonce = 0;
  const h1Hangs = { open: 0, closed: 0 };

  before(async () => {
    pki = await testPki();
    issuer = await TestIssuer.create();
    upstream = startFaultUpstream(pki);
    const upstreamPort = await listenOn(upstream.server);
    // A server whose certificate chains to another CA (the egress must not trust it).
    const foreign = await createDevPki({ clients: ['stranger'] });
    const wrongCa = createSecureServer({ cert: foreign.server.cert, key: foreign.server.key }, (_req, res) => res.end('never'));
    // A server that requires a client certificate from another CA (rejects the egress's).
    const rejectsClient = createSecureServer({ cert: pki.server.cert, key: pki.server.key, ca: foreign.ca.cert, requestCert: true, rejectUnauthorized: true }, (_req, res) => res.end('never'));
    // TLS servers that negotiate h2 / http/1.1 and then answer with bytes that are not HTTP.
    const garbage = (alpn: string) =>
      createTlsServer({ cert: pki.server.cert, key: pki.server.key, ALPNProtocols: [alpn] }, (socket: TLSSocket) => {
        socket.on('error', () => undefined);
        socket.once('data', () => socket.end('\x00\x00\x12garbage, not HTTP at all\r\n\r\n\xff\xfe'));
      });
    const garbageH2 = garbage('h2');
    const garbageH1 = garbage('http/1.1');
    // An HTTP/1.1-only upstream (the egress's keep-alive pool): cuts a response, or never answers.
    const h1Upstream = createHttpsServer({ cert: pki.server.cert, key: pki.server.key, ALPNProtocols: ['http/1.1'] }, (req, res) => {
      req.resume();
      const path = (req.url ?? '').split('?')[0];
      if (path === '/hang') {
        h1Hangs.open++;
        res.on('close', () => {
          h1Hangs.open--;
          h1Hangs.closed++;
        });
      } else if (path === '/truncate') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
        res.write('d'.repeat(2000), () => setTimeout(() => req.socket.destroy(), 30));
      } else res.writeHead(200, { 'content-type': 'text/plain' }).end('h1 ok');
    });
    for (const s of [wrongCa, rejectsClient, garbageH2, garbageH1, h1Upstream as unknown as TlsServer]) {
      s.on('tlsClientError', () => undefined);
      rawServers.push(s);
    }
    const ports = await Promise.all([wrongCa, rejectsClient, garbageH2, garbageH1, h1Upstream as unknown as TlsServer].map((s) => listenOn(s)));
    const at = (p: number) => `https://127.0.0.1:${p}`;
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [
        { name: 'up', upstream: at(upstreamPort), audience: AUDIENCE },
        { name: 'wrongca', upstream: at(ports[0]!), audience: AUDIENCE },
        { name: 'rejects', upstream: at(ports[1]!), audience: AUDIENCE },
        { name: 'garbageh2', upstream: at(ports[2]!), audience: AUDIENCE },
        { name: 'garbageh1', upstream: at(ports[3]!), audience: AUDIENCE },
        { name: 'h1', upstream: at(ports[4]!), audience: AUDIENCE },
      ],
      metricsListen: '127.0.0.1:0',
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    port = (egress.endpoint as { port: number }).port;
    token = await issuer.sessionBound(pki.clients.client!.cert);
  });

  after(async () => {
    await egress?.close();
    for (const s of upstream.sessions) s.destroy();
    upstream.server.close();
    for (const s of rawServers) {
      if ('closeAllConnections' in s) (s as { closeAllConnections(): void }).closeAllConnections();
      s.close();
    }
  });

  /** Send `method path` through the egress (HTTP/1.1 agent); returns the result and how often the upstream saw it. */
  async function through(method: string, path: string): Promise<AgentResult & { attempts: number }> {
    const url = `${path}?n=${nonce++}`;
    const res = await agentH1(port, `/up${url}`, { method, headers: { ...bearer(), 'content-type': 'text/plain' }, ...(method === 'POST' ? { body: 'non-idempotent' } : {}) });
    return { ...res, attempts: upstream.seen.get(url) ?? 0 };
  }

  async function assertHealthy(): Promise<void> {
    const ok = await through('GET', '/fine');
    assert.equal(ok.status, 200);
    assert.match(ok.body, /^ok \/fine/);
    await waitFor(() => egress.state().activeRequests === 0, { message: 'in-flight requests back to 0' });
    assert.equal(egress.stats.failures.internal, undefined, 'no internal error');
    assert.doesNotMatch(await metricsText(egress.metrics!.url), /status="500"/, 'no 500 answered');
  }

  it('RST_STREAM on an in-flight POST: not retried, 502 upstream_unavailable', async () => {
    const before = egress.stats.connectionRetries;
    for (const path of ['/rst', '/rst-once']) {
      const res = await through('POST', path);
      assert.equal(res.status, 502, path);
      assert.equal(errorCode(res), 'upstream_unavailable');
      assert.equal(res.attempts, 1, `${path}: the POST was sent once, never blindly again`);
    }
    assert.equal(egress.stats.connectionRetries, before);
    await assertHealthy();
  });

  it('RST_STREAM on an in-flight GET: retried once (200 if the retry succeeds, 502 if it is reset too)', async () => {
    const before = egress.stats.connectionRetries;
    const once = await through('GET', '/rst-once');
    assert.equal(once.status, 200);
    assert.equal(once.body, 'ok /rst-once after 2');
    assert.equal(once.attempts, 2);
    const always = await through('GET', '/rst');
    assert.equal(always.status, 502);
    assert.equal(errorCode(always), 'upstream_unavailable');
    assert.equal(always.attempts, 2, 'only one retry');
    assert.equal(egress.stats.connectionRetries - before, 2);
    await assertHealthy();
  });

  it('REFUSED_STREAM (provably unprocessed): even a POST is sent again and succeeds', async () => {
    const res = await through('POST', '/refused-once');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok /refused-once after 2');
    assert.equal(res.attempts, 2);
    await assertHealthy();
  });

  it('GOAWAY below an in-flight stream: the POST is sent again on a new connection; GOAWAY covering it: POST 502, GET retried', async () => {
    const opened = egress.stats.upstreamConnectionsOpened;
    const unprocessed = await through('POST', '/goaway-unprocessed-once');
    assert.equal(unprocessed.status, 200);
    assert.equal(unprocessed.attempts, 2);
    assert.ok(egress.stats.upstreamConnectionsOpened > opened, 'on a new connection');
    const post = await through('POST', '/goaway-processed-once');
    assert.equal(post.status, 502);
    assert.equal(errorCode(post), 'upstream_unavailable');
    assert.equal(post.attempts, 1, 'maybe processed: a POST is not sent again');
    const get = await through('GET', '/goaway-processed-once');
    assert.equal(get.status, 200);
    assert.equal(get.attempts, 2);
    await assertHealthy();
  });

  for (const path of ['/headers-then-rst', '/headers-then-cancel', '/headers-then-no-error', '/headers-then-session-dies']) {
    it(`upstream cuts the response mid-body (${path}): the agent sees it cut off, never complete`, async () => {
      const resets = egress.stats.failures.upstream_reset ?? 0;
      const h1 = await agentH1(port, `/up${path}?n=${nonce++}`, { headers: bearer() });
      assert.equal(h1.status, 200);
      assert.equal(h1.complete, false, 'HTTP/1.1 agent: connection closed before the body completed');
      assert.ok(h1.body.length < 100_000);
      const h2c = await agentH2c(egress.url, `/up${path}?n=${nonce++}`, { headers: bearer() });
      assert.equal(h2c.status, 200);
      assert.equal(h2c.complete, false, 'h2c agent: stream reset');
      assert.equal(h2c.rstCode, h2.NGHTTP2_INTERNAL_ERROR);
      assert.equal((egress.stats.failures.upstream_reset ?? 0) - resets, 2);
      await assertHealthy();
    });
  }

  it('TLS failures (server certificate from an unknown CA, client certificate refused): 502 upstream_unavailable at once', async () => {
    for (const route of ['wrongca', 'rejects']) {
      const retries = egress.stats.connectRetries;
      const started = Date.now();
      for (const method of ['GET', 'POST']) {
        const res = await agentH1(port, `/${route}/x`, { method, headers: bearer(), ...(method === 'POST' ? { body: 'x' } : {}) });
        assert.equal(res.status, 502, `${route} ${method}`);
        assert.equal(errorCode(res), 'upstream_unavailable');
        assert.ok(res.complete);
      }
      assert.equal(egress.stats.connectRetries, retries, `${route}: certificate errors are not retried with backoff`);
      assert.ok(Date.now() - started < 1500, `${route}: fails fast (${Date.now() - started} ms)`);
    }
    await assertHealthy();
  });

  it('upstream answers with bytes that are not HTTP (after ALPN h2 or http/1.1): 502 upstream_unavailable', async () => {
    for (const route of ['garbageh2', 'garbageh1']) {
      for (const method of ['GET', 'POST']) {
        const res = await agentH1(port, `/${route}/x`, { method, headers: bearer(), ...(method === 'POST' ? { body: 'x' } : {}) });
        assert.equal(res.status, 502, `${route} ${method}`);
        assert.equal(errorCode(res), 'upstream_unavailable');
      }
    }
    await assertHealthy();
  });

  it('HTTP/1.1 upstream: a cut-off response stays cut off; an agent that gives up cancels the upstream request', async () => {
    const warm = await agentH1(port, '/h1/x', { headers: bearer() });
    assert.equal(warm.status, 200);
    assert.equal(warm.body, 'h1 ok');
    const h1 = await agentH1(port, '/h1/truncate', { headers: bearer() });
    assert.equal(h1.status, 200);
    assert.equal(h1.complete, false);
    const h2c = await agentH2c(egress.url, '/h1/truncate', { headers: bearer() });
    assert.equal(h2c.status, 200);
    assert.equal(h2c.complete, false);
    assert.equal(h2c.rstCode, h2.NGHTTP2_INTERNAL_ERROR);
    const req = httpRequest({ host: '127.0.0.1', port, path: '/h1/hang', headers: bearer(), agent: false });
    req.on('error', () => undefined);
    req.end();
    try {
      await waitFor(() => h1Hangs.open === 1, { message: 'the hanging request reached the HTTP/1.1 upstream' });
    } finally {
      req.destroy();
    }
    await waitFor(() => h1Hangs.closed === 1, { message: 'the upstream saw the request cancelled' });
    assert.ok((egress.stats.failures.agent_gone ?? 0) >= 1);
    await assertHealthy();
  });

  it('afterwards: upstream connections and proof state match the live connections; agent connections are all closed', async () => {
    await assertHealthy();
    await waitFor(() => egress.state().agentConnections === 0, { message: 'agent connections closed' });
    const state = egress.state();
    assert.equal(state.activeRequests, 0);
    assert.equal(state.connectionStates, egress.stats.upstreamConnectionsOpen, 'proof state only for open connections');
    await waitFor(() => egress.state().upstreamSessions <= 1, { timeoutMs: 5000, message: () => `one live session to the healthy upstream (${egress.state().upstreamSessions})` });
    const metrics = await metricsText(egress.metrics!.url);
    assert.match(metrics, /tether_egress_agent_connections 0\b/);
    assert.match(metrics, new RegExp(`tether_egress_upstream_connections ${egress.stats.upstreamConnectionsOpen}\\b`));
  });
});
