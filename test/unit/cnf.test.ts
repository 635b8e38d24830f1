/**
 * `bindingRequirement`: how a token's `cnf` (RFC 7800, RFC 8705, RFC 9449, draft section 2.4) is
 * classified. Anything present but not understood fails closed as `invalid`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { EXPORTER_LABEL, bindingRequirement, certificateThumbprint, sessionBoundConfirmation, certificateBoundConfirmation } from '@tether/core';
import { identities } from './support/jws.js';

const { client } = await identities('p256');
const T = certificateThumbprint(client.cert);
const JKT = createHash('sha256').update('{"crv":"P-256","kty":"EC","x":"...","y":"..."}').digest('base64url');

test('no cnf: a bearer token', () => {
  assert.deepEqual(bindingRequirement(undefined), { kind: 'none' });
});

test('x5t#S256 alone: RFC 8705 certificate binding', () => {
  assert.deepEqual(bindingRequirement({ 'x5t#S256': T }), { kind: 'certificate', thumbprint: T });
  assert.deepEqual(bindingRequirement(certificateBoundConfirmation(client.cert)), { kind: 'certificate', thumbprint: T });
  // Members tether does not know are ignored next to a known method.
  assert.deepEqual(bindingRequirement({ 'x5t#S256': T, kid: 'k1' }), { kind: 'certificate', thumbprint: T });
});

test('x5t#S256 + tls_exp: session binding (draft 2.4)', () => {
  assert.deepEqual(bindingRequirement({ 'x5t#S256': T, tls_exp: EXPORTER_LABEL }), { kind: 'session', thumbprint: T });
  assert.deepEqual(bindingRequirement({ tls_exp: 'EXPORTER-oauth-tls-session-bound', 'x5t#S256': T }), { kind: 'session', thumbprint: T });
  assert.deepEqual(bindingRequirement(sessionBoundConfirmation(client.cert)), { kind: 'session', thumbprint: T });
  assert.deepEqual(bindingRequirement(JSON.parse(JSON.stringify({ cnf: sessionBoundConfirmation(client.cert) })).cnf), { kind: 'session', thumbprint: T });
});

test('jkt alone: DPoP (RFC 9449 6.1)', () => {
  assert.deepEqual(bindingRequirement({ jkt: JKT }), { kind: 'dpop', jkt: JKT });
});

test('every invalid combination fails closed with its reason', () => {
  const notObject = 'cnf is not an object';
  const mixes = 'cnf mixes jkt with certificate binding';
  const unknownLabel = 'cnf.tls_exp names an unknown exporter label';
  const noX5t = 'cnf.tls_exp without a valid x5t#S256';
  const badX5t = 'cnf.x5t#S256 malformed';
  const badJkt = 'cnf.jkt malformed';
  const nothing = 'cnf carries no confirmation method tether understands';
  const cases: Array<[string, unknown, string]> = [
    ['null', null, notObject],
    ['string', T, notObject],
    ['number', 1, notObject],
    ['boolean', true, notObject],
    ['array', [T], notObject],
    ['empty array', [], notObject],
    ['empty object', {}, nothing],
    ['unknown member only', { jwk: { kty: 'EC' } }, nothing],
    ['x5t (SHA-1) only', { x5t: 'abc' }, nothing],
    ['tls_exp without x5t#S256', { tls_exp: EXPORTER_LABEL }, noX5t],
    ['tls_exp with malformed x5t#S256', { tls_exp: EXPORTER_LABEL, 'x5t#S256': 'abc' }, noX5t],
    ['tls_exp with null x5t#S256', { tls_exp: EXPORTER_LABEL, 'x5t#S256': null }, noX5t],
    ['unknown exporter label', { tls_exp: 'EXPORTER-other', 'x5t#S256': T }, unknownLabel],
    ['label in another case', { tls_exp: EXPORTER_LABEL.toLowerCase(), 'x5t#S256': T }, unknownLabel],
    ['label with trailing space', { tls_exp: `${EXPORTER_LABEL} `, 'x5t#S256': T }, unknownLabel],
    ['empty label', { tls_exp: '', 'x5t#S256': T }, unknownLabel],
    ['boolean tls_exp', { tls_exp: true, 'x5t#S256': T }, unknownLabel],
    ['null tls_exp', { tls_exp: null, 'x5t#S256': T }, unknownLabel],
    ['jkt + tls_exp', { jkt: JKT, tls_exp: EXPORTER_LABEL }, mixes],
    ['jkt + x5t#S256', { jkt: JKT, 'x5t#S256': T }, mixes],
    ['jkt + tls_exp + x5t#S256', { jkt: JKT, tls_exp: EXPORTER_LABEL, 'x5t#S256': T }, mixes],
    ['x5t#S256 too short', { 'x5t#S256': T.slice(0, 42) }, badX5t],
    ['x5t#S256 31 bytes', { 'x5t#S256': Buffer.alloc(31).toString('base64url') }, badX5t],
    ['x5t#S256 33 bytes', { 'x5t#S256': Buffer.alloc(33).toString('base64url') }, badX5t],
    ['x5t#S256 padded', { 'x5t#S256': `${T}=` }, badX5t],
    ['x5t#S256 standard base64', { 'x5t#S256': Buffer.alloc(32, 0xfb).toString('base64') }, badX5t],
    ['x5t#S256 hex', { 'x5t#S256': createHash('sha256').update(client.cert.raw).digest('hex') }, badX5t],
    ['x5t#S256 number', { 'x5t#S256': 1 }, badX5t],
    ['x5t#S256 null', { 'x5t#S256': null }, badX5t],
    ['x5t#S256 array', { 'x5t#S256': [T] }, badX5t],
    ['jkt malformed', { jkt: 'short' }, badJkt],
    ['jkt null', { jkt: null }, badJkt],
  ];
  for (const [name, cnf, reason] of cases) {
    assert.deepEqual(bindingRequirement(cnf), { kind: 'invalid', reason }, name);
  }
});

test('a non-canonical x5t#S256 ending is refused (it would never equal a computed thumbprint)', () => {
  // 32 bytes encode to 43 characters whose last one carries 2 spare bits.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(T[42] as string);
  const variant = `${T.slice(0, 42)}${alphabet[last ^ 1]}`;
  assert.deepEqual(Buffer.from(variant, 'base64url'), Buffer.from(T, 'base64url'));
  assert.deepEqual(bindingRequirement({ 'x5t#S256': variant, tls_exp: EXPORTER_LABEL }), { kind: 'invalid', reason: 'cnf.tls_exp without a valid x5t#S256' });
  assert.deepEqual(bindingRequirement({ 'x5t#S256': variant }), { kind: 'invalid', reason: 'cnf.x5t#S256 malformed' });
});
