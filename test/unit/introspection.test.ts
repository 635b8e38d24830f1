/**
 * RFC 7662 token introspection as an access-token validator, against a real node:http server on
 * 127.0.0.1:0 that answers per token and records every request. Draft section 3.4: the response
 * carries `cnf`; every failure of the call fails closed as `invalid_token`.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigurationError,
  EXPORTER_LABEL,
  InvalidTokenError,
  bindingRequirement,
  introspectionValidator,
  type IntrospectionValidatorOptions,
} from '@tether/core';
import { hang, json, reset, startServer, trickle, type Handler, type RecordedRequest, type TestServer } from './support/http.js';
import { rejectsToken as rejectsTokenWith } from './support/rejects.js';

const NOW = 1_800_000_000;
const ISS = 'https://as.tether.test';
const AUD = 'https://rs.tether.test';
const X5T = 'Jm3OHGVLv5Sli1yd7mSbc9VaMH4vY7Ee08tpk9Bh0Lk';
const RFC9449_TOKEN = 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU';

const ACTIVE = {
  active: true,
  iss: ISS,
  aud: AUD,
  sub: 'user-1',
  client_id: 'agent',
  scope: 'read write',
  token_type: 'Bearer',
  exp: NOW + 600,
  iat: NOW - 10,
  cnf: { 'x5t#S256': X5T, tls_exp: EXPORTER_LABEL },
};

interface Rig {
  server: TestServer;
  clock: { s: number };
  /** Per-token answers; a token without an entry is inactive. */
  answers: Map<string, Handler>;
  validator(extra?: Partial<IntrospectionValidatorOptions>): ReturnType<typeof introspectionValidator>;
  /** Requests that asked about `token`. */
  asked(token: string): RecordedRequest[];
}

async function rig(t: TestContext): Promise<Rig> {
  const answers = new Map<string, Handler>();
  const server = await startServer((req, res) => {
    const token = new URLSearchParams(req.body).get('token') ?? '';
    (answers.get(token) ?? ((_q, r) => json(r, 200, { active: false })))(req, res);
  });
  t.after(() => server.close());
  const clock = { s: NOW };
  return {
    server,
    clock,
    answers,
    validator: (extra = {}) => introspectionValidator({ endpoint: `${server.url}/introspect`, timeoutMs: 250, now: () => clock.s, ...extra }),
    asked: (token) => server.requests.filter((r) => new URLSearchParams(r.body).get('token') === token),
  };
}

const answer = (body: unknown, status = 200): Handler => (_q, res) => json(res, status, body);

async function rejectsToken(promise: Promise<unknown>, reason: string, message?: string): Promise<InvalidTokenError> {
  const error = await rejectsTokenWith(promise, reason, message);
  // Nothing about the introspection call reaches the client.
  assert.equal(error.challenge, 'Bearer error="invalid_token", error_description="The access token is invalid"');
  return error;
}

test('active token: claims with cnf are returned; the request is a form POST naming the token', async (t) => {
  const r = await rig(t);
  r.answers.set(RFC9449_TOKEN, answer(ACTIVE));
  const claims = await r.validator().validate(RFC9449_TOKEN);
  assert.deepEqual(claims, ACTIVE);
  assert.deepEqual(bindingRequirement(claims.cnf), { kind: 'session', thumbprint: X5T });
  const [req] = r.server.requests;
  assert.ok(req);
  assert.equal(req.method, 'POST');
  assert.equal(req.url, '/introspect');
  assert.equal(req.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.equal(req.headers.accept, 'application/json');
  assert.equal(req.headers['content-length'], String(Buffer.byteLength(req.body)));
  assert.equal(req.headers.authorization, undefined, 'no client credentials configured');
  assert.equal(req.body, 'token=Kz%7E8mXK1EalYznwH-LC-1fBAo.4Ljp%7EzsPE_NeO.gxU&token_type_hint=access_token');
  assert.deepEqual([...new URLSearchParams(req.body)], [['token', RFC9449_TOKEN], ['token_type_hint', 'access_token']]);
});

test('client_secret_basic: id and secret are form-urlencoded before Basic (RFC 6749 2.3.1, Appendix B)', async (t) => {
  const r = await rig(t);
  r.answers.set('tok', answer(ACTIVE));
  // The secret is the RFC 6749 Appendix B example value: " %&+£€" encodes to "+%25%26%2B%C2%A3%E2%82%AC".
  await r.validator({ clientId: 'rs:one', clientSecret: ' %&+£€' }).validate('tok');
  const header = String(r.server.requests[0]?.headers.authorization);
  assert.match(header, /^Basic [A-Za-z0-9+/]+=*$/);
  const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
  assert.equal(decoded, 'rs%3Aone:+%25%26%2B%C2%A3%E2%82%AC');
  // A server decodes: split at the first ":", then form-urldecode each half.
  const colon = decoded.indexOf(':');
  const formDecode = (s: string) => new URLSearchParams(`v=${s}`).get('v');
  assert.equal(formDecode(decoded.slice(0, colon)), 'rs:one');
  assert.equal(formDecode(decoded.slice(colon + 1)), ' %&+£€');
  // Plain ASCII credentials pass unchanged.
  r.server.requests.length = 0;
  await r.validator({ clientId: 'rs', clientSecret: 'secret-1' }).validate('tok');
  assert.equal(r.server.requests[0]?.headers.authorization, `Basic ${Buffer.from('rs:secret-1').toString('base64')}`);
});

test('configuration errors', () => {
  assert.throws(() => introspectionValidator({ endpoint: 'http://127.0.0.1:1/', clientId: 'rs' }), ConfigurationError);
  assert.throws(() => introspectionValidator({ endpoint: 'http://127.0.0.1:1/', clientSecret: 's' }), ConfigurationError);
  assert.throws(() => introspectionValidator({ endpoint: 'ftp://127.0.0.1/introspect' }), ConfigurationError);
  assert.throws(() => introspectionValidator({ endpoint: 'file:///etc/passwd' }), ConfigurationError);
});

test('inactive and non-active answers are invalid_token', async (t) => {
  const r = await rig(t);
  const v = r.validator();
  await rejectsToken(v.validate('unknown'), 'inactive');
  for (const [name, body] of [
    ['active false', { active: false }],
    ['active false with claims', { ...ACTIVE, active: false }],
    ['active "true" (string)', { ...ACTIVE, active: 'true' }],
    ['active 1', { ...ACTIVE, active: 1 }],
    ['no active member', { ...ACTIVE, active: undefined }],
  ] as const) {
    r.answers.set(name, answer(body));
    await rejectsToken(v.validate(name), 'inactive', name);
  }
});

test('failures of the call fail closed: non-JSON, HTTP errors, reset, timeout, trickle, oversized', async (t) => {
  const r = await rig(t);
  const v = r.validator();
  const cases: Array<[string, Handler, string]> = [
    ['non-JSON', (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('<html>'), 'introspection_failed'],
    ['empty body', (_q, res) => res.writeHead(200).end(), 'introspection_failed'],
    ['HTTP 500 with an active body', answer(ACTIVE, 500), 'introspection_failed'],
    ['HTTP 401', answer({ error: 'invalid_client' }, 401), 'introspection_failed'],
    ['HTTP 302', (_q, res) => res.writeHead(302, { location: '/elsewhere' }).end(), 'introspection_failed'],
    ['connection reset', reset, 'introspection_failed'],
    ['no answer', hang, 'introspection_failed'],
    ['headers then a body that trickles forever', trickle(40), 'introspection_failed'],
    ['oversized', (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...ACTIVE, pad: 'x'.repeat(300 * 1024) })), 'introspection_failed'],
    ['JSON array', answer([ACTIVE]), 'introspection_malformed'],
    ['JSON null', answer(null), 'introspection_malformed'],
    ['JSON string', answer('active'), 'introspection_malformed'],
    ['JSON true', answer(true), 'introspection_malformed'],
  ];
  for (const [name, handler, reason] of cases) {
    r.answers.set(name, handler);
    const started = Date.now();
    const error = await rejectsToken(v.validate(name), reason, name);
    assert.ok(Date.now() - started < 2000, `${name}: bounded by timeoutMs`);
    if (reason === 'introspection_failed') assert.ok(error.cause instanceof Error, `${name}: cause kept for logs`);
  }
  // Nothing failed was cached: the same tokens are asked again.
  const before = r.server.requests.length;
  r.answers.set('non-JSON', answer(ACTIVE));
  await v.validate('non-JSON');
  assert.equal(r.server.requests.length, before + 1);
});

test('an unreachable endpoint fails closed', async () => {
  const closed = await startServer(hang);
  const url = closed.url;
  await closed.close();
  await rejectsToken(introspectionValidator({ endpoint: `${url}/introspect`, timeoutMs: 500 }).validate('tok'), 'introspection_failed');
});

test('cache: a positive result is reused within cacheTtl, never past exp; negative results are not cached', async (t) => {
  const r = await rig(t);
  const v = r.validator({ cacheTtl: 60 });
  r.answers.set('tok', answer(ACTIVE));
  await v.validate('tok');
  r.clock.s += 59.9;
  await v.validate('tok');
  assert.equal(r.asked('tok').length, 1, 'cache hit within the TTL');
  r.clock.s += 0.1;
  await v.validate('tok');
  assert.equal(r.asked('tok').length, 2, 'TTL over: asked again');

  // exp shorter than the TTL bounds the entry.
  r.clock.s = NOW;
  r.answers.set('short', answer({ ...ACTIVE, exp: NOW + 10 }));
  await v.validate('short');
  r.clock.s = NOW + 9.99;
  await v.validate('short');
  assert.equal(r.asked('short').length, 1);
  r.clock.s = NOW + 10;
  await rejectsToken(v.validate('short'), 'expired', 'at exp the server is asked again and the answer is expired');
  assert.equal(r.asked('short').length, 2);

  // Revocation: inactive answers are never cached, so the next call asks again.
  r.clock.s = NOW;
  r.answers.set('revoked', answer({ active: false }));
  await rejectsToken(v.validate('revoked'), 'inactive');
  await rejectsToken(v.validate('revoked'), 'inactive');
  assert.equal(r.asked('revoked').length, 2);
  r.answers.set('revoked', answer(ACTIVE));
  await v.validate('revoked');
  assert.equal(r.asked('revoked').length, 3);

  // The cache is per token string.
  r.answers.set('tok2', answer({ ...ACTIVE, sub: 'user-2' }));
  assert.equal((await v.validate('tok2')).sub, 'user-2');
  assert.equal((await v.validate('tok')).sub, 'user-1');
});

test('cache bound: cacheMaxEntries evicts the oldest entry', async (t) => {
  const r = await rig(t);
  const v = r.validator({ cacheMaxEntries: 2 });
  for (const tok of ['a', 'b', 'c']) r.answers.set(tok, answer(ACTIVE));
  await v.validate('a');
  await v.validate('b');
  await v.validate('c');
  await v.validate('c');
  await v.validate('b');
  assert.deepEqual(['a', 'b', 'c'].map((tok) => r.asked(tok).length), [1, 1, 1]);
  await v.validate('a');
  assert.equal(r.asked('a').length, 2);
});

test('exp, nbf, issuer and audience of the answer', async (t) => {
  const r = await rig(t);
  const cases: Array<[string, object, string, Partial<IntrospectionValidatorOptions>]> = [
    ['exp passed', { ...ACTIVE, exp: NOW - 1 }, 'expired', {}],
    ['exp now', { ...ACTIVE, exp: NOW }, 'expired', {}],
    ['exp string', { ...ACTIVE, exp: String(NOW + 60) }, 'expired', {}],
    ['nbf beyond 30 s', { ...ACTIVE, nbf: NOW + 31 }, 'not_yet_valid', {}],
    ['nbf string', { ...ACTIVE, nbf: 'soon' }, 'not_yet_valid', {}],
    ['other issuer', { ...ACTIVE, iss: 'https://evil.example' }, 'issuer', { issuer: ISS }],
    ['issuer with trailing slash', { ...ACTIVE, iss: `${ISS}/` }, 'issuer', { issuer: ISS }],
    ['other audience', { ...ACTIVE, aud: 'https://other.example' }, 'audience', { audience: AUD }],
    ['audience list without us', { ...ACTIVE, aud: ['https://a.example', 'https://b.example'] }, 'audience', { audience: [AUD] }],
    ['no audience', { ...ACTIVE, aud: undefined }, 'audience', { audience: AUD }],
    ['audience not a string', { ...ACTIVE, aud: { value: AUD } }, 'audience', { audience: AUD }],
  ];
  for (const [name, body, reason, options] of cases) {
    r.answers.set(name, answer(body));
    await rejectsToken(r.validator(options).validate(name), reason, name);
  }
  const ok: Array<[string, object, Partial<IntrospectionValidatorOptions>]> = [
    ['nbf within 30 s', { ...ACTIVE, nbf: NOW + 30 }, {}],
    ['no exp', { ...ACTIVE, exp: undefined }, {}],
    ['issuer matches', ACTIVE, { issuer: ISS }],
    ['no iss in the answer', { ...ACTIVE, iss: undefined }, { issuer: ISS }],
    ['audience in a list', { ...ACTIVE, aud: ['https://a.example', AUD] }, { audience: AUD }],
    ['one of our audiences', ACTIVE, { audience: ['https://x.example', AUD] }],
  ];
  for (const [name, body, options] of ok) {
    r.answers.set(name, answer(body));
    await r.validator(options).validate(name);
  }
});
