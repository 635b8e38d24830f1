/**
 * Egress request metrics (issue 12 item 6): every agent request counted exactly once in
 * `tether_egress_requests_total{route,status}` and `tether_egress_request_duration_seconds`, when
 * its response closes, with the status sent (0 when none was): answered (HTTP/1.1 and h2c),
 * refused by routing or the audience policy, upstream unavailable (502) and timed out (504), agents
 * that left while waiting or in the middle of a streamed response, header sections too large
 * (HTTP/1.1 431 from the parser, h2c reset by the listener), the discovery document. The requests
 * that reached the ingress are counted equally there.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { DISCOVERY_PATH } from '@tether/sidecar';
import { connectWithoutSettingsAck } from '../helpers/h2-unacked.js';
import { AUDIENCE } from '../helpers/issuer.js';
import { padding } from '../helpers/limits.js';
import { httpAnswer, type HttpAnswer } from '../helpers/http-answer.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';
import { startStack, type Stack } from './helpers/stack.js';

const REQUEST_DEADLINE_MS = 10_000;
/** The egress's upstream response timeout here: /slow?ms=5000 through it gets a 504. */
const UPSTREAM_TIMEOUT_MS = 1000;

/** One HTTP/1.1 request to the egress on a fresh connection. */
function get(port: number, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return httpAnswer(`GET ${path}`, (onResponse) => httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, onResponse), REQUEST_DEADLINE_MS);
}

/** One h2c request on `session`: its status (0 when the stream was reset first) and reset code. */
async function h2cGet(session: ClientHttp2Session, headers: Record<string, string>): Promise<{ status: number; rstCode: number }> {
  const stream = session.request({ ':method': 'GET', ...headers }, { endStream: true });
  let status = 0;
  stream.on('response', (h) => (status = Number(h[':status'])));
  stream.on('error', () => undefined);
  stream.resume();
  await withTimeout(once(stream, 'close'), REQUEST_DEADLINE_MS, `h2c GET ${headers[':path']}: the stream did not close`, () => stream.close(h2.NGHTTP2_CANCEL));
  return { status, rstCode: stream.rstCode ?? -1 };
}

function h2cSession(t: TestContext, url: string): ClientHttp2Session {
  const session = http2Connect(url);
  session.on('error', () => undefined);
  t.after(() => session.destroy());
  return session;
}

/** `{ "route/status": n }` of one counter or histogram series in the Prometheus text. */
function series(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{route="([-a-z]+)",status="(\\d+)"\\} (\\d+)$`, 'gm');
  for (const m of text.matchAll(re)) out[`${m[1]}/${m[2]}`] = Number(m[3]);
  return out;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`, { signal: deadline(REQUEST_DEADLINE_MS, `GET ${url}/metrics`) });
  return res.text();
}

/** An agent that leaves (HTTP/1.1: closes its socket) once the application has seen its request. */
async function leaveWhileWaiting(stack: Stack, port: number, path: string, bearer: string): Promise<void> {
  const req = httpRequest({ host: '127.0.0.1', port, path, headers: { authorization: bearer }, agent: false });
  req.on('error', () => undefined);
  req.end();
  await waitFor(() => stack.app.seen.some((r) => r.url === path.replace(/^\/api/, '')), { message: `the application saw ${path}` });
  req.destroy();
}

describe('egress request metrics', () => {
  it('every agent request is counted exactly once by route and status sent, and equally by the ingress for those that reached it', async (t) => {
    const stack = await startStack({
      egress: { upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS, connectRetryMs: 0 },
      extraRoutes: [{ name: 'down', upstream: 'https://127.0.0.1:1', audience: AUDIENCE }],
    });
    t.after(() => stack.close());
    const port = stack.egress.endpoint.kind === 'tcp' ? stack.egress.endpoint.port : 0;
    const token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
    const bearer = `Bearer ${token}`;
    const session = h2cSession(t, stack.egress.url);

    // 200: 3 over HTTP/1.1, 2 over h2c; the discovery document.
    for (let i = 0; i < 3; i++) assert.equal((await get(port, `/api/ok${i}`, { authorization: bearer })).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await h2cGet(session, { ':path': `/api/h2c${i}`, authorization: bearer })).status, 200);
    assert.equal((await get(port, DISCOVERY_PATH)).status, 200);
    // 403: no route (route -), an audience the route does not accept (route other).
    assert.equal((await get(port, '/nowhere/x', { authorization: bearer })).status, 403);
    assert.equal((await get(port, '/other/x', { authorization: bearer })).status, 403);
    // 502: the upstream refuses connections; 504: the application answers after the upstream timeout.
    assert.equal((await get(port, '/down/x', { authorization: bearer })).status, 502);
    assert.equal((await get(port, '/api/slow?ms=5000', { authorization: bearer })).status, 504);
    // Agents gone: HTTP/1.1 and h2c while waiting for the application (nothing sent: status 0) ...
    await leaveWhileWaiting(stack, port, '/api/slow?ms=4000', bearer);
    const stream = session.request({ ':path': '/api/slow?ms=4001', authorization: bearer }, { endStream: true });
    stream.on('error', () => undefined);
    await waitFor(() => stack.app.seen.some((r) => r.url === '/slow?ms=4001'), { message: 'the application saw the h2c request' });
    stream.close(h2.NGHTTP2_CANCEL);
    // ... and in the middle of a streamed response (200 sent, never complete: 'finish' never came).
    const sse = session.request({ ':path': '/api/sse', authorization: bearer }, { endStream: true });
    sse.on('error', () => undefined);
    await withTimeout(once(sse, 'data'), REQUEST_DEADLINE_MS, 'h2c GET /api/sse: no first event');
    sse.close(h2.NGHTTP2_CANCEL);
    // Header sections too large: HTTP/1.1 431 from the parser, an h2c stream reset by the listener
    // (a client that never acknowledges SETTINGS: otherwise Node's HTTP/2 layer resets it first).
    assert.equal((await get(port, '/api/big', { 'x-padding': padding(17 * 1024) })).status, 431);
    const unacked = await connectWithoutSettingsAck(stack.egress.url);
    t.after(() => unacked.close());
    const big = await withTimeout(unacked.request({ ':path': '/api/big', 'x-padding': padding(17 * 1024) }), REQUEST_DEADLINE_MS, 'oversized h2c request');
    assert.deepEqual([big.status, big.rstCode], [0, h2.NGHTTP2_ENHANCE_YOUR_CALM]);

    await waitFor(() => stack.egress.state().activeRequests === 0 && stack.ingress.state().activeRequests === 0, {
      message: () => `requests still in flight: egress ${JSON.stringify(stack.egress.state())}, ingress ${JSON.stringify(stack.ingress.state())}`,
    });
    const egressText = await scrape(stack.egress.metrics!.url);
    const expected = {
      'api/200': 6,
      'discovery/200': 1,
      '-/403': 1,
      'other/403': 1,
      'down/502': 1,
      'api/504': 1,
      'api/0': 2,
      '-/431': 1,
      '-/0': 1,
    };
    assert.deepEqual(series(egressText, 'tether_egress_requests_total'), expected);
    assert.deepEqual(series(egressText, 'tether_egress_request_duration_seconds_count'), expected, 'one observation per request');
    assert.match(egressText, /^tether_egress_request_duration_seconds_bucket\{le="\+Inf",route="api",status="504"\} 1$/m);
    const timedOut = Number(/^tether_egress_request_duration_seconds_sum\{route="api",status="504"\} (\S+)$/m.exec(egressText)?.[1]);
    assert.ok(timedOut >= UPSTREAM_TIMEOUT_MS / 1000 && timedOut < 5, `the 504 took about the upstream timeout (${timedOut} s)`);
    assert.equal(stack.egress.stats.requests, 13, 'stats.requests: the requests that reached the handler');
    assert.equal(stack.egress.stats.failures.header_too_large, 2);
    assert.equal(stack.egress.stats.failures.agent_gone, 2);
    assert.match(egressText, /^tether_egress_failures_total\{reason="audience_mismatch"\} 1$/m);

    // The ingress saw the 9 route-api requests: the 6 answered, the 504 and the two agents gone
    // while waiting (cancelled: nothing sent), the streamed response the agent left (200 sent).
    const ingressText = await scrape(stack.ingress.metrics!.url);
    const ingress = series(ingressText, 'tether_ingress_requests_total');
    assert.deepEqual(ingress, { 'app/200': 6, 'app/0': 3 });
    const egressApi = Object.entries(series(egressText, 'tether_egress_requests_total')).filter(([k]) => k.startsWith('api/'));
    assert.equal(
      egressApi.reduce((n, [, v]) => n + v, 0),
      ingress['app/200']! + ingress['app/0']!,
      'the egress and the ingress count the same requests',
    );
    assert.equal(expected['api/200'], ingress['app/200'], 'and the same answered ones');
  });
});

describe('egress metrics with a raw agent', () => {
  it('an HTTP/1.1 request the parser refuses (400) is counted once, route -', async (t) => {
    const stack = await startStack();
    t.after(() => stack.close());
    const port = stack.egress.endpoint.kind === 'tcp' ? stack.egress.endpoint.port : 0;
    const socket = netConnect(port, '127.0.0.1');
    t.after(() => socket.destroy());
    let reply = '';
    socket.setEncoding('utf8').on('data', (c: string) => (reply += c));
    socket.write('GET /api/x HTTP/1.1\r\nHost: api\r\nBad Header Name: x\r\n\r\n');
    await withTimeout(once(socket, 'close'), REQUEST_DEADLINE_MS, 'the egress did not close the connection');
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\nConnection: close\r\n\r\n$/);
    const text = await scrape(stack.egress.metrics!.url);
    assert.deepEqual(series(text, 'tether_egress_requests_total'), { '-/400': 1 });
    assert.equal(stack.egress.stats.failures.bad_request, 1);
  });
});
