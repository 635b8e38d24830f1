/**
 * The per-token caches of the sidecars' hot paths never answer for anything but exactly what was
 * cached: the ingress's `X-Tether-Principal` encoding (by claims object, every forwarded field
 * compared), the egress's audience check (by the whole token string) and the egress's agent link
 * (one cancel slot; nothing cancelled after a complete relay), and the parsed `Connection` values
 * of the header copy.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VerifiedPrincipal } from '@tether/core';
import { decodePrincipal, encodePrincipal } from '../../packages/sidecar/src/ingress/principal.js';
import { checkAudience } from '../../packages/sidecar/src/egress/routing.js';
import { AgentLink } from '../../packages/sidecar/src/egress/upstream/exchange.js';
import { SidecarError } from '../../packages/sidecar/src/shared/errors.js';
import { endToEndHeaders } from '../../packages/sidecar/src/headers.js';

function jwt(payload: object): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'ES256' })}.${part(payload)}.c2ln`;
}

describe('X-Tether-Principal encoding cache', () => {
  const claims = { sub: 'alice', client_id: 'c1', scope: 'read', cnf: { tmb: 'x' }, exp: 9e9 };
  const principal = (patch: Partial<VerifiedPrincipal> = {}): VerifiedPrincipal => ({
    sub: claims.sub,
    client_id: claims.client_id,
    scope: claims.scope,
    act: undefined,
    cnf: claims.cnf,
    binding: 'session',
    claims,
    ...patch,
  });

  it('the same claims object and fields give the same value; any changed field is encoded anew', () => {
    const first = encodePrincipal(principal());
    assert.equal(encodePrincipal(principal()), first);
    assert.deepEqual(decodePrincipal(first), { sub: 'alice', client_id: 'c1', scope: 'read', cnf: { tmb: 'x' }, binding: 'session' });
    assert.equal(decodePrincipal(encodePrincipal(principal({ binding: 'certificate' }))).binding, 'certificate');
    assert.equal(decodePrincipal(encodePrincipal(principal({ scope: 'read write' }))).scope, 'read write');
    assert.equal(decodePrincipal(encodePrincipal(principal({ sub: 'mallory' }))).sub, 'mallory');
    assert.deepEqual(decodePrincipal(encodePrincipal(principal({ act: { sub: 'agent' } }))).act, { sub: 'agent' });
    assert.equal(decodePrincipal(encodePrincipal(principal())).binding, 'session', 'and back');
  });
});

describe('egress audience cache', () => {
  it('decides per whole token: a token differing only in its payload is checked anew', () => {
    const good = jwt({ aud: 'https://a.example' });
    const bad = jwt({ aud: 'https://b.example' });
    for (let i = 0; i < 3; i++) checkAudience('audience', ['https://a.example'], good);
    assert.throws(() => checkAudience('audience', ['https://a.example'], bad), (e: unknown) => e instanceof SidecarError && e.reason === 'audience_mismatch');
    assert.throws(() => checkAudience('audience', ['https://a.example'], 'opaque'), (e: unknown) => e instanceof SidecarError && e.reason === 'opaque_token');
    assert.throws(() => checkAudience('audience', ['https://a.example'], 'opaque'), (e: unknown) => e instanceof SidecarError && e.reason === 'opaque_token', 'cached refusal');
    assert.throws(() => checkAudience('audience', ['https://b.example'], good), (e: unknown) => e instanceof SidecarError && e.reason === 'audience_mismatch', 'cached token, other route');
  });

  it('stays correct past its bound (entries evicted)', () => {
    for (let i = 0; i < 600; i++) checkAudience('audience', [`https://${i}.example`], jwt({ aud: `https://${i}.example`, n: i }));
    assert.throws(() => checkAudience('audience', ['https://1.example'], jwt({ aud: 'https://0.example', n: 0 })), (e: unknown) => e instanceof SidecarError);
  });
});

describe('egress agent link', () => {
  it('the agent leaving runs the cancel in the slot, once; a released or replaced cancel is not run', () => {
    const link = new AgentLink();
    const ran: string[] = [];
    const releaseA = link.onGone(() => ran.push('a'));
    link.onGone(() => ran.push('b')); // the relay takes over
    releaseA(); // the first holder's release does not clear the second
    link.leave();
    link.leave();
    assert.deepEqual(ran, ['b']);
    assert.equal(link.gone, true);
    link.onGone(() => ran.push('late'));
    assert.deepEqual(ran, ['b', 'late'], 'a cancel registered after the agent left runs at once');
  });

  it('after a complete relay the agent closing is not going away and cancels nothing', () => {
    const link = new AgentLink();
    let cancelled = 0;
    link.onGone(() => cancelled++);
    link.complete();
    link.leave();
    assert.equal(cancelled, 0);
    assert.equal(link.gone, false);
  });
});

describe('end-to-end header copy', () => {
  it('drops the fields each Connection value names, the same value parsed once or many times, and arrays too', () => {
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(endToEndHeaders({ connection: 'keep-alive, X-Hop', 'x-hop': 's', 'x-end': 'e', 'keep-alive': 'timeout=5' }), { 'x-end': 'e' });
      assert.deepEqual(endToEndHeaders({ connection: 'close', close: 'c', 'x-end': 'e' }), { 'x-end': 'e' });
    }
    assert.deepEqual(endToEndHeaders({ connection: 'keep-alive', 'x-hop': 's' }), { 'x-hop': 's' }, 'a name listed elsewhere is not dropped here');
    assert.deepEqual(endToEndHeaders({ connection: ['a', 'b'] as unknown as string, a: '1', b: '2', c: '3' }), { c: '3' });
    assert.deepEqual(endToEndHeaders({ 'x-forwarded-for': 'x', 'x-other': 'o', forwarded: 'f' }, { drop: new Set(['forwarded']), dropPrefixes: ['x-forwarded-'] }), { 'x-other': 'o' });
  });
});
