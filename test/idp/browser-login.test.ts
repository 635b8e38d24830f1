/**
 * The demo identity provider (issue 16 point 2) with a real browser: Chromium signs in through the
 * login and consent pages, the code arrives at a loopback redirect listener (RFC 8252) and is
 * redeemed with PKCE; the tokens are checked against the provider's JWKS. Also: a wrong password,
 * requests without PKCE or with `plain`, and the scripted login giving the same token.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { jwtVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { DevPki } from '@tether/pki';
import {
  authorizationRequest,
  codeFrom,
  discover,
  loginWithForms,
  redeemCode,
  startIdentityProvider,
  startLoopbackRedirect,
  type IdentityProvider,
  type LoginTokens,
  type ProviderMetadata,
} from '../../packages/demo/src/idp/index.js';
import { httpsCall } from '../../packages/demo/src/idp/https-client.js';
import { launchChromium, type TestBrowser } from '../helpers/browser.js';
import { testPki } from '../helpers/pki.js';

const TIMEOUT = 10_000;
const RESOURCE = 'https://tether-as.test';
const CLIENT = 'demo-app';
const SCOPE = 'openid email tether';
const ALICE = { sub: 'alice', password: 'correct horse battery staple', email: 'alice@example.test' };

let pki: DevPki;
let idp: IdentityProvider;
let metadata: ProviderMetadata;
let chromium: TestBrowser;

before(async () => {
  pki = await testPki();
  idp = await startIdentityProvider({
    tls: pki.server,
    users: [ALICE, { sub: 'bob', password: 'another one' }],
    clients: [{ client_id: CLIENT, redirect_uris: ['http://127.0.0.1/callback'] }],
    resource: RESOURCE,
  });
  metadata = await discover(idp.issuer, pki.ca.cert, TIMEOUT);
  chromium = await launchChromium({ trustServerCerts: [pki.server.cert], timeoutMs: TIMEOUT });
});

after(async () => {
  await chromium?.close();
  await idp?.close();
});

/** The access token's claims after verification against the provider's JWKS (RFC 9068 typ, iss, aud). */
async function verifyAccessToken(token: string): Promise<Record<string, unknown>> {
  const answer = await httpsCall(new URL(metadata.jwks_uri), { ca: pki.ca.cert, timeoutMs: TIMEOUT });
  const keys = createLocalJWKSet(JSON.parse(answer.body) as JSONWebKeySet);
  const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer: idp.issuer, audience: RESOURCE, typ: 'at+jwt', algorithms: ['ES256'] });
  assert.equal(protectedHeader.typ, 'at+jwt');
  return payload;
}

async function verifyIdToken(token: string, nonce: string): Promise<Record<string, unknown>> {
  const answer = await httpsCall(new URL(metadata.jwks_uri), { ca: pki.ca.cert, timeoutMs: TIMEOUT });
  const { payload } = await jwtVerify(token, createLocalJWKSet(JSON.parse(answer.body) as JSONWebKeySet), { issuer: idp.issuer, audience: CLIENT, algorithms: ['ES256'] });
  assert.equal(payload.nonce, nonce);
  return payload;
}

test('Chromium signs alice in through the login and consent pages; the code is redeemed with PKCE for a JWT access token for the AS', { timeout: 60_000 }, async () => {
  const loopback = await startLoopbackRedirect({ timeoutMs: 4 * TIMEOUT });
  const page = await chromium.newPage();
  try {
    const request = authorizationRequest(metadata, { clientId: CLIENT, redirectUri: loopback.redirectUri, scope: SCOPE, resource: RESOURCE });
    const first = await page.goto(request.url.href);
    assert.equal(first?.status(), 200);
    assert.match(new URL(page.url()).pathname, /^\/interaction\/[\w-]+$/);
    await page.type('#username', 'alice');
    await page.type('#password', ALICE.password);
    await Promise.all([page.waitForNavigation(), page.click('#submit')]);
    assert.ok((await page.$('#approve')) !== null, 'the consent page follows the login');
    assert.match(await page.content(), /tether-as\.test/);
    await Promise.all([page.waitForNavigation(), page.click('#approve')]);
    assert.ok(page.url().startsWith(`${loopback.redirectUri}?`), `the browser landed on the redirect URI, not ${page.url()}`);
    const code = codeFrom((await loopback.response).params, request, metadata);
    // The code is bound to the code_challenge: another verifier does not redeem it (RFC 7636 section 4.6).
    const redeem = { ca: pki.ca.cert, timeoutMs: TIMEOUT, clientId: CLIENT, redirectUri: loopback.redirectUri, resource: RESOURCE, code };
    await assert.rejects(redeemCode(metadata, { ...redeem, request: { ...request, codeVerifier: 'x'.repeat(43) } }), /invalid_grant/);
    const tokens = await redeemCode(metadata, { ...redeem, request });
    const claims = await verifyAccessToken(tokens.accessToken);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.client_id, CLIENT);
    assert.equal(claims.scope, 'tether');
    assert.equal(claims.email, ALICE.email, 'the user claim the AS maps is in the access token');
    assert.ok(tokens.expiresIn > 0 && tokens.expiresIn <= 300);
    const id = await verifyIdToken(tokens.idToken, request.nonce);
    assert.equal(id.sub, 'alice');
    assert.equal(id.email, ALICE.email);
    // A code is good once (RFC 6749 section 4.1.2).
    await assert.rejects(redeemCode(metadata, { ...redeem, request }), /invalid_grant/);
  } finally {
    await page.close();
    await loopback.close();
  }
});

test('a wrong password keeps Chromium on the login page with an error and issues no code', { timeout: 60_000 }, async () => {
  const loopback = await startLoopbackRedirect({ timeoutMs: 4 * TIMEOUT });
  // A fresh browser context: no session from the test above.
  const context = await chromium.browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  try {
    const request = authorizationRequest(metadata, { clientId: CLIENT, redirectUri: loopback.redirectUri, scope: SCOPE, resource: RESOURCE });
    await page.goto(request.url.href);
    await page.type('#username', 'alice');
    await page.type('#password', 'wrong password');
    const [response] = await Promise.all([page.waitForNavigation(), page.click('#submit')]);
    assert.equal(response?.status(), 401);
    assert.equal(response?.headers().location, undefined);
    assert.match(new URL(page.url()).pathname, /^\/interaction\/[\w-]+\/login$/);
    assert.equal(await page.$eval('#error', (e) => e.textContent), 'Wrong username or password.');
    assert.ok((await page.$('#password')) !== null, 'the login form is shown again');
    assert.ok((await page.$('#approve')) === null, 'no consent page');
    // Unknown users are refused the same way.
    await page.type('#password', 'x');
    await page.$eval('#username', (e) => void ((e as unknown as { value: string }).value = 'mallory'));
    const [again] = await Promise.all([page.waitForNavigation(), page.click('#submit')]);
    assert.equal(again?.status(), 401);
    const reached = await Promise.race([loopback.response.then(() => 'redirect'), new Promise((r) => setTimeout(() => r('none'), 200))]);
    assert.equal(reached, 'none', 'the redirect listener received nothing');
  } finally {
    await context.close();
    await loopback.close();
  }
});

/** The authorization endpoint's answer to a request with `change` applied (its redirect, not followed). */
async function authorize(change: (params: URLSearchParams) => void): Promise<URLSearchParams> {
  const request = authorizationRequest(metadata, { clientId: CLIENT, redirectUri: 'http://127.0.0.1:9/callback', scope: SCOPE, resource: RESOURCE });
  change(request.url.searchParams);
  const answer = await httpsCall(request.url, { ca: pki.ca.cert, timeoutMs: TIMEOUT });
  assert.equal(answer.status, 303);
  const location = new URL(String(answer.headers.location));
  assert.equal(`${location.origin}${location.pathname}`, 'http://127.0.0.1:9/callback', 'the refusal goes back to the client, not to a login page');
  assert.equal(location.searchParams.get('code'), null);
  return location.searchParams;
}

test('the provider refuses an authorization request without PKCE, with plain, for another resource, or from an unknown client', { timeout: 30_000 }, async () => {
  const none = await authorize((p) => {
    p.delete('code_challenge');
    p.delete('code_challenge_method');
  });
  assert.equal(none.get('error'), 'invalid_request');
  assert.match(String(none.get('error_description')), /PKCE/);
  const plain = await authorize((p) => {
    p.set('code_challenge', p.get('code_challenge') ?? '');
    p.set('code_challenge_method', 'plain');
  });
  assert.equal(plain.get('error'), 'invalid_request');
  assert.match(String(plain.get('error_description')), /code_challenge_method/);
  const other = await authorize((p) => p.set('resource', 'https://elsewhere.test'));
  assert.equal(other.get('error'), 'invalid_target');
  // An unknown client cannot be redirected to: the provider's own error page, with nothing loaded from elsewhere.
  const request = authorizationRequest(metadata, { clientId: 'unknown-app', redirectUri: 'http://127.0.0.1:9/callback', scope: SCOPE, resource: RESOURCE });
  const unknown = await httpsCall(request.url, { ca: pki.ca.cert, timeoutMs: TIMEOUT });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body, /invalid_client/);
  assert.doesNotMatch(unknown.body, /https?:\/\//);
  assert.match(String(unknown.headers['content-security-policy']), /default-src 'none'/);
});

test('loginWithForms (no browser) gives an equivalent token; a wrong password is an error naming it', { timeout: 30_000 }, async () => {
  const tokens: LoginTokens = await loginWithForms({ issuer: idp.issuer, ca: pki.ca.cert, clientId: CLIENT, user: 'alice', password: ALICE.password, resource: RESOURCE, scope: SCOPE, timeoutMs: TIMEOUT });
  const claims = await verifyAccessToken(tokens.accessToken);
  assert.deepEqual({ sub: claims.sub, client_id: claims.client_id, scope: claims.scope, aud: claims.aud, email: claims.email }, { sub: 'alice', client_id: CLIENT, scope: 'tether', aud: RESOURCE, email: ALICE.email });
  // Bob has no email: none in his token; without the resource scope, no scope claim.
  const bob = await verifyAccessToken((await loginWithForms({ issuer: idp.issuer, ca: pki.ca.cert, clientId: CLIENT, user: 'bob', password: 'another one', resource: RESOURCE, scope: 'openid', timeoutMs: TIMEOUT })).accessToken);
  assert.deepEqual([bob.sub, bob.aud, bob.email, bob.scope], ['bob', RESOURCE, undefined, undefined]);
  await assert.rejects(
    loginWithForms({ issuer: idp.issuer, ca: pki.ca.cert, clientId: CLIENT, user: 'alice', password: 'nope', resource: RESOURCE, timeoutMs: TIMEOUT }),
    /login form was refused: 401 Wrong username or password/,
  );
});

test('the interaction routes answer bad or stale requests with a 4xx page, never a 500', { timeout: 30_000 }, async () => {
  const call = (path: string, method = 'GET', body?: string) =>
    httpsCall(new URL(path, idp.issuer), { ca: pki.ca.cert, timeoutMs: TIMEOUT, method, ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } }) });
  const stale = await call('/interaction/abcdef');
  assert.equal(stale.status, 400);
  assert.match(stale.body, /expired or is not valid/);
  assert.equal((await call('/interaction/abcdef/login', 'POST', 'username=alice&password=x')).status, 400);
  assert.equal((await call('/interaction/abcdef/login')).status, 404, 'the form is POST only');
  assert.equal((await call('/interaction/no$such%2Fuid')).status, 404);
});
