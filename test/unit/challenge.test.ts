/**
 * Parsers of network input: WWW-Authenticate (RFC 9110 11.6.1), Authorization credentials, and
 * strict base64url. Examples from RFC 9110, RFC 6750, RFC 9449 and the draft; property tests with
 * fast-check (fixed seeds) for "never throws" and for challenge round trips.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  InsufficientScopeError,
  InvalidProofError,
  InvalidRequestError,
  InvalidTokenError,
  UseSessionBindingError,
  parseAuthorization,
  parseWwwAuthenticate,
} from '@tether/core';
import { decodeBase64url, encodeBase64url } from '../../packages/core/src/encoding.js';

const RUNS = 3000;

test('RFC 9110 11.6.1 example: two challenges, token and quoted values, escaped quotes', () => {
  const value = 'Basic realm="simple", Newauth realm="apps", type=1, title="Login to \\"apps\\""';
  assert.deepEqual(parseWwwAuthenticate(value), [
    { scheme: 'basic', params: { realm: 'simple' } },
    { scheme: 'newauth', params: { realm: 'apps', type: '1', title: 'Login to "apps"' } },
  ]);
});

test('RFC 6750 section 3 examples and the draft section 3.5 examples', () => {
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="example"'), [{ scheme: 'bearer', params: { realm: 'example' } }]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="example", error="invalid_token", error_description="The access token expired"'), [
    { scheme: 'bearer', params: { realm: 'example', error: 'invalid_token', error_description: 'The access token expired' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Bearer error="insufficient_scope", scope="openid profile email"'), [
    { scheme: 'bearer', params: { error: 'insufficient_scope', scope: 'openid profile email' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Bearer error="invalid_proof", error_description="Session-Binding Proof verification failed: exporter mismatch"'), [
    { scheme: 'bearer', params: { error: 'invalid_proof', error_description: 'Session-Binding Proof verification failed: exporter mismatch' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Bearer error="use_session_binding", error_description="This token requires a Session-Binding Proof"'), [
    { scheme: 'bearer', params: { error: 'use_session_binding', error_description: 'This token requires a Session-Binding Proof' } },
  ]);
});

test('multiple challenges, in one field or several field lines (RFC 9449 7.1 style)', () => {
  const expected = [
    { scheme: 'bearer', params: { realm: 'api' } },
    { scheme: 'dpop', params: { algs: 'ES256 PS256', error: 'invalid_token' } },
  ];
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="api", DPoP algs="ES256 PS256", error="invalid_token"'), expected);
  assert.deepEqual(parseWwwAuthenticate(['Bearer realm="api"', 'DPoP algs="ES256 PS256", error="invalid_token"']), expected);
  assert.deepEqual(parseWwwAuthenticate('Bearer, Basic'), [
    { scheme: 'bearer', params: {} },
    { scheme: 'basic', params: {} },
  ]);
  assert.deepEqual(parseWwwAuthenticate(' ,, Bearer ,, Basic realm="x" ,'), [
    { scheme: 'bearer', params: {} },
    { scheme: 'basic', params: { realm: 'x' } },
  ]);
});

test('token68 challenges', () => {
  assert.deepEqual(parseWwwAuthenticate('Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXagGDAWBgkqhkiC9xIBAgIGCSqGSIb3EgECAg=='), [
    { scheme: 'negotiate', params: { token68: 'YIIBhgYGKwYBBQUCoIIBejCCAXagGDAWBgkqhkiC9xIBAgIGCSqGSIb3EgECAg==' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Custom abc-._~+/=, Bearer realm="r"'), [
    { scheme: 'custom', params: { token68: 'abc-._~+/=' } },
    { scheme: 'bearer', params: { realm: 'r' } },
  ]);
  // "a=b" is an auth-param, not a token68.
  assert.deepEqual(parseWwwAuthenticate('Custom a=b'), [{ scheme: 'custom', params: { a: 'b' } }]);
  // A token68 needs the separating space.
  assert.deepEqual(parseWwwAuthenticate('Custom'), [{ scheme: 'custom', params: {} }]);
});

test('scheme and parameter names are case-insensitive; values keep their case; first duplicate wins', () => {
  assert.deepEqual(parseWwwAuthenticate('BEARER Error="Invalid_Token", REALM=Api'), [{ scheme: 'bearer', params: { error: 'Invalid_Token', realm: 'Api' } }]);
  assert.deepEqual(parseWwwAuthenticate('bEaReR realm="a", realm="b", REALM="c"'), [{ scheme: 'bearer', params: { realm: 'a' } }]);
});

test('quoted strings: escapes, commas, equals signs, whitespace around "="', () => {
  assert.deepEqual(parseWwwAuthenticate('Bearer error_description="a, b=c \\\\ \\"d\\" \\e"'), [
    { scheme: 'bearer', params: { error_description: 'a, b=c \\ "d" e' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm = "x" ,\terror\t=\tinvalid_token'), [{ scheme: 'bearer', params: { realm: 'x', error: 'invalid_token' } }]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm=""'), [{ scheme: 'bearer', params: { realm: '' } }]);
});

test('malformed input: what can be read is kept, the rest dropped, nothing throws', () => {
  assert.deepEqual(parseWwwAuthenticate(undefined), []);
  assert.deepEqual(parseWwwAuthenticate(''), []);
  assert.deepEqual(parseWwwAuthenticate([]), []);
  assert.deepEqual(parseWwwAuthenticate('   '), []);
  assert.deepEqual(parseWwwAuthenticate('"quoted"'), []);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="unterminated'), [{ scheme: 'bearer', params: {} }]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="ok", error="unterminated\\'), [{ scheme: 'bearer', params: { realm: 'ok' } }]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="a" @@@ error="x"'), [{ scheme: 'bearer', params: { realm: 'a' } }]);
  assert.deepEqual(parseWwwAuthenticate(`Bearer realm="${'a'.repeat(17 * 1024)}"`), [], 'oversized field');
});

test('parseAuthorization: <scheme> <token68> only', () => {
  assert.deepEqual(parseAuthorization('Bearer mF_9.B5f-4.1JqM'), { scheme: 'bearer', token: 'mF_9.B5f-4.1JqM' });
  assert.deepEqual(parseAuthorization('DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU'), { scheme: 'dpop', token: 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU' });
  assert.deepEqual(parseAuthorization('BEARER abc=='), { scheme: 'bearer', token: 'abc==' });
  assert.deepEqual(parseAuthorization('bearer   abc   '), { scheme: 'bearer', token: 'abc' });
  assert.deepEqual(parseAuthorization('Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=='), { scheme: 'basic', token: 'QWxhZGRpbjpvcGVuIHNlc2FtZQ==' });
  for (const bad of [
    '',
    'Bearer',
    'Bearer ',
    ' Bearer abc',
    'Bearer\tabc',
    'Bearer abc def',
    'Bearer abc,def',
    'Bearer "abc"',
    'Bearer a=b=',
    'Bearer =abc',
    'Bearer ab=c',
    'Bearer abc\r\n',
    'Bearer ab\u00e9',
    'Basic realm="x"',
    'Bearer abc, Bearer def',
    '(Bearer) abc',
    `Bearer ${'a'.repeat(17 * 1024)}`,
  ]) {
    assert.equal(parseAuthorization(bad), undefined, JSON.stringify(bad.slice(0, 40)));
  }
});

/** Strings biased toward the characters the challenge grammar cares about. */
const headerish = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('Bearer', 'DPoP', 'realm', 'error', ' ', ',', '=', '"', '\\', '\t', 'a', 'Z', '9', '-', '~', '+', '/', '.', '\r', '\n', '\u0000', 'é', '\ud800') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 3 }) },
  ),
  maxLength: 60,
});

test('property: parseWwwAuthenticate never throws and returns well-formed challenges', () => {
  const check = (value: string | string[]) => {
    const out = parseWwwAuthenticate(value);
    assert.ok(Array.isArray(out));
    for (const c of out) {
      assert.match(c.scheme, /^[!#$%&'*+\-.^_`|~0-9a-z]+$/);
      for (const [k, v] of Object.entries(c.params)) {
        assert.ok(k === k.toLowerCase());
        assert.equal(typeof v, 'string');
      }
    }
  };
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => check(s)), { seed: 0x7e7e1, numRuns: RUNS });
  fc.assert(fc.property(headerish, (s) => check(s)), { seed: 0x7e7e2, numRuns: RUNS });
  fc.assert(fc.property(fc.array(headerish, { maxLength: 4 }), (a) => check(a)), { seed: 0x7e7e3, numRuns: RUNS });
});

test('property: parseAuthorization never throws; a result is a lower-case scheme and a b64token', () => {
  const check = (s: string) => {
    const out = parseAuthorization(s);
    if (out !== undefined) {
      assert.match(out.scheme, /^[!#$%&'*+\-.^_`|~0-9a-z]+$/);
      assert.match(out.token, /^[A-Za-z0-9\-._~+/]+=*$/);
      assert.ok(s.includes(out.token));
    }
  };
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), check), { seed: 0xa0a1, numRuns: RUNS });
  fc.assert(fc.property(headerish, check), { seed: 0xa0a2, numRuns: RUNS });
  // Every well-formed credential parses back exactly.
  const token68 = fc
    .tuple(fc.string({ unit: fc.constantFrom(...'ABCxyz019-._~+/'.split('')), minLength: 1, maxLength: 40 }), fc.nat({ max: 3 }))
    .map(([t, pad]) => t + '='.repeat(pad));
  fc.assert(
    fc.property(fc.constantFrom('Bearer', 'bearer', 'DPoP', 'BEARER'), token68, fc.nat({ max: 3 }), (scheme, token, extra) => {
      assert.deepEqual(parseAuthorization(`${scheme}${' '.repeat(extra + 1)}${token}`), { scheme: scheme.toLowerCase(), token });
    }),
    { seed: 0xa0a3, numRuns: RUNS },
  );
});

test('property: every challenge TetherError builds parses back to its parameters', () => {
  // eslint-disable-next-line no-control-regex
  const stripped = (s: string) => s.replace(/[\u0000-\u001f\u007f]/g, '');
  const classes = [InvalidRequestError, InvalidTokenError, UseSessionBindingError, InvalidProofError] as const;
  fc.assert(
    fc.property(
      fc.constantFrom(...classes),
      fc.string({ unit: 'binary', maxLength: 120 }),
      fc.option(fc.string({ unit: 'binary', maxLength: 40 }), { nil: undefined }),
      (Class, description, realm) => {
        const error = new Class({ reason: 'r', description, ...(realm === undefined ? {} : { realm }) });
        const parsed = parseWwwAuthenticate(error.challenge);
        const params: Record<string, string> = {};
        if (realm !== undefined) params.realm = stripped(realm);
        params.error = error.error;
        params.error_description = stripped(description);
        assert.deepEqual(parsed, [{ scheme: 'bearer', params }]);
        // eslint-disable-next-line no-control-regex
        assert.ok(!/[\u0000-\u001f\u007f]/.test(error.challenge));
      },
    ),
    { seed: 0xc4a1, numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 }), (description, scope) => {
      const error = new InsufficientScopeError({ reason: 'r', description, scope });
      assert.deepEqual(parseWwwAuthenticate(error.challenge), [
        { scheme: 'bearer', params: { error: 'insufficient_scope', error_description: stripped(description), scope: stripped(scope) } },
      ]);
    }),
    { seed: 0xc4a2, numRuns: RUNS },
  );
  // Several challenges joined as separate field lines come back in order.
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'grapheme', maxLength: 30 }), { minLength: 1, maxLength: 4 }), (descriptions) => {
      const values = descriptions.map((d) => new InvalidTokenError({ reason: 'r', description: d }).challenge);
      const parsed = parseWwwAuthenticate(values);
      assert.equal(parsed.length, descriptions.length);
      parsed.forEach((c, i) => assert.equal(c.params.error_description, stripped(descriptions[i] as string)));
    }),
    { seed: 0xc4a3, numRuns: 1000 },
  );
});

test('decodeBase64url: strict by example', () => {
  assert.deepEqual(decodeBase64url(''), Buffer.alloc(0));
  assert.deepEqual(decodeBase64url('AQID'), Buffer.from([1, 2, 3]));
  assert.deepEqual(decodeBase64url('-_8'), Buffer.from([0xfb, 0xff]));
  for (const bad of ['AQID=', 'AQ==', '+/8', 'A', 'AQIDB', 'AR', 'AQJ', ' AQID', 'AQ ID', 'AQID\n', 'é', 'AQ.D', 'AQ%3D']) {
    assert.equal(decodeBase64url(bad), undefined, JSON.stringify(bad));
  }
});

test('property: base64url encode/decode round-trips for any bytes; any string decodes canonically or not at all', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 96 }), (bytes) => {
      const encoded = encodeBase64url(bytes);
      assert.match(encoded, /^[A-Za-z0-9_-]*$/);
      assert.notEqual(encoded.length % 4, 1);
      assert.deepEqual(decodeBase64url(encoded), Buffer.from(bytes));
      // A view into a larger buffer encodes only its own bytes.
      const padded = new Uint8Array(bytes.length + 8);
      padded.set(bytes, 4);
      assert.equal(encodeBase64url(padded.subarray(4, 4 + bytes.length)), encoded);
    }),
    { seed: 0xb64a, numRuns: RUNS },
  );
  const b64ish = fc.string({ unit: fc.constantFrom(...'AQgw-_+/= .Zz9'.split('')), maxLength: 50 });
  for (const [seed, arb] of [[0xb64b, fc.string({ unit: 'binary', maxLength: 80 })], [0xb64c, b64ish]] as const) {
    fc.assert(
      fc.property(arb, (s) => {
        const decoded = decodeBase64url(s);
        if (decoded !== undefined) {
          assert.match(s, /^[A-Za-z0-9_-]*$/);
          assert.equal(encodeBase64url(decoded), s);
        }
      }),
      { seed, numRuns: RUNS },
    );
  }
});
