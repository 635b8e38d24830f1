/**
 * The error classes: their RFC 6750 mapping, challenge quoting (no header injection), public JSON
 * body, and `instanceof` across a genuinely separate copy of the module.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateHeaderValue } from 'node:http';
import {
  AuthenticationRequiredError,
  ConfigurationError,
  InsufficientScopeError,
  InvalidProofError,
  InvalidRequestError,
  InvalidTokenError,
  TetherError,
  TlsExporterError,
  UseSessionBindingError,
  isTetherError,
  parseWwwAuthenticate,
} from '@tether/core';
import * as errorsSubpath from '@tether/core/errors';

const opts = { reason: 'some_reason', description: 'Public text', detail: 'private detail', cause: new Error('private cause') };

const CLASSES = [
  { Class: AuthenticationRequiredError, code: 'ERR_AUTHENTICATION_REQUIRED', status: 401, error: undefined, challenge: 'Bearer' },
  { Class: InvalidRequestError, code: 'ERR_INVALID_REQUEST', status: 400, error: 'invalid_request', challenge: 'Bearer error="invalid_request", error_description="Public text"' },
  { Class: InvalidTokenError, code: 'ERR_INVALID_TOKEN', status: 401, error: 'invalid_token', challenge: 'Bearer error="invalid_token", error_description="Public text"' },
  { Class: UseSessionBindingError, code: 'ERR_USE_SESSION_BINDING', status: 401, error: 'use_session_binding', challenge: 'Bearer error="use_session_binding", error_description="Public text"' },
  { Class: InvalidProofError, code: 'ERR_INVALID_PROOF', status: 401, error: 'invalid_proof', challenge: 'Bearer error="invalid_proof", error_description="Public text"' },
] as const;

test('every error class: statusCode, error, code, name, reason, challenge, headers (400 included), toJSON', () => {
  for (const c of CLASSES) {
    const e = new c.Class(opts);
    assert.equal(e.statusCode, c.status, c.code);
    assert.equal(e.error, c.error, c.code);
    assert.equal(e.code, c.code);
    assert.equal(c.Class.code, c.code);
    assert.equal(e.name, c.Class.name);
    assert.equal(e.message, 'Public text');
    assert.equal(e.description, 'Public text');
    assert.equal(e.reason, 'some_reason');
    assert.equal(e.detail, 'private detail');
    assert.equal((e.cause as Error).message, 'private cause');
    assert.equal(e.scheme, 'Bearer');
    assert.equal(e.realm, undefined);
    assert.equal(e.challenge, c.challenge);
    assert.ok(e instanceof Error);
    assert.ok(e instanceof c.Class);
    assert.ok(e instanceof TetherError);
    assert.ok(isTetherError(e));
    // Every refusal carries its challenge, the 400 invalid_request included (RFC 6750 3.1; the
    // RFC 9449 7.1 example answers 400 with WWW-Authenticate).
    assert.deepEqual(e.headers, { 'www-authenticate': c.challenge });
    const json = e.toJSON();
    assert.deepEqual(Object.keys(json), ['error', 'error_description']);
    assert.deepEqual(json, { error: c.error ?? 'unauthorized', error_description: 'Public text' });
    const wire = JSON.stringify(e);
    assert.deepEqual(JSON.parse(wire), json);
    assert.ok(!wire.includes('private') && !e.challenge.includes('private') && !wire.includes('some_reason'));
    for (const other of CLASSES) if (other !== c) assert.ok(!(e instanceof other.Class), `${c.code} instanceof ${other.code}`);
    assert.ok(!(e instanceof InsufficientScopeError));
  }
});

test('InsufficientScopeError: 403 with the required scope in the challenge', () => {
  const e = new InsufficientScopeError({ reason: 'insufficient_scope', description: 'The access token lacks a required scope', scope: 'read write' });
  assert.equal(e.statusCode, 403);
  assert.equal(e.error, 'insufficient_scope');
  assert.equal(e.code, 'ERR_INSUFFICIENT_SCOPE');
  assert.equal(e.scope, 'read write');
  assert.equal(e.challenge, 'Bearer error="insufficient_scope", error_description="The access token lacks a required scope", scope="read write"');
  assert.deepEqual(e.headers, { 'www-authenticate': e.challenge });
  assert.deepEqual(e.toJSON(), { error: 'insufficient_scope', error_description: 'The access token lacks a required scope' });
});

test('no credentials: the bare challenge has no error attribute (RFC 6750 3.1)', () => {
  const e = new AuthenticationRequiredError({ reason: 'no_token', description: 'An access token is required' });
  assert.equal(e.challenge, 'Bearer');
  assert.equal(new AuthenticationRequiredError({ ...opts, realm: 'api' }).challenge, 'Bearer realm="api"');
  assert.equal(new AuthenticationRequiredError({ ...opts, scheme: 'DPoP' }).challenge, 'DPoP');
});

test('realm comes first; the scheme can be changed', () => {
  const e = new InvalidTokenError({ ...opts, realm: 'example' });
  assert.equal(e.challenge, 'Bearer realm="example", error="invalid_token", error_description="Public text"');
  const d = new InvalidProofError({ ...opts, scheme: 'DPoP', realm: 'r' });
  assert.equal(d.challenge, 'DPoP realm="r", error="invalid_proof", error_description="Public text"');
  const s = new InsufficientScopeError({ ...opts, realm: 'r', scope: 'a' });
  assert.equal(s.challenge, 'Bearer realm="r", error="insufficient_scope", error_description="Public text", scope="a"');
});

test('quoted-string escaping of " and \\ and removal of control characters (no header injection)', () => {
  const quoted = new InvalidTokenError({ reason: 'r', description: 'say "hi" \\ bye' });
  assert.equal(quoted.challenge, 'Bearer error="invalid_token", error_description="say \\"hi\\" \\\\ bye"');
  assert.equal(parseWwwAuthenticate(quoted.challenge)[0]?.params.error_description, 'say "hi" \\ bye');

  const injection = 'bad"\r\nSet-Cookie: session=stolen\r\n\r\n<html>';
  const e = new InvalidProofError({ reason: 'r', description: injection, realm: 'a\nb"c' });
  assert.equal(e.challenge, 'Bearer realm="ab\\"c", error="invalid_proof", error_description="bad\\"Set-Cookie: session=stolen<html>"');
  assert.ok(!/[\r\n]/.test(e.challenge));
  assert.doesNotThrow(() => validateHeaderValue('www-authenticate', e.challenge));
  const parsed = parseWwwAuthenticate(e.challenge);
  assert.equal(parsed.length, 1);
  assert.deepEqual(parsed[0], { scheme: 'bearer', params: { realm: 'ab"c', error: 'invalid_proof', error_description: 'bad"Set-Cookie: session=stolen<html>' } });

  // Every C0 control character and DEL are dropped; tab too (it is a control character).
  let controls = '';
  for (let c = 0; c < 0x20; c++) controls += String.fromCharCode(c);
  const c0 = new InvalidTokenError({ reason: 'r', description: `a${controls}\u007fb` });
  assert.equal(c0.challenge, 'Bearer error="invalid_token", error_description="ab"');
  assert.doesNotThrow(() => validateHeaderValue('www-authenticate', c0.challenge));
  // A lone backslash at the end cannot escape the closing quote.
  const trailing = new InvalidTokenError({ reason: 'r', description: 'ends with \\' });
  assert.equal(trailing.challenge, 'Bearer error="invalid_token", error_description="ends with \\\\"');
  assert.equal(parseWwwAuthenticate(trailing.challenge)[0]?.params.error_description, 'ends with \\');
  // The scope parameter is quoted the same way.
  const scope = new InsufficientScopeError({ reason: 'r', description: 'd', scope: 'a" b\r\n' });
  assert.equal(scope.challenge, 'Bearer error="insufficient_scope", error_description="d", scope="a\\" b"');
});

test('instanceof works across a separate copy of the module (brand + code), not across codes', async () => {
  // A second, independent evaluation of errors.ts: distinct classes, as with two installed copies.
  const copy = (await import(`../../packages/core/src/errors.ts?duplicate-copy=${Date.now()}`)) as typeof import('@tether/core/errors');
  assert.notEqual(copy.InvalidProofError, InvalidProofError);
  const foreign = new copy.InvalidProofError({ reason: 'ekm_mismatch', description: 'd' });
  assert.equal(Object.getPrototypeOf(foreign) === InvalidProofError.prototype, false);
  assert.ok(foreign instanceof InvalidProofError);
  assert.ok(!(foreign instanceof InvalidTokenError));
  assert.ok(foreign instanceof TetherError, 'the base class recognises a foreign copy too');
  assert.ok(isTetherError(foreign));
  assert.ok(new InvalidTokenError(opts) instanceof copy.InvalidTokenError);
  assert.ok(new InvalidTokenError(opts) instanceof copy.TetherError);
  assert.ok(!(new InvalidTokenError(opts) instanceof copy.InvalidProofError));
  // The subpath export is the same module as the root export.
  assert.equal(errorsSubpath.InvalidProofError, InvalidProofError);

  // A plain object carrying the registered brand and a code is recognised by that code only.
  const brand = Symbol.for('tether.error');
  const simulated = { [brand]: true, code: 'ERR_INVALID_PROOF' };
  assert.ok(simulated instanceof InvalidProofError);
  assert.ok(!(simulated instanceof InvalidTokenError));
  assert.ok(isTetherError(simulated));
  assert.ok(!({ code: 'ERR_INVALID_PROOF' } instanceof InvalidProofError), 'no brand');
  assert.ok(!({ [brand]: 'true', code: 'ERR_INVALID_PROOF' } instanceof InvalidProofError), 'brand must be true');
  assert.ok(!({ [Symbol('tether.error')]: true, code: 'ERR_INVALID_PROOF' } instanceof InvalidProofError), 'unregistered symbol');
  // The brand is not enumerable and not serialised.
  const real = new InvalidProofError(opts);
  assert.equal(Object.getOwnPropertyDescriptor(real, brand)?.enumerable, false);
  assert.deepEqual(Object.getOwnPropertySymbols(JSON.parse(JSON.stringify(real))), []);
});

test('isTetherError is false for everything else', () => {
  for (const value of [
    new Error('x'),
    new TypeError('x'),
    new ConfigurationError('x'),
    new TlsExporterError('x'),
    null,
    undefined,
    'ERR_INVALID_PROOF',
    42,
    {},
    { code: 'ERR_INVALID_TOKEN', statusCode: 401 },
    Object.create(null),
  ]) {
    assert.equal(isTetherError(value), false, typeof value);
    assert.equal(value instanceof TetherError, false);
  }
});

test('local errors: ConfigurationError and TlsExporterError', () => {
  const c = new ConfigurationError('bad option', { cause: 'x' });
  assert.equal(c.code, 'ERR_TETHER_CONFIGURATION');
  assert.equal(ConfigurationError.code, 'ERR_TETHER_CONFIGURATION');
  assert.equal(c.name, 'ConfigurationError');
  assert.equal(c.cause, 'x');
  assert.ok(c instanceof Error);
  const t = new TlsExporterError('not a TLS socket');
  assert.equal(t.code, 'ERR_TLS_EXPORTER_UNAVAILABLE');
  assert.equal(t.name, 'TlsExporterError');
  assert.ok(!(t instanceof TetherError));
});
