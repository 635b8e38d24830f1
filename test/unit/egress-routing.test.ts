/**
 * The egress's pure request policy (route resolution, bearer extraction, audience policy), its
 * retry classification and its option validation, without sockets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SidecarConfigError } from '@tether/sidecar';
import { EGRESS_ERRORS } from '../../packages/sidecar/src/egress/errors.js';
import { EGRESS_DEFAULTS, resolveEgressOptions } from '../../packages/sidecar/src/egress/options.js';
import { ConnectError, connectFailure, freshProofWanted, LostError, sendResilient, UnprocessedError, type RetryEvents } from '../../packages/sidecar/src/egress/retry.js';
import { bearerToken, checkAudience, hasDotSegment, isLocalPath, requestHostname, resolveRoute, routeTable, unverifiedAudience } from '../../packages/sidecar/src/egress/routing.js';
import type { Outbound, UpstreamResponse } from '../../packages/sidecar/src/egress/upstream/exchange.js';
import { SidecarError } from '../../packages/sidecar/src/shared/errors.js';

const routes = routeTable([
  { name: 'orders', basePath: '' },
  { name: 'Search', basePath: '/v2' },
]);

function jwt(payload: unknown): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'none' })}.${part(payload)}.sig`;
}

/** Asserts `fn` throws the egress error `code`, with the table's status and `error`. */
function throwsCode(fn: () => unknown, code: keyof typeof EGRESS_ERRORS): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof SidecarError, String(error));
    assert.equal(error.code, code);
    assert.equal(error.statusCode, EGRESS_ERRORS[code].statusCode);
    assert.equal(error.error, EGRESS_ERRORS[code].error);
    return true;
  });
}

describe('egress routing', () => {
  it('routes by host name (path as is) and by first path segment (prefix removed), with the base path', () => {
    assert.deepEqual(resolveRoute(routes, '/v1/items?x=1', { host: 'orders:8081' }), { route: routes.get('orders'), path: '/v1/items?x=1' });
    assert.deepEqual(resolveRoute(routes, '/orders/v1/items', { host: '127.0.0.1:8081' }), { route: routes.get('orders'), path: '/v1/items' });
    assert.equal(resolveRoute(routes, '/search/q?term=a', { host: 'localhost' }).path, '/v2/q?term=a');
    assert.equal(resolveRoute(routes, '/SEARCH', { host: 'localhost' }).path, '/v2/', 'names match case-insensitively; an empty rest is /');
    assert.equal(resolveRoute(routes, '/search?term=a', { host: 'localhost' }).path, '/v2/?term=a');
    assert.equal(resolveRoute(routes, '/x', { ':authority': 'Search' }).path, '/v2/x', 'h2c :authority counts like Host');
    assert.equal(requestHostname({ host: '[::1]:8081' }), '::1');
  });

  it('refuses unknown destinations and dot segments (also percent-encoded) before routing', () => {
    throwsCode(() => resolveRoute(routes, '/billing/x', { host: 'localhost' }), 'ERR_EGRESS_NO_ROUTE');
    throwsCode(() => resolveRoute(routes, '/', { host: 'localhost' }), 'ERR_EGRESS_NO_ROUTE');
    for (const path of ['/orders/../admin', '/orders/%2e%2e/admin', '/orders/./x', '/orders/%2E/x', '/..']) {
      assert.ok(hasDotSegment(path), path);
      throwsCode(() => resolveRoute(routes, path, { host: 'orders' }), 'ERR_EGRESS_DOT_SEGMENT');
    }
    assert.equal(hasDotSegment('/orders/a..b/.x/?q=..'), false, 'dots inside segments and in the query are fine');
  });

  it('answers local paths only when no route claims the host name', () => {
    assert.equal(isLocalPath(routes, '/.well-known/tether-egress?x', { host: 'localhost' }, '/.well-known/tether-egress'), true);
    assert.equal(isLocalPath(routes, '/.well-known/tether-egress', { host: 'orders' }, '/.well-known/tether-egress'), false);
  });

  it('extracts the bearer token; other schemes pass unchanged; duplicates and malformed Bearer are refused', () => {
    assert.deepEqual(bearerToken(['Authorization', 'Bearer abc.def-_~+/=']), { token: 'abc.def-_~+/=', authorization: 'Bearer abc.def-_~+/=' });
    assert.deepEqual(bearerToken(['authorization', 'Basic dXNlcjpwdw==']), { token: undefined, authorization: 'Basic dXNlcjpwdw==' });
    assert.deepEqual(bearerToken([]), { token: undefined, authorization: undefined });
    throwsCode(() => bearerToken(['Authorization', 'Bearer a', 'authorization', 'Bearer b']), 'ERR_EGRESS_DUPLICATE_AUTHORIZATION');
    throwsCode(() => bearerToken(['Authorization', 'Bearer a b']), 'ERR_EGRESS_MALFORMED_BEARER');
    throwsCode(() => bearerToken(['Authorization', 'Bearer']), 'ERR_EGRESS_MALFORMED_BEARER');
  });

  it('audience policy: the unverified aud must name a route audience; opaque tokens are refused; none checks nothing', () => {
    assert.deepEqual(unverifiedAudience(jwt({ aud: ['a', 'b'] })), ['a', 'b']);
    assert.deepEqual(unverifiedAudience(jwt({ aud: 7 })), []);
    assert.equal(unverifiedAudience('opaque'), undefined);
    assert.equal(unverifiedAudience('a.!!!.c'), undefined);
    checkAudience('audience', ['https://orders'], jwt({ aud: 'https://orders' }));
    checkAudience('audience', ['https://orders'], undefined);
    throwsCode(() => checkAudience('audience', ['https://orders'], jwt({ aud: 'https://search' })), 'ERR_EGRESS_TOKEN_NOT_ALLOWED');
    throwsCode(() => checkAudience('audience', ['https://orders'], jwt({})), 'ERR_EGRESS_TOKEN_NOT_ALLOWED');
    throwsCode(() => checkAudience('audience', ['https://orders'], 'opaque-token'), 'ERR_EGRESS_OPAQUE_TOKEN');
    checkAudience('none', ['https://orders'], 'opaque-token');
  });

  it('every error code is ERR_EGRESS_*, with a 4xx/5xx status and an error value; reasons keep their metric names', () => {
    for (const [code, def] of Object.entries(EGRESS_ERRORS)) {
      assert.match(code, /^ERR_EGRESS_[A-Z_]+$/);
      assert.ok(def.statusCode >= 400 && def.statusCode < 600, code);
      assert.match(def.error, /^[a-z_]+$/, code);
    }
    assert.equal(EGRESS_ERRORS.ERR_EGRESS_UPSTREAM_TIMEOUT.statusCode, 504);
    assert.equal(EGRESS_ERRORS.ERR_EGRESS_UPSTREAM_TIMEOUT.reason, 'upstream_timeout');
    assert.equal(EGRESS_ERRORS.ERR_EGRESS_UPSTREAM_UNAVAILABLE.reason, 'upstream_error');
  });
});

describe('egress retry classification', () => {
  const response = (status: number, wwwAuthenticate: string | undefined, sentProof: string | undefined): UpstreamResponse =>
    ({ status, headers: wwwAuthenticate === undefined ? {} : { 'www-authenticate': wwwAuthenticate }, body: undefined as never, sentProof, abort: () => undefined });

  it('a fresh proof is wanted only for a 401 use_session_binding / invalid_proof to a request that carried a proof', () => {
    assert.equal(freshProofWanted(response(401, 'Bearer error="invalid_proof"', 'p'), 't'), 'invalid_proof');
    assert.equal(freshProofWanted(response(401, 'Bearer error="use_session_binding"', 'p'), 't'), 'use_session_binding');
    assert.equal(freshProofWanted(response(401, 'Bearer error="invalid_token"', 'p'), 't'), undefined);
    assert.equal(freshProofWanted(response(401, 'Bearer error="invalid_proof"', undefined), 't'), undefined);
    assert.equal(freshProofWanted(response(403, 'Bearer error="invalid_proof"', 'p'), 't'), undefined);
  });

  it('only transient connect failures become ConnectError', () => {
    const errno = (code: string) => Object.assign(new Error(code), { code });
    assert.ok(connectFailure(errno('ECONNREFUSED')) instanceof ConnectError);
    assert.ok(!(connectFailure(errno('CERT_HAS_EXPIRED')) instanceof UnprocessedError));
  });

  it('resends once: unprocessed always, lost only when idempotent, never a streamed body', async () => {
    const events: RetryEvents = { connectRetry: () => undefined, connectionRetry: () => undefined, freshProofRetry: () => undefined, freshProofImpossible: () => undefined };
    const outbound = (method: string, buffered = true): Outbound => ({
      method,
      path: '/',
      headers: {},
      body: buffered ? { kind: 'buffered', data: Buffer.alloc(0) } : { kind: 'stream', source: undefined as never },
      token: undefined,
    });
    const attempts = async (o: Outbound, failure: () => Error): Promise<number> => {
      let n = 0;
      await sendResilient(() => (n++, Promise.reject(failure())), o, 0, events).catch(() => undefined);
      return n;
    };
    assert.equal(await attempts(outbound('POST'), () => new UnprocessedError('goaway')), 2);
    assert.equal(await attempts(outbound('POST'), () => new LostError('reset')), 1);
    assert.equal(await attempts(outbound('GET'), () => new LostError('reset')), 2);
    assert.equal(await attempts(outbound('GET', false), () => new LostError('reset')), 1);
    assert.equal(await attempts(outbound('GET'), () => new Error('certificate')), 1);
  });
});

describe('egress options', () => {
  const base = { listen: '127.0.0.1:0', cert: 'c', key: 'k', routes: [{ name: 'a', upstream: 'https://a.example' }] };
  const fails = (patch: object, message: RegExp) =>
    assert.throws(
      () => resolveEgressOptions({ ...base, ...patch }),
      (error: unknown) => error instanceof SidecarConfigError && error.code === 'ERR_SIDECAR_CONFIG' && message.test(error.message),
      String(message),
    );

  it('applies the defaults once', () => {
    const o = resolveEgressOptions(base);
    assert.equal(o.upstreamTimeoutMs, EGRESS_DEFAULTS.upstreamTimeoutMs);
    assert.equal(o.upstreamTimeoutMs, 30_000);
    assert.equal(o.agentIdleTimeoutMs, 300_000);
    assert.equal(o.connectRetryMs, 2000);
    assert.equal(o.retryBufferBytes, 1024 * 1024);
    assert.equal(o.tokenPolicy, 'audience');
    assert.deepEqual(o.routes[0]?.audiences, ['https://a.example']);
    assert.equal(resolveEgressOptions({ ...base, upstreamTimeoutMs: 0, agentIdleTimeoutMs: 0 }).upstreamTimeoutMs, 0, '0 turns it off');
  });

  it('names the flag and the configuration key in every error', () => {
    fails({ upstreamTimeoutMs: -1 }, /^--upstream-timeout \(upstreamTimeoutMs\) must be/);
    fails({ upstreamTimeoutMs: Number.NaN }, /--upstream-timeout \(upstreamTimeoutMs\)/);
    fails({ upstreamTimeoutMs: 2 ** 31 }, /--upstream-timeout \(upstreamTimeoutMs\)/);
    fails({ agentIdleTimeoutMs: -5 }, /^--agent-idle-timeout \(agentIdleTimeoutMs\)/);
    fails({ connectRetryMs: -1 }, /^--connect-retry \(connectRetryMs\)/);
    fails({ drainTimeoutMs: Infinity }, /^--drain-timeout \(drainTimeoutMs\)/);
    fails({ connectTimeoutMs: 0 }, /^connectTimeoutMs must be a positive/);
    fails({ retryBufferBytes: 1.5 }, /^--retry-buffer \(retryBufferBytes\)/);
    fails({ tokenPolicy: 'maybe' }, /^--token-policy \(tokenPolicy\) must be audience or none/);
    fails({ listen: '0.0.0.0:80' }, /^--listen \(listen\) must be a loopback address/);
    fails({ routes: [] }, /--route/);
    fails({ routes: [{ name: 'a', upstream: 'http://a' }] }, /https/);
    fails({ routes: [base.routes[0], { name: 'A', upstream: 'https://b' }] }, /configured twice/);
    fails({ routes: [{ name: 'a', upstream: 'https://a', egressToken: true }] }, /--egress-token .* needs --token-endpoint/);
    fails({ tokenEndpoint: { endpoint: 'https://as/token', clientId: 'x' } }, /--token-endpoint \(tokenEndpoint\) needs at least one route with --egress-token/);
    fails({ routes: [{ name: 'a', upstream: 'https://a', egressToken: true }], tokenEndpoint: { endpoint: 'http://as/token', clientId: 'x' } }, /https/);
  });
});
