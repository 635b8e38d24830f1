/**
 * Egress timeouts with real sockets: the upstream response timeout (`upstreamTimeoutMs`: an
 * upstream that never sends response headers is cancelled and the agent gets 504
 * upstream_timeout; a response whose headers arrived is never cut) over HTTP/2 and HTTP/1.1
 * upstreams, and the agent idle timeout (`agentIdleTimeoutMs`: agent connections with no request
 * in flight are closed; requests in flight are not).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect as http2Connect, constants as h2, createSecureServer, type Http2SecureServer, type ServerHttp2Stream } from 'node:http2';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { DevPki } from '@tether/pki';
import { startEgress, type EgressSidecar } from '@tether/sidecar';
import { testPki } from '../helpers/pki.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';

const REQUEST_DEADLINE_MS = 10_000;
const UPSTREAM_TIMEOUT_MS = 400;
const IDLE_TIMEOUT_MS = 400;

interface Result {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  complete: boolean;
  ms: number;
}

/** One HTTP/1.1 request through the egress on a fresh connection. */
function get(port: number, path: string, options: { method?: string; body?: string } = {}): Promise<Result> {
  const started = Date.now();
  const req = httpRequest({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', agent: false });
  const answered = new Promise<Result>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      let complete = false;
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => (complete = true));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: complete && res.complete, ms: Date.now() - started }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
  return withTimeout(answered, REQUEST_DEADLINE_MS, `${options.method ?? 'GET'} ${path}: no complete answer`, () => req.destroy());
}

async function listening(server: Http2SecureServer | HttpsServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Upstream behaviour by path: /hang never answers, /late?ms=N answers after N ms, /drip sends headers at once and the body slowly. */
function upstreamAnswer(path: string, respond: (status: number, body?: string) => void, write: (chunk: string, end: boolean) => void): 'hang' | undefined {
  const url = new URL(path, 'https://upstream');
  if (url.pathname === '/hang') return 'hang';
  if (url.pathname === '/late') {
    setTimeout(() => respond(200, 'late but in time'), Number(url.searchParams.get('ms') ?? 0));
  } else if (url.pathname === '/drip') {
    respond(200);
    let n = 0;
    const timer = setInterval(() => {
      n++;
      write(`chunk ${n}\n`, n === 5);
      if (n === 5) clearInterval(timer);
    }, UPSTREAM_TIMEOUT_MS / 2);
  } else respond(200, 'ok');
  return undefined;
}

describe('egress upstream response timeout', () => {
  let pki: DevPki;
  let egress: EgressSidecar;
  let port: number;
  let h2Server: Http2SecureServer;
  let h1Server: HttpsServer;
  /** Close codes of the h2 upstream's /hang streams, and how many /hang requests each upstream saw. */
  const h2Hang = { seen: 0, rstCodes: [] as number[] };
  const h1Hang = { seen: 0, closed: 0 };

  before(async () => {
    pki = await testPki();
    h2Server = createSecureServer({ cert: pki.server.cert, key: pki.server.key });
    h2Server.on('stream', (stream: ServerHttp2Stream, headers) => {
      stream.on('error', () => undefined);
      const hang = upstreamAnswer(
        headers[':path'] ?? '/',
        (status, body) => {
          if (stream.destroyed) return;
          stream.respond({ ':status': status, 'content-type': 'text/plain' });
          if (body !== undefined) stream.end(body);
        },
        (chunk, end) => {
          if (stream.destroyed) return;
          if (end) stream.end(chunk);
          else stream.write(chunk);
        },
      );
      if (hang === 'hang') {
        h2Hang.seen++;
        stream.resume();
        stream.once('close', () => h2Hang.rstCodes.push(stream.rstCode ?? -1));
      }
    });
    h1Server = createHttpsServer({ cert: pki.server.cert, key: pki.server.key, ALPNProtocols: ['http/1.1'] }, (req, res) => {
      req.resume();
      const hang = upstreamAnswer(
        req.url ?? '/',
        (status, body) => {
          res.writeHead(status, { 'content-type': 'text/plain' });
          if (body !== undefined) res.end(body);
          else res.flushHeaders();
        },
        (chunk, end) => {
          if (end) res.end(chunk);
          else res.write(chunk);
        },
      );
      if (hang === 'hang') {
        h1Hang.seen++;
        req.socket.once('close', () => h1Hang.closed++);
      }
    });
    const [h2Port, h1Port] = [await listening(h2Server), await listening(h1Server)];
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [
        { name: 'h2', upstream: `https://localhost:${h2Port}` },
        { name: 'h1', upstream: `https://localhost:${h1Port}` },
      ],
      tokenPolicy: 'none',
      upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS,
      metricsListen: '127.0.0.1:0',
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    port = (egress.endpoint as { port: number }).port;
  });

  after(async () => {
    await egress?.close();
    for (const s of [h2Server, h1Server]) {
      if (s === undefined) continue;
      if ('closeAllConnections' in s) s.closeAllConnections();
      s.close();
    }
  });

  it('HTTP/2 upstream that never answers: 504 upstream_timeout after the timeout, the stream is reset with CANCEL, not retried', async () => {
    const res = await get(port, '/h2/hang', { method: 'GET' });
    assert.equal(res.status, 504);
    assert.equal(res.headers['cache-control'], 'no-store');
    const body = JSON.parse(res.body) as { error: string; error_description: string };
    assert.equal(body.error, 'upstream_timeout');
    assert.equal(typeof body.error_description, 'string');
    assert.ok(res.ms >= UPSTREAM_TIMEOUT_MS - 20, `answered after ${res.ms} ms, before the timeout`);
    await waitFor(() => h2Hang.rstCodes.length === 1, { message: 'the upstream saw its /hang stream closed' });
    assert.equal(h2Hang.rstCodes[0], h2.NGHTTP2_CANCEL);
    assert.equal(h2Hang.seen, 1, 'an idempotent request that timed out is not sent again');
    assert.equal(egress.stats.failures.upstream_timeout, 1);
    assert.equal(egress.stats.connectionRetries, 0);
    const metrics = await (await fetch(`${egress.metrics!.url}/metrics`, { signal: deadline(REQUEST_DEADLINE_MS, 'GET /metrics') })).text();
    assert.match(metrics, /tether_egress_failures_total\{reason="upstream_timeout"\} 1\b/);
    assert.match(metrics, /tether_egress_requests_total\{route="h2",status="504"\} 1\b/);
    // The connection is still good: the next request on it is answered.
    const ok = await get(port, '/h2/fine');
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'ok');
    assert.equal(egress.stats.upstreamConnectionsOpened, 1, 'the timeout reset a stream, not the connection');
  });

  it('HTTP/1.1 upstream that never answers: 504 upstream_timeout, the upstream connection is destroyed', async () => {
    const res = await get(port, '/h1/hang', { method: 'POST', body: 'x' });
    assert.equal(res.status, 504);
    assert.equal((JSON.parse(res.body) as { error: string }).error, 'upstream_timeout');
    assert.ok(res.ms >= UPSTREAM_TIMEOUT_MS - 20, `answered after ${res.ms} ms`);
    await waitFor(() => h1Hang.closed === 1, { message: 'the h1 upstream saw its connection closed' });
    assert.equal(h1Hang.seen, 1);
    assert.equal(egress.stats.failures.upstream_timeout, 2);
    const ok = await get(port, '/h1/fine');
    assert.equal(ok.status, 200);
  });

  it('headers in time are answered; a body that streams far longer than the timeout is not cut (both upstreams)', async () => {
    for (const route of ['h2', 'h1']) {
      const late = await get(port, `/${route}/late?ms=${UPSTREAM_TIMEOUT_MS / 4}`);
      assert.equal(late.status, 200, route);
      assert.equal(late.body, 'late but in time');
      const drip = await get(port, `/${route}/drip`);
      assert.equal(drip.status, 200, route);
      assert.ok(drip.complete, `${route}: the streamed body ended properly`);
      assert.equal(drip.body, 'chunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n');
      assert.ok(drip.ms > UPSTREAM_TIMEOUT_MS * 2, `${route}: the body took ${drip.ms} ms, longer than the timeout`);
    }
    assert.equal(egress.stats.failures.upstream_timeout, 2, 'no further timeouts');
    await waitFor(() => egress.state().activeRequests === 0, { message: 'no requests in flight' });
  });

  it('upstreamTimeoutMs 0 turns it off: an answer slower than the timeout above still arrives', async () => {
    const off = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'h2', upstream: `https://localhost:${(h2Server.address() as AddressInfo).port}` }],
      tokenPolicy: 'none',
      upstreamTimeoutMs: 0,
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    try {
      const res = await get((off.endpoint as { port: number }).port, `/h2/late?ms=${UPSTREAM_TIMEOUT_MS * 2}`);
      assert.equal(res.status, 200);
      assert.equal(res.body, 'late but in time');
      assert.equal(off.stats.failures.upstream_timeout, undefined);
    } finally {
      await off.close();
    }
  });
});

describe('egress agent idle timeout', () => {
  // The slow request: the upstream answers SLOW_MS after it got the request, so the connection is
  // idle from SLOW_MS after sending at the earliest, and must not close before SLOW_MS + the idle
  // timeout. Measured from sending, not from when the test saw the response: on a loaded machine
  // the test sees it up to a scheduling stall late (76 ms and 115 ms seen), while the egress's idle
  // timer runs from the moment the response ended on its side, and would look early by that much.
  const SLOW_MS = IDLE_TIMEOUT_MS * 2;
  /** Date.now() against libuv's millisecond clock the timers run on. */
  const CLOCK_SLACK_MS = 10;
  let egress: EgressSidecar;
  let port: number;
  let upstream: Http2SecureServer;

  before(async () => {
    const pki = await testPki();
    upstream = createSecureServer({ cert: pki.server.cert, key: pki.server.key });
    upstream.on('stream', (stream: ServerHttp2Stream, headers) => {
      stream.on('error', () => undefined);
      upstreamAnswer(
        headers[':path'] ?? '/',
        (status, body) => {
          if (!stream.destroyed) stream.respond({ ':status': status }, { endStream: false });
          if (!stream.destroyed) stream.end(body);
        },
        (chunk, end) => {
          if (end) stream.end(chunk);
          else stream.write(chunk);
        },
      );
    });
    const upstreamPort = await listening(upstream);
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'up', upstream: `https://localhost:${upstreamPort}` }],
      tokenPolicy: 'none',
      agentIdleTimeoutMs: IDLE_TIMEOUT_MS,
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    port = (egress.endpoint as { port: number }).port;
  });

  after(async () => {
    await egress?.close();
    upstream?.close();
  });

  /** Resolves with the ms from `since` until `socket` closes (fails at the deadline). */
  function closedAfter(socket: Socket, since: number, what: string): Promise<number> {
    return withTimeout(
      new Promise<number>((resolve) => (socket.destroyed ? resolve(Date.now() - since) : socket.once('close', () => resolve(Date.now() - since)))),
      REQUEST_DEADLINE_MS,
      `${what}: the egress did not close it`,
      () => socket.destroy(),
    );
  }

  it('a connection that never sends a request is closed after the idle timeout', async () => {
    const started = Date.now();
    const socket = netConnect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const ms = await closedAfter(socket, started, 'silent connection');
    assert.ok(ms >= IDLE_TIMEOUT_MS - 20, `closed after ${ms} ms, before the idle timeout`);
    await waitFor(() => egress.state().agentConnections === 0, { message: 'the egress forgot the connection' });
  });

  it('an HTTP/1.1 keep-alive connection is closed once idle, not while a slow request is in flight', async () => {
    // A raw client: it keeps the connection whatever the Keep-Alive hint says, so only the egress closes it.
    const socket = netConnect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    try {
      await withTimeout(once(socket, 'connect'), REQUEST_DEADLINE_MS, 'connect to the egress');
      let text = '';
      socket.setEncoding('utf8').on('data', (c: string) => (text += c));
      const sentAt = Date.now();
      socket.write(`GET /up/late?ms=${SLOW_MS} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      await waitFor(() => text.endsWith('0\r\n\r\n') || /content-length: 16\r\n\r\nlate but in time$/i.test(text), { message: () => `the slow response, got ${JSON.stringify(text)}` });
      assert.match(text, /^HTTP\/1\.1 200 /, 'a request in flight longer than the idle timeout is answered');
      assert.match(text, /late but in time/);
      assert.equal(socket.destroyed, false, 'the connection survived the slow request');
      const ms = await closedAfter(socket, sentAt, 'idle keep-alive connection');
      assert.ok(ms >= SLOW_MS + IDLE_TIMEOUT_MS - CLOCK_SLACK_MS, `closed ${ms} ms after the request, sooner than the response (${SLOW_MS} ms) plus the idle timeout`);
    } finally {
      socket.destroy();
    }
  });

  it('an h2c session gets GOAWAY once idle, not while a slow request is in flight', async () => {
    const session = http2Connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    let goawayAt: number | undefined;
    let goawayCode: number | undefined;
    session.on('goaway', (code: number) => {
      goawayAt ??= Date.now();
      goawayCode = code;
    });
    try {
      const sentAt = Date.now();
      const stream = session.request({ ':path': `/up/late?ms=${SLOW_MS}` });
      let body = '';
      stream.setEncoding('utf8').on('data', (c: string) => (body += c));
      const [headers] = (await withTimeout(once(stream, 'response'), REQUEST_DEADLINE_MS, 'h2c slow request: no response')) as [Record<string, unknown>];
      await withTimeout(once(stream, 'end'), REQUEST_DEADLINE_MS, 'h2c slow request: no end');
      assert.equal(headers[':status'], 200);
      assert.equal(body, 'late but in time');
      assert.equal(goawayAt, undefined, 'no GOAWAY while the request was in flight');
      await waitFor(() => goawayAt !== undefined, { message: 'GOAWAY from the egress on the idle session' });
      assert.equal(goawayCode, h2.NGHTTP2_NO_ERROR);
      const ms = goawayAt! - sentAt;
      assert.ok(ms >= SLOW_MS + IDLE_TIMEOUT_MS - CLOCK_SLACK_MS, `GOAWAY ${ms} ms after the request, sooner than the response (${SLOW_MS} ms) plus the idle timeout`);
      await waitFor(() => egress.state().agentSessions === 0, { message: 'the egress closed the idle h2c session' });
    } finally {
      session.destroy();
    }
  });
});
