/**
 * Operations surface of the authorization server: `tether_as_request_duration_seconds` is
 * labelled with the status actually sent (a refusal's status comes from the error handler, after
 * the endpoint handler threw), and the operations listener (`metricsListen`) answers `/metrics`,
 * `/healthz` and `/readyz` over plain HTTP on its own address.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect as http2Connect, constants as h2 } from 'node:http2';
import { X509Certificate } from 'node:crypto';
import type { IssuedCertificate } from '@tether/pki';
import { createServer } from 'node:net';
import { httpAnswer, type HttpAnswer } from '../helpers/http-answer.js';
import { removeDir, spiffe, startTestAs, tempDir, type TestAs } from './helpers/setup.js';

/** One plain HTTP request on its own connection (closed afterwards), 5 s deadline. */
function plain(url: string, method = 'GET'): Promise<HttpAnswer> {
  return httpAnswer(`${method} ${url}`, (onResponse) => httpRequest(url, { method, agent: false }, onResponse), 5000);
}

/** `tether_as_request_duration_seconds_count` samples of `endpoint`, by status label, from the exposition text. */
function countsByStatus(text: string, endpoint: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = /^tether_as_request_duration_seconds_count\{([^}]*)\} (\d+)$/gm;
  for (const m of text.matchAll(re)) {
    const labels = Object.fromEntries([...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels.endpoint === endpoint) out[labels.status as string] = (out[labels.status as string] ?? 0) + Number(m[2]);
  }
  return out;
}

/** Poll `check` until it returns a value other than undefined, or fail after `timeoutMs` with `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A token request over HTTP/2 with the client certificate; resolves the status. */
function http2Token(as: TestAs, identity: IssuedCertificate, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(as.server.url, { cert: identity.cert, key: identity.key, ca: as.pki.ca.cert, minVersion: 'TLSv1.3' });
    const timer = setTimeout(() => session.destroy(new Error('HTTP/2 token request: no answer within 5 s')), 5000);
    session.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: '/token', 'content-type': 'application/x-www-form-urlencoded' });
    let status = 0;
    stream.on('response', (headers) => (status = Number(headers[h2.HTTP2_HEADER_STATUS])));
    stream.resume();
    stream.on('close', () => {
      clearTimeout(timer);
      session.close();
      resolve(status);
    });
    stream.end(body);
  });
}

describe('AS request metrics and operations listener', () => {
  let as: TestAs;
  let ops: string;

  before(async () => {
    as = await startTestAs({}, { start: { metricsListen: { host: '127.0.0.1', port: 0 } } });
    ops = as.server.metricsUrl as string;
  });
  after(() => as.close());

  test('the request duration histogram is labelled with the status sent: 3 x 200, 2 x 400, 1 x 401 on /token', async () => {
    assert.match(ops, /^http:\/\/127\.0\.0\.1:\d+$/);
    for (let i = 0; i < 3; i++) await as.token('a', { audience: spiffe('b') });
    const unsupported = await as.post('a', '/token', { grant_type: 'password', client_id: 'a' });
    assert.equal(unsupported.status, 400, unsupported.text);
    assert.equal(await http2Token(as, as.pki.clients.a as IssuedCertificate, 'grant_type=password&client_id=a'), 400, 'the same refusal over HTTP/2');
    const wrongClient = await as.post('a', '/token', { grant_type: 'client_credentials', client_id: 'b' });
    assert.equal(wrongClient.status, 401, wrongClient.text);
    assert.equal(wrongClient.json?.error, 'invalid_client');

    // Each response is recorded when it is finished on the server; wait until all six are in.
    const counts = await until('six token requests in the histogram', async () => {
      const scrape = await plain(`${ops}/metrics`);
      assert.equal(scrape.status, 200);
      const c = countsByStatus(scrape.body, 'token');
      return Object.values(c).reduce((a, b) => a + b, 0) >= 6 ? c : undefined;
    });
    assert.deepEqual(counts, { '200': 3, '400': 2, '401': 1 }, 'exact counts per status, no refusal labelled 200');
    // The in-process registry is the one the listener serves.
    const { values } = await as.server.metrics.requestDuration.get();
    const inProcess = values.filter((v) => v.metricName === 'tether_as_request_duration_seconds_count' && v.labels.endpoint === 'token');
    assert.deepEqual(Object.fromEntries(inProcess.map((v) => [String(v.labels.status), v.value])), counts);
  });

  test('/healthz and /readyz: 200 JSON while running; other paths 404, other methods 405', async () => {
    const health = await plain(`${ops}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body), { status: 'ok' });
    assert.match(String(health.headers['content-type']), /^application\/json/);
    const ready = await plain(`${ops}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.body), { status: 'ready' });
    assert.deepEqual(as.server.readiness(), { ready: true });
    assert.equal((await plain(`${ops}/readyz?verbose=1`)).status, 200, 'a query string does not change the path');
    assert.equal((await plain(`${ops}/token`)).status, 404, 'the operations listener serves no OAuth endpoint');
    const post = await plain(`${ops}/readyz`, 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const head = await plain(`${ops}/readyz`, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  test('/readyz is 503 certificate_expired once the AS clock passes the server certificate notAfter, 200 again before it', async () => {
    const notAfter = Date.parse(new X509Certificate(as.pki.server.cert).validTo);
    as.skew.ms = notAfter - Date.now() + 1000;
    try {
      const expired = await plain(`${ops}/readyz`);
      assert.equal(expired.status, 503);
      assert.deepEqual(JSON.parse(expired.body), { status: 'not_ready', reason: 'certificate_expired' });
      assert.equal((await plain(`${ops}/healthz`)).status, 200, 'liveness does not depend on readiness');
    } finally {
      as.skew.ms = 0;
    }
    assert.equal((await plain(`${ops}/readyz`)).status, 200);
  });

  test('readiness during close is draining, then stopped; the operations listener closes last', async () => {
    const closing = as.server.close();
    assert.deepEqual(as.server.readiness(), { ready: false, reason: 'draining' });
    await closing;
    assert.deepEqual(as.server.readiness(), { ready: false, reason: 'stopped' });
    await assert.rejects(plain(`${ops}/healthz`), /ECONNREFUSED/, 'the operations listener is closed with the server');
  });
});

test('an operations listener address in use fails the start with its address; the data directory is released', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  const dataDir = tempDir();
  try {
    await assert.rejects(startTestAs({}, { dataDir, start: { metricsListen: { host: '127.0.0.1', port } } }), new RegExp(`operations listener 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    const again = await startTestAs({}, { dataDir });
    assert.equal(again.server.metricsUrl, undefined);
    await again.close();
  } finally {
    blocker.close();
    removeDir(dataDir);
  }
});
