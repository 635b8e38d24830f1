/**
 * Operating the ingress (issue 12 items 1 and 6): every request counted exactly once in
 * `tether_ingress_requests_total{route,status}` and the duration histogram (accepted, refused,
 * metadata, 405, header sections too large on HTTP/1.1 and HTTP/2, a client that left first); `/readyz` (ready, draining,
 * certificate expired) next to `/healthz` (liveness); the one JSON ready line of `tether ingress`
 * from a real child process; option validation naming the option; the ERR_INGRESS_* table.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { jwtAccessTokenValidator, localJwks } from '@tether/core';
import { createDevPki, writeDevPki } from '@tether/pki';
import { INGRESS_DEFAULTS, INGRESS_ERRORS, resolveIngressOptions, runIngressCommand, SidecarConfigError, startIngress, type IngressConfig } from '@tether/sidecar';
import { openRawConnection, type RawConnection } from '../adapters/raw.js';
import { connectWithoutSettingsAck } from '../helpers/h2-unacked.js';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { padding } from '../helpers/limits.js';
import { testPki } from '../helpers/pki.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';
import { spawnSidecar } from './helpers/child.js';
import { startEchoApp, startStack, startTestIngress, type Stack } from './helpers/stack.js';

const REQUEST_DEADLINE_MS = 10_000;
const METADATA = '/.well-known/oauth-protected-resource';

async function stackFor(t: TestContext, ingress: Partial<IngressConfig> = {}): Promise<Stack> {
  const stack = await startStack({ ingress });
  t.after(() => stack.close());
  return stack;
}

async function raw(t: TestContext, stack: Stack, protocol: 'h2' | 'http/1.1'): Promise<RawConnection> {
  const connection = await openRawConnection(stack.ingress.url, stack.pki.clients.client!, { protocol, ca: stack.pki.ca.cert });
  t.after(() => connection.close());
  return connection;
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { signal: deadline(REQUEST_DEADLINE_MS, `GET ${url}`) });
  return { status: res.status, text: await res.text() };
}

/** `{ "route/status": n }` of one counter or histogram series in the Prometheus text. */
function series(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{route="([a-z]+)",status="(\\d+)"\\} (\\d+)$`, 'gm');
  for (const m of text.matchAll(re)) out[`${m[1]}/${m[2]}`] = Number(m[3]);
  return out;
}

describe('ingress request metrics', () => {
  it('every request is counted exactly once, by route and status sent, in the counter and the duration histogram', async (t) => {
    const stack = await stackFor(t);
    const bearer = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
    const h1 = await raw(t, stack, 'http/1.1');
    const h2 = await raw(t, stack, 'h2');
    const authorized = async (c: RawConnection) => [['authorization', `Bearer ${bearer}`], ['session-binding-proof', await c.proof(bearer)]] as Array<[string, string]>;
    const call = (c: RawConnection, request: Parameters<RawConnection['request']>[0]) => withTimeout(c.request(request), REQUEST_DEADLINE_MS, `${request.method ?? 'GET'} ${request.path}`);

    // 5 accepted (3 HTTP/2, 2 HTTP/1.1).
    for (const c of [h2, h2, h2, h1, h1]) assert.equal((await call(c, { path: '/echo', headers: await authorized(c) })).status, 200);
    // 3 refused with 401: no token (both protocols), a token without its proof.
    assert.equal((await call(h2, { path: '/echo', headers: [] })).status, 401);
    assert.equal((await call(h1, { path: '/echo', headers: [] })).status, 401);
    assert.equal((await call(h2, { path: '/echo', headers: [['authorization', `Bearer ${bearer}`]] })).status, 401);
    // Metadata: 2 GETs, 1 POST (405, the body's error kept).
    assert.equal((await call(h2, { path: METADATA, headers: [] })).status, 200);
    assert.equal((await call(h1, { path: METADATA, headers: [] })).status, 200);
    const post = await call(h2, { method: 'POST', path: METADATA, headers: [] });
    assert.equal(post.status, 405);
    assert.equal((JSON.parse(post.body) as { error: string }).error, 'method_not_allowed');
    assert.equal(post.headers.allow, 'GET, HEAD');
    // Header sections too large: HTTP/1.1 431 from the parser, HTTP/2 reset by the ingress (a client that never acknowledges SETTINGS).
    const big = await raw(t, stack, 'http/1.1');
    assert.equal((await call(big, { path: '/echo', headers: [['x-padding', padding(17 * 1024)]] })).status, 431);
    const unacked = await connectWithoutSettingsAck(stack.ingress.url, { cert: stack.pki.clients.client!.cert, key: stack.pki.clients.client!.key, ca: stack.pki.ca.cert });
    t.after(() => unacked.close());
    const reset = await withTimeout(unacked.request({ ':path': '/echo', 'x-padding': padding(17 * 1024) }), REQUEST_DEADLINE_MS, 'oversized HTTP/2 request');
    assert.deepEqual([reset.status, reset.rstCode], [0, 11], 'reset with ENHANCE_YOUR_CALM, no response');

    // A client that leaves before the answer (HTTP/1.1): counted with status 0 once its response closes.
    const leaving = await raw(t, stack, 'http/1.1');
    const headers = await authorized(leaving);
    leaving.request({ path: '/slow?ms=5000', headers }).catch(() => undefined);
    await waitFor(() => stack.app.seen.some((r) => r.url === '/slow?ms=5000'), { message: 'the slow request reached the application' });
    leaving.socket.destroy();

    await waitFor(() => stack.ingress.state().activeRequests === 0, { message: () => `requests still in flight: ${JSON.stringify(stack.ingress.state())}` });
    const text = (await get(`${stack.ingress.metrics!.url}/metrics`)).text;
    const expected = { 'app/200': 5, 'app/0': 1, 'refused/401': 3, 'metadata/200': 2, 'metadata/405': 1, 'refused/431': 1, 'refused/0': 1 };
    assert.deepEqual(series(text, 'tether_ingress_requests_total'), expected);
    assert.deepEqual(series(text, 'tether_ingress_request_duration_seconds_count'), expected, 'one observation per request');
    const appSeconds = Number(/^tether_ingress_request_duration_seconds_sum\{route="app",status="200"\} (\S+)$/m.exec(text)?.[1]);
    assert.ok(appSeconds > 0 && appSeconds < 30, `app request durations sum to a plausible time (${appSeconds} s)`);
    assert.match(text, /^tether_ingress_request_duration_seconds_bucket\{le="\+Inf",route="app",status="200"\} 5$/m);
    assert.equal(stack.ingress.stats.requests, 14);
    assert.equal(stack.ingress.stats.failures.header_too_large, 2);
    assert.equal(stack.ingress.stats.failures.method_not_allowed, 1);
    assert.match(text, /^tether_ingress_failures_total\{reason="header_too_large"\} 2$/m);
  });
});

describe('ingress readiness', () => {
  it('/readyz: 200 while serving, 503 draining once shutdown begins (in-flight requests still answered); /healthz stays 200', async (t) => {
    const stack = await stackFor(t);
    const ops = stack.ingress.metrics!.url;
    assert.deepEqual(await get(`${ops}/readyz`), { status: 200, text: '{"status":"ready"}' });
    assert.deepEqual(await get(`${ops}/healthz`), { status: 200, text: '{"status":"ok"}' });
    const bearer = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
    const c = await raw(t, stack, 'http/1.1');
    const slow = c.request({ path: '/slow?ms=1500', headers: [['authorization', `Bearer ${bearer}`], ['session-binding-proof', await c.proof(bearer)]] });
    await waitFor(() => stack.ingress.state().activeRequests === 1, { message: 'the slow request reached the ingress' });
    const closing = stack.ingress.close();
    assert.deepEqual(stack.ingress.readiness(), { ready: false, reason: 'draining' });
    assert.deepEqual(await get(`${ops}/readyz`), { status: 503, text: '{"status":"not_ready","reason":"draining"}' });
    assert.equal((await get(`${ops}/healthz`)).status, 200, 'liveness is not readiness');
    const answered = await withTimeout(slow, REQUEST_DEADLINE_MS, 'the in-flight request during the drain');
    assert.equal(answered.status, 200);
    assert.equal(answered.headers.connection, 'close');
    await withTimeout(closing, REQUEST_DEADLINE_MS, 'the ingress did not finish closing');
  });

  it('/readyz: 503 certificate_expired when the server certificate is past its notAfter', async (t) => {
    const pki = await createDevPki({ days: 0 }); // notAfter: now
    const issuer = await TestIssuer.create();
    const ingress = await startTestIngress(pki, issuer, 'http://127.0.0.1:1', { metricsListen: '127.0.0.1:0' });
    t.after(() => ingress.close());
    const notAfter = Date.parse(new X509Certificate(pki.server.cert).validTo);
    await waitFor(() => Date.now() > notAfter, { message: 'the certificate expired' });
    assert.deepEqual(await get(`${ingress.metrics!.url}/readyz`), { status: 503, text: '{"status":"not_ready","reason":"certificate_expired"}' });
    assert.equal((await get(`${ingress.metrics!.url}/healthz`)).status, 200);
  });
});

describe('tether ingress in a child process', () => {
  it('prints exactly one JSON ready line {listening, metrics, pid} on stdout once it listens, and exits 0 on SIGTERM', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-ingress-ready-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await writeDevPki(dir, { clients: ['client'] });
    const issuer = await TestIssuer.create();
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
    // Readiness includes the application accepting connections.
    const app = await startEchoApp();
    t.after(() => app.close());
    const args = ['--listen', '127.0.0.1:0', '--cert', join(dir, 'server.pem'), '--key', join(dir, 'server.key'), '--ca', join(dir, 'ca.pem'), '--upstream', app.url, '--jwks-file', join(dir, 'jwks.json'), '--issuer', ISSUER, '--audience', AUDIENCE, '--metrics-listen', '127.0.0.1:0'];
    const { child, ready, exited, line, stdout, stderr } = await spawnSidecar(t, 'ingress', args);
    assert.deepEqual(Object.keys(ready), ['listening', 'metrics', 'pid']);
    assert.equal(ready.pid, child.pid);
    assert.match(ready.listening, /^https:\/\/127\.0\.0\.1:[1-9]\d*$/);
    assert.match(ready.metrics, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    // The addresses work: readiness, and the metadata over mTLS.
    assert.deepEqual(await get(`${ready.metrics}/readyz`), { status: 200, text: '{"status":"ready"}' });
    const c = await openRawConnection(ready.listening, { cert: readFileSync(join(dir, 'client.pem'), 'utf8'), key: readFileSync(join(dir, 'client.key'), 'utf8') }, { protocol: 'h2', ca: readFileSync(join(dir, 'ca.pem'), 'utf8') });
    t.after(() => c.close());
    assert.equal((await withTimeout(c.request({ path: METADATA, headers: [] }), REQUEST_DEADLINE_MS, 'metadata')).status, 200);
    await c.close();
    child.kill('SIGTERM');
    assert.equal(await withTimeout(exited, REQUEST_DEADLINE_MS, 'no exit after SIGTERM'), 0, stderr());
    assert.equal(stdout(), `${line}\n`, 'exactly one line on stdout');
    assert.match(stderr(), /"ingress ready"/, 'logs go to stderr');
  });
});

describe('ingress options', () => {
  const base = async (): Promise<IngressConfig> => {
    const pki = await testPki();
    const issuer = await TestIssuer.create();
    return { listen: '127.0.0.1:0', cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, upstream: 'http://127.0.0.1:1', tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }), log: { level: 'silent' } };
  };

  it('defaults come from one table; bad values are configuration errors naming the option and its flag', async () => {
    const config = await base();
    const options = resolveIngressOptions(config);
    assert.equal(options.idleTimeoutMs, INGRESS_DEFAULTS.idleTimeoutMs);
    assert.equal(options.idleTimeoutMs, 120_000);
    assert.equal(options.appTimeoutMs, 30_000);
    assert.equal(options.maxRequestsPerConnection, Infinity);
    const bad: Array<[Partial<IngressConfig>, RegExp]> = [
      [{ idleTimeoutMs: -1 }, /^--idle-timeout \(idleTimeoutMs\) must be a number from 0 \(never\) of seconds on the command line, milliseconds in the configuration, at most 2147483647 ms$/],
      [{ idleTimeoutMs: Number.NaN }, /^--idle-timeout \(idleTimeoutMs\)/],
      [{ idleTimeoutMs: 2 ** 31 }, /^--idle-timeout \(idleTimeoutMs\)/],
      [{ drainTimeoutMs: -5 }, /^--drain-timeout \(drainTimeoutMs\)/],
      [{ maxRequestsPerConnection: 0 }, /^--max-requests-per-connection \(maxRequestsPerConnection\) must be a whole number, at least 1$/],
      [{ maxRequestsPerConnection: 1.5 }, /^--max-requests-per-connection \(maxRequestsPerConnection\)/],
      [{ listen: 'unix:/tmp/x.sock' }, /^--listen \(listen\) must be HOST:PORT/],
      [{ upstream: 'ftp://x' }, /--upstream \(upstream\)/],
      [{ minimumBinding: 'none' as 'session' }, /^--minimum-binding \(minimumBinding\) must be session or certificate$/],
      [{ cert: 'not a certificate' }, /^--cert \(cert\) is not a PEM certificate$/],
      [{ tokens: undefined }, /^--jwks-url, --jwks-file or --introspection-url \(tokens\) is required/],
    ];
    for (const [change, message] of bad) {
      assert.throws(() => resolveIngressOptions({ ...config, ...change }), (error: unknown) => {
        assert.ok(error instanceof SidecarConfigError, String(error));
        assert.equal(error.code, 'ERR_SIDECAR_CONFIG');
        assert.match(error.message, message);
        return true;
      }, JSON.stringify(change));
    }
    await assert.rejects(startIngress({ ...config, idleTimeoutMs: -1 }), SidecarConfigError, 'startIngress validates the same way');
  });

  it('the command line: --idle-timeout in seconds, refused with exit 2 and one line; other values checked by the same validation', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-ingress-options-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await writeDevPki(dir, { clients: ['client'] });
    const issuer = await TestIssuer.create();
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
    const args = ['--listen', '127.0.0.1:0', '--cert', join(dir, 'server.pem'), '--key', join(dir, 'server.key'), '--ca', join(dir, 'ca.pem'), '--upstream', 'http://127.0.0.1:1', '--jwks-file', join(dir, 'jwks.json'), '--issuer', ISSUER, '--audience', AUDIENCE, '--log-level', 'silent'];
    const cases: Array<[string[], string | RegExp]> = [
      [['--idle-timeout=-1'], 'tether ingress: --idle-timeout must be a number of seconds (see \'tether ingress --help\')\n'],
      [['--idle-timeout', 'soon'], 'tether ingress: --idle-timeout must be a number of seconds (see \'tether ingress --help\')\n'],
      [['--idle-timeout', '9999999'], /^tether ingress: --idle-timeout \(idleTimeoutMs\) must be a number from 0 \(never\) of seconds on the command line, milliseconds in the configuration, at most 2147483647 ms \(see 'tether ingress --help'\)\n$/],
      [['--max-requests-per-connection', 'many'], /^tether ingress: --max-requests-per-connection \(maxRequestsPerConnection\) must be a whole number, at least 1 \(see 'tether ingress --help'\)\n$/],
      [['--minimum-binding', 'none'], /^tether ingress: --minimum-binding \(minimumBinding\) must be session or certificate \(see 'tether ingress --help'\)\n$/],
    ];
    for (const [extra, expected] of cases) {
      let out = '';
      const sink = { write: (chunk: string) => (out += chunk) };
      assert.equal(await runIngressCommand([...args, ...extra], { stderr: sink, stdout: sink }), 2, extra.join(' '));
      if (typeof expected === 'string') assert.equal(out, expected);
      else assert.match(out, expected);
    }
  });

  it('the error table: stable ERR_INGRESS_* codes with their status and the JSON error values clients see', () => {
    for (const [code, row] of Object.entries(INGRESS_ERRORS)) {
      assert.match(code, /^ERR_INGRESS_[A-Z_]+$/);
      assert.ok(row.statusCode >= 400 && row.statusCode <= 599, code);
    }
    assert.deepEqual([INGRESS_ERRORS.ERR_INGRESS_UPSTREAM_TIMEOUT.statusCode, INGRESS_ERRORS.ERR_INGRESS_UPSTREAM_TIMEOUT.error], [504, 'upstream_timeout']);
    assert.deepEqual([INGRESS_ERRORS.ERR_INGRESS_UPSTREAM_UNAVAILABLE.statusCode, INGRESS_ERRORS.ERR_INGRESS_UPSTREAM_UNAVAILABLE.error], [502, 'upstream_unavailable']);
    assert.deepEqual([INGRESS_ERRORS.ERR_INGRESS_METHOD_NOT_ALLOWED.statusCode, INGRESS_ERRORS.ERR_INGRESS_METHOD_NOT_ALLOWED.error], [405, 'method_not_allowed']);
  });
});
